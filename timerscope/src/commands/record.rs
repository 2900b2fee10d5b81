//! `timerscope record`: attach to one process (or launch one), collect until the end, write one
//! profile.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::ExitStatus,
    time::{Duration, Instant, SystemTime},
};

use capture::{
    collect::Snapshot,
    launch::{Launched, RunAs},
    preflight,
    session::{Probes, Session, report_drops},
};
use clap::Args;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use pprof::vocabulary::{CommentKey, Events};

use super::{MapSizeArgs, StopSignals, events_parser};

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Process to attach to. Without it, the command after `--` is launched and recorded from
    /// its first instruction until it exits; its exit status is passed through.
    #[arg(long, conflicts_with = "command", required_unless_present = "command")]
    pub pid: Option<u32>,
    /// Stop after this long (e.g. 30s, 5m). Without it, record until Ctrl-C or the target exits.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Where to write the profile [default: timerscope-PID-YYYYmmddTHHMMSS.pb.gz].
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Timer events to capture: `all` (every lifecycle event, exact counts), `create` (timer
    /// creation only), `none` (no timer probes; mappings only).
    #[arg(long, default_value = "all", value_parser = events_parser())]
    pub events: Events,
    #[command(flatten)]
    pub sizes: MapSizeArgs,
    /// Leave out the C heap probes (libc malloc, free, ...; brk), which are on when the target
    /// links libc: allocation-heavy C code pays about a microsecond per call for them.
    #[arg(long)]
    pub no_c_heap: bool,
    /// Run the launched command as this user, with their groups and the environment
    /// `sudo -u USER` would give it (HOME, USER, LOGNAME, SHELL, PATH; the rest reset).
    #[arg(long, value_name = "USER", requires = "command")]
    pub user: Option<String>,
    /// Leave out the goroutine probes, which count goroutines created and exited by the stack
    /// of their `go` statement (`goroutines_created`, `goroutines_exited`): a program that
    /// starts goroutines at a high rate pays about two uprobe hits per goroutine.
    #[arg(long)]
    pub no_goroutine_probes: bool,
    /// Command to launch and record.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub async fn run(args: RecordArgs) -> anyhow::Result<u8> {
    let target = match args.pid {
        Some(pid) => RecordTarget::Pid(pid),
        None => {
            let run_as = args.user.as_deref().map(RunAs::user).transpose()?;
            if run_as.is_none() {
                warn_if_started_through_sudo();
            }
            RecordTarget::Command(args.command, run_as)
        }
    };
    let outcome = record(RecordOptions {
        target,
        duration: args.duration,
        output: args.output,
        probes: Probes {
            sizes: (&args.sizes).into(),
            events: args.events,
            c_heap: !args.no_c_heap,
            goroutines: !args.no_goroutine_probes,
            mmap: true,
        },
    })
    .await?;
    println!("{}", outcome.output.display());
    Ok(crate::exit::of_command(outcome.command_status))
}

/// What to record.
pub enum RecordTarget {
    /// A running process.
    Pid(u32),
    /// A command to launch and record from its first instruction, as this user if given.
    Command(Vec<OsString>, Option<RunAs>),
}

pub struct RecordOptions {
    pub target: RecordTarget,
    pub duration: Option<Duration>,
    pub output: Option<PathBuf>,
    /// What gets attached (C heap probes when the target links libc).
    pub probes: Probes,
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
    /// The target exec'd this program: what it ran as a Go program ended there.
    TargetExeced(PathBuf),
}

pub async fn record(options: RecordOptions) -> anyhow::Result<RecordOutcome> {
    // Handled from the start: a Ctrl-C that arrives while attaching ends the recording as soon
    // as the probes are in place, instead of killing timerscope with nothing written.
    let mut signals = StopSignals::new()?;
    preflight::require_root("record")?;
    preflight::require_kernel_features()?;
    let (pid, mut launched) = match &options.target {
        RecordTarget::Pid(pid) => (preflight::require_process(*pid)?, None),
        RecordTarget::Command(argv, run_as) => {
            let child = Launched::start(argv, run_as.as_ref())?;
            (child.pid(), Some(child))
        }
    };
    let output = options
        .output
        .clone()
        .unwrap_or_else(|| default_output(pid));
    pprof::check_output_path(&output)?;
    let mut session = Session::attach(pid, options.probes)?;
    // A launched command is stopped at exec, before its runtime exists: its figures at the
    // start would be zeros, and everything the runtime sets up would look like growth.
    let memory_start = matches!(options.target, RecordTarget::Pid(_)).then(|| {
        session
            .memory_numbers(None)
            .comment(CommentKey::MemoryStart)
    });
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
    session.disarm();
    let mut snapshot = session.snapshot()?;
    session.read_pending(&mut snapshot);
    session.read_goroutines(&mut snapshot);
    let memory_end = session.memory_numbers(Some(&snapshot.goroutines));
    session.detach();
    // Measured after the links are closed (seconds): classify's single-recording rates divide
    // by it, and measured at the disarm, a 0.3 s recording from launch made the runtime's first
    // 0.2 MiB of heap look like growth.
    let duration = started.elapsed();
    let mut comments = vec![CommentKey::StoppedBy.comment(format_args!("{stop:?}"))];
    comments.extend(memory_start);
    comments.push(memory_end.comment(CommentKey::MemoryEnd));
    let profile = session.encode(&snapshot, start, duration, &comments)?;
    pprof::write_atomic(&output, &profile)?;
    report_drops(&snapshot);
    eprintln!(
        "timerscope: {} after {:.1}s: {} events, {} live timers; profile written to {}",
        match &stop {
            Stop::Duration => "done".to_owned(),
            Stop::Interrupted(signal) => format!("stopped by {signal}"),
            Stop::TargetExited => format!("target pid {pid} exited"),
            Stop::TargetExeced(program) => format!(
                "target pid {pid} exec'd {} (its Go program ended there; the profile has what it \
                 did before)",
                program.display()
            ),
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

/// A command launched by `sudo timerscope record -- CMD` runs as root, which its user may not
/// expect: say so, and how to run it as themselves.
fn warn_if_started_through_sudo() {
    if let Some(user) = std::env::var_os("SUDO_USER").filter(|u| !u.is_empty() && *u != "root") {
        let user = user.to_string_lossy();
        eprintln!(
            "timerscope: note: the command runs as root (timerscope was started through sudo); \
             to run it as {user}, add --user {user}: sudo timerscope record --user {user} -- CMD"
        );
    }
}

/// `timerscope-PID-YYYYmmddTHHMMSS.pb.gz`, local time.
fn default_output(pid: u32) -> PathBuf {
    let stamp = capture::session::file_timestamp(SystemTime::now(), false);
    PathBuf::from(format!("timerscope-{pid}-{stamp}.pb.gz"))
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
                if !launched && !preflight::process_alive(session.pid) {
                    return (Stop::TargetExited, None);
                }
                if let Some(program) = session.check_exec() {
                    return (Stop::TargetExeced(program.clone()), None);
                }
                session.drain();
                if let Some((events, live, drops)) = session.counters() {
                    status.show(events, live, drops);
                }
            }
        }
    }
}
