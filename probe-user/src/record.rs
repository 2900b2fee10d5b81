//! `timerscope record`: attach to one process (or launch one), collect until the end, write one
//! profile.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::{
        ptrace,
        signal::{Signal, kill},
        wait::{WaitStatus, waitpid},
    },
    unistd::Pid,
};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};

use crate::{
    attach::MapSizes,
    collect::Snapshot,
    session::{Session, report_drops},
};

/// What to record.
pub enum RecordTarget {
    /// A running process.
    Pid(u32),
    /// A command to launch and record from its first instruction.
    Command(Vec<OsString>),
}

pub struct RecordOptions {
    pub target: RecordTarget,
    pub duration: Option<Duration>,
    pub output: Option<PathBuf>,
    pub sizes: MapSizes,
}

/// How a recording ended.
pub struct RecordOutcome {
    pub output: PathBuf,
    pub snapshot: Snapshot,
    /// Exit status of a launched command.
    pub command_status: Option<ExitStatus>,
}

/// Why the recording stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Duration,
    Interrupted(&'static str),
    TargetExited,
}

pub async fn record(options: RecordOptions) -> anyhow::Result<RecordOutcome> {
    // Handled from the start: a Ctrl-C that arrives while attaching ends the recording as soon
    // as the probes are in place, instead of killing timerscope with nothing written.
    let mut signals = StopSignals::new()?;
    crate::preflight::require_root("record")?;
    crate::preflight::require_kernel_features()?;
    let (pid, mut launched) = match &options.target {
        RecordTarget::Pid(pid) => (crate::preflight::require_process(*pid)?, None),
        RecordTarget::Command(argv) => {
            let child = Launched::start(argv)?;
            (child.pid(), Some(child))
        }
    };
    let output = options
        .output
        .clone()
        .unwrap_or_else(|| default_output(pid));
    analyzer::profile::check_output_path(&output)?;
    let mut session = Session::attach(pid, options.sizes)?;
    let start = SystemTime::now();
    let started = Instant::now();
    let exited = launched.take().map(Launched::resume).transpose()?;
    eprintln!(
        "timerscope: recording pid {pid} ({}){}",
        session.describe(),
        match options.duration {
            Some(d) => format!(" for {}", humantime::format_duration(d)),
            None => " until Ctrl-C".to_owned(),
        }
    );

    let mut exited = exited;
    let (stop, mut command_status) = wait_for_end(
        &mut signals,
        &mut session,
        exited.as_mut(),
        options.duration,
    )
    .await;
    session.detach();
    let snapshot = session.snapshot()?;
    let duration = started.elapsed();
    let profile = session.encode(
        &snapshot,
        start,
        duration,
        &[format!("stopped_by={stop:?}")],
    )?;
    analyzer::write_atomic(&output, &profile)?;
    report_drops(&snapshot);
    eprintln!(
        "timerscope: {} after {:.1}s: {} events, {} live timers; profile written to {}",
        match stop {
            Stop::Duration => "done".to_owned(),
            Stop::Interrupted(signal) => format!("stopped by {signal}"),
            Stop::TargetExited => format!("target pid {pid} exited"),
        },
        duration.as_secs_f64(),
        snapshot.total_events(),
        snapshot.live.len(),
        output.display()
    );
    let top = crate::summary::top_live_sites(&profile, 5);
    if !top.is_empty() {
        eprintln!("timerscope: live timers by the code that created them:");
        for site in &top {
            eprintln!("{site}");
        }
    }
    if let Some(exited) = exited
        && command_status.is_none()
    {
        if let Stop::Interrupted(_) = stop {
            // We were asked to stop; pass that on to the command we started.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        eprintln!("timerscope: waiting for the command (pid {pid}) to exit");
        command_status = exited.await.ok().flatten();
    }
    Ok(RecordOutcome {
        output,
        snapshot,
        command_status,
    })
}

/// `timerscope-PID-YYYYmmddTHHMMSS.pb.gz`, local time.
fn default_output(pid: u32) -> PathBuf {
    let stamp = crate::session::file_timestamp(SystemTime::now(), false);
    PathBuf::from(format!("timerscope-{pid}-{stamp}.pb.gz"))
}

/// A command started stopped at its first instruction after exec (ptrace), so the probes are
/// attached before any of its code runs. Killed if dropped before [`Launched::resume`]: a
/// refused target must not be left stopped or run unobserved.
struct Launched(Option<Child>);

impl Launched {
    fn start(argv: &[OsString]) -> anyhow::Result<Self> {
        let (program, args) = argv
            .split_first()
            .context("record: no command given after --")?;
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: traceme is async-signal-safe (a single ptrace syscall).
        unsafe {
            command.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
        }
        let child = command
            .spawn()
            .with_context(|| format!("launch: cannot run {}", Path::new(program).display()))?;
        let launched = Self(Some(child));
        match waitpid(Pid::from_raw(launched.pid() as i32), None) {
            Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => Ok(launched),
            other => bail!(
                "launch: {} did not stop at exec ({other:?})",
                Path::new(program).display()
            ),
        }
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().expect("not resumed yet").id()
    }

    /// Lets the command run; the handle resolves to its exit status.
    fn resume(mut self) -> anyhow::Result<tokio::task::JoinHandle<Option<ExitStatus>>> {
        // On failure `self` is dropped, which kills the command.
        ptrace::detach(Pid::from_raw(self.pid() as i32), None)
            .context("launch: resuming the command")?;
        let mut child = self.0.take().expect("resumed once");
        Ok(tokio::task::spawn_blocking(move || child.wait().ok()))
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGINT and SIGTERM, caught for the whole recording.
pub struct StopSignals {
    interrupt: SignalStream,
    terminate: SignalStream,
}

impl StopSignals {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The name of the next stop signal received.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Waits for the duration, a signal, or the target's exit, showing a status line on a terminal
/// and draining mmap events meanwhile.
async fn wait_for_end(
    signals: &mut StopSignals,
    session: &mut Session,
    mut exited: Option<&mut tokio::task::JoinHandle<Option<ExitStatus>>>,
    duration: Option<Duration>,
) -> (Stop, Option<ExitStatus>) {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let status = crate::status::StatusLine::start();
    // Also how often new shared libraries are looked for: a short-lived target may exit soon.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let launched = exited.is_some();
    loop {
        tokio::select! {
            signal = signals.recv() => return (Stop::Interrupted(signal), None),
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                return (Stop::Duration, None);
            }
            result = async { exited.as_mut().unwrap().await }, if launched => {
                return (Stop::TargetExited, result.ok().flatten());
            }
            _ = tick.tick() => {
                if !launched && !crate::preflight::process_alive(session.pid) {
                    return (Stop::TargetExited, None);
                }
                session.drain();
                if let Some((events, live, drops)) = session.counters() {
                    status.show(events, live, drops);
                }
            }
        }
    }
}
