//! `timerscope top`: the live view, driven in a real terminal (tmux: `send-keys`, `capture-pane`)
//! against the timers fixture leaking AfterFunc timers, and its plain-text fallback when stdout
//! is a pipe. The leaking function must be on screen with its live timers; `t` switches the
//! sample type; `q` exits 0 within seconds with none of its programs or uprobes left behind.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Fixture,
    bpf::{eventually, is_ours, loaded_programs, our_uprobe_events, programs_held_by},
    count, fixture_site, timerscope,
};
use timerscope_tests::{Variant, fixture_path, reference_go};

/// Leaked AfterFunc timers: 200 created, every 4th stopped, the rest pending for the hold.
const LEAK_ARGS: [&str; 5] = ["afterfunc-leak", "-n", "200", "-hold", "120s"];

/// A tmux server of the test's own (its own socket), killed at the end.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self
            .command()
            .args(args)
            .output()
            .expect("tmux runs (cargo xtask setup installs it)");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `shell_command` in a detached 160x40 session.
    fn start(socket: String, shell_command: &str) -> Self {
        let tmux = Self { socket };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "40",
            shell_command,
        ]);
        tmux
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Polls the screen until `f` accepts it (up to `timeout`); the last screen either way.
    fn wait_for_screen(&self, timeout: Duration, f: impl Fn(&str) -> bool) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if f(&screen) || Instant::now() > deadline {
                return (f(&screen), screen);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pane_pid(&self) -> u32 {
        self.run(&["list-panes", "-t", "top", "-F", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// The pid of the `timerscope` process among `parent`'s children.
fn timerscope_child(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "timerscope"))
        })
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn live_view_shows_the_leaking_function_and_q_detaches() {
    let go = reference_go();
    let mut fixture = Fixture::spawn("timers", go, Variant::Normal, &LEAK_ARGS);
    let binary = fixture_path("timers", go, Variant::Normal).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let status_file: PathBuf = dir.path().join("status");
    // The pane's shell records top's exit status, then stays so the screen can still be read.
    let shell_command = format!(
        "{} top --pid {}; echo $? > {}; sleep 60",
        shell_quote(&timerscope()),
        fixture.pid(),
        shell_quote(&status_file)
    );
    let tmux = Tmux::start(
        format!("timerscope-top-{}", std::process::id()),
        &shell_command,
    );

    // Attached once the first refresh is drawn: the status line names the pid.
    let header = format!("pid {}", fixture.pid());
    let (attached, screen) = tmux.wait_for_screen(Duration::from_secs(30), |s| s.contains(&header));
    assert!(attached, "top never drew its status line:\n{screen}");
    let top_pid = timerscope_child(tmux.pane_pid()).expect("timerscope runs in the pane");
    let held = programs_held_by(top_pid);
    let ours: BTreeSet<u32> = loaded_programs()
        .into_iter()
        .filter(|(id, name)| held.contains(id) && is_ours(name))
        .map(|(id, _)| id)
        .collect();
    assert!(!ours.is_empty(), "top holds its programs while it runs");

    fixture.start_scenario();
    let summary = fixture.summary();
    let pending = count(&summary, "pending");
    let (function, line) = fixture_site("timers", "afterfunc-leak");
    let site = format!("{function} (main.go:{line})");
    let row_ok = |s: &str| {
        s.lines().any(|l| {
            l.contains(&site) && l.split_whitespace().next() == Some(pending.to_string().as_str())
        })
    };
    let (shown, screen) = tmux.wait_for_screen(Duration::from_secs(10), row_ok);
    assert!(
        shown,
        "{site} with {pending} live timers is not on screen:\n{screen}"
    );
    assert!(
        screen.contains("timers_live"),
        "sample type shown:\n{screen}"
    );
    assert!(screen.contains("rss "), "RSS shown:\n{screen}");

    // `t` moves to the next sample type: the help line names another one.
    tmux.run(&["send-keys", "-t", "top", "t"]);
    let (switched, screen) = tmux.wait_for_screen(Duration::from_secs(5), |s| {
        s.lines()
            .any(|l| l.contains("sample type (") && !l.contains("sample type (timers_live)"))
    });
    assert!(switched, "t did not switch the sample type:\n{screen}");
    tmux.run(&["send-keys", "-t", "top", "s"]);
    let (sorted, screen) =
        tmux.wait_for_screen(Duration::from_secs(5), |s| s.contains("sort (change)"));
    assert!(sorted, "s did not change the order:\n{screen}");

    let quit_at = Instant::now();
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let exited = eventually(|| status_file.exists());
    let waited = quit_at.elapsed();
    assert!(exited, "top still running after q");
    assert!(waited < Duration::from_secs(5), "q took {waited:?}");
    let status = std::fs::read_to_string(&status_file).unwrap();
    assert_eq!(status.trim(), "0", "top's exit status after q");

    let still_loaded = || -> Vec<u32> {
        loaded_programs()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| ours.contains(id))
            .collect()
    };
    assert!(
        eventually(|| still_loaded().is_empty()),
        "programs {:?} of top are still loaded",
        still_loaded()
    );
    let events = our_uprobe_events(&binary, fixture.pid(), top_pid);
    assert!(events.is_empty(), "uprobes left: {events:?}");
    assert!(
        fixture.child.try_wait().unwrap().is_none(),
        "the target keeps running"
    );
}

#[test]
fn piped_output_is_one_plain_table_after_the_iterations() {
    let go = reference_go();
    let mut fixture = Fixture::spawn("timers", go, Variant::Normal, &LEAK_ARGS);
    let mut top = Command::new(timerscope())
        .args([
            "top",
            "--pid",
            &fixture.pid().to_string(),
            "--iterations",
            "3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(top.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("top of pid"), "timerscope said: {line}");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    fixture.start_scenario();
    let pending = count(&fixture.summary(), "pending");

    let output = top.wait_with_output().unwrap();
    assert!(output.status.success(), "top exits 0: {}", output.status);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let headers = stdout.lines().filter(|l| l.ends_with("  site")).count();
    assert_eq!(headers, 1, "one table after --iterations:\n{stdout}");
    assert!(
        stdout.contains(&format!("pid {}", fixture.pid())) && stdout.contains("rss "),
        "status lines:\n{stdout}"
    );
    let (function, line) = fixture_site("timers", "afterfunc-leak");
    let site = format!("{function} (main.go:{line})");
    let row = stdout
        .lines()
        .find(|l| l.ends_with(&site))
        .unwrap_or_else(|| panic!("no row for {site}:\n{stdout}"));
    let live: i64 = row.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(live, pending, "live timers at {site}: {row}");
    // The leak's row leads the table: sorted by value, most first.
    let first_row = stdout
        .lines()
        .skip_while(|l| !l.ends_with("  site"))
        .nth(1)
        .unwrap();
    assert!(first_row.ends_with(&site), "first row: {first_row}");
}
