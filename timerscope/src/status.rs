//! The one-line progress display on a terminal; silent when stderr is not a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct StatusLine {
    bar: ProgressBar,
}

impl StatusLine {
    pub fn start() -> Self {
        // indicatif draws nothing when stderr is not a terminal.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }

    pub fn show(&self, events: u64, live: usize, drops: u64) {
        self.bar.set_message(format!(
            "{events} events, {live} live timers, {drops} dropped"
        ));
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
