//! `timerscope record`: inspect, plan, attach, collect until the end, symbolize, encode, write.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant, SystemTime},
};

use analyzer::MappingSpec;
use anyhow::{Context as _, bail};
use nix::{
    sys::{
        ptrace,
        signal::Signal,
        wait::{WaitStatus, waitpid},
    },
    unistd::Pid,
};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    attach::{MapSizes, Probe},
    collect::{self, Snapshot},
    encode::{self, DROP_NAMES, Recording},
    hooks::{self, Plan},
    mappings::LiveMappings,
    symbolize::Symbolizer,
    target::{Target, process},
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
    let mut stop_signals = StopSignals::new()?;
    crate::preflight::require_root("record")?;
    crate::preflight::require_kernel_features()?;
    let (pid, mut child) = match &options.target {
        RecordTarget::Pid(pid) => (crate::preflight::require_process(*pid)?, None),
        RecordTarget::Command(argv) => {
            let child = launch_stopped(argv)?;
            (child.id(), Some(child))
        }
    };
    let output = options
        .output
        .clone()
        .unwrap_or_else(|| default_output(pid));
    analyzer::profile::check_output_path(&output)?;

    let exe = process::proc_path(pid, "exe");
    let target =
        Target::open(&exe).with_context(|| format!("target: pid {pid} ({})", exe.display()))?;
    let plan = Plan::for_target(&target).with_context(|| format!("target: pid {pid}"))?;
    let text = target
        .elf
        .text_segment()
        .context("target: the binary has no executable segment")?;
    let (text_map, bias) = process::text_mapping(pid, text)?;
    let channel_mode = hooks::channel_mode(&target, plan.family, process::godebug(pid).as_deref());
    // Opened now: /proc/PID/exe is gone once the target exits.
    let mut symbolizer = Symbolizer::new(&exe, bias)?;
    let mut probe = Probe::attach(&plan, &exe, pid, bias, options.sizes)
        .with_context(|| format!("attach: pid {pid}"))?;
    let start = SystemTime::now();
    let started = Instant::now();
    if child.is_some() {
        // Probes are in place: let the command run from its first instruction.
        ptrace::detach(Pid::from_raw(pid as i32), None).context("launch: resuming the command")?;
    }
    eprintln!(
        "timerscope: recording pid {pid} ({}, timer family {}, channel mode {}, {} hooks){}",
        target.buildinfo.version_string,
        plan.family.label(),
        channel_mode.label(),
        plan.hooks.len(),
        match options.duration {
            Some(d) => format!(" for {}", humantime::format_duration(d)),
            None => " until Ctrl-C".to_owned(),
        }
    );

    let launched = child.is_some();
    let mut exited =
        tokio::task::spawn_blocking(move || child.take().and_then(|mut c| c.wait().ok()));
    // Read after the tracepoints are attached: a mapping made in between is in both, and the
    // event replaces the pre-existing interval rather than counting twice.
    let mut mappings = LiveMappings::from_proc_maps(&process::maps(pid)?);
    let (stop, mut command_status) = wait_for_end(
        &mut stop_signals,
        &mut probe,
        &mut mappings,
        plan.hooks.len(),
        pid,
        &mut exited,
        launched,
        options.duration,
    )
    .await?;
    let (maps, mut mmap_events) = probe.detach();
    collect::drain_mmap_events(&mut mmap_events, &mut mappings);
    let mut snapshot = collect::snapshot(&maps, plan.hooks.len(), mappings)?;
    snapshot.resolve_unread_callbacks(|funcval| {
        let pc = target.read_word(funcval.wrapping_sub(bias))?;
        Some(pc.wrapping_add(bias))
    });

    let has_lines = symbolizer.has_lines();
    let recording = Recording {
        start,
        duration: started.elapsed(),
        mapping: MappingSpec {
            start: text_map.start,
            limit: text_map.end,
            offset: text_map.offset,
            file: text_map.path.clone(),
            build_id: target.elf.build_id().to_owned(),
            has_functions: true,
            has_filenames: has_lines,
            has_line_numbers: has_lines,
            has_inline_frames: symbolizer.has_inline_frames(),
        },
        comments: comments(&target, &plan, &symbolizer, channel_mode, &stop),
    };
    let profile = encode::encode(&snapshot, &recording, &mut symbolizer)?;
    analyzer::write_atomic(&output, &profile)?;
    report_drops(&snapshot);
    eprintln!(
        "timerscope: {} after {:.1}s: {} events, {} live timers; profile written to {}",
        match stop {
            Stop::Duration => "done".to_owned(),
            Stop::Interrupted(signal) => format!("stopped by {signal}"),
            Stop::TargetExited => format!("target pid {pid} exited"),
        },
        recording.duration.as_secs_f64(),
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
    if launched && command_status.is_none() {
        if let Stop::Interrupted(_) = stop {
            // We were asked to stop; pass that on to the command we started.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
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

fn comments(
    target: &Target,
    plan: &Plan,
    symbolizer: &Symbolizer,
    mode: hooks::ChannelMode,
    stop: &Stop,
) -> Vec<String> {
    let hooks = plan
        .hooks
        .iter()
        .map(|h| format!("{}+{}", h.symbol, h.entry_offset))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        format!("go_version={}", target.buildinfo.version_string),
        format!("timer_family={}", plan.family.label()),
        format!("timer_channel_mode={}", mode.label()),
        format!("struct_offsets={}", plan.offsets_source),
        format!("symbols={}", symbolizer.source().label()),
        format!("hooks={hooks}"),
        format!("missing_hooks={}", plan.missing_hooks.join(",")),
        format!("stopped_by={stop:?}"),
    ]
}

fn report_drops(snapshot: &Snapshot) {
    if snapshot.total_drops() == 0 {
        return;
    }
    let reasons = DROP_NAMES
        .iter()
        .zip(snapshot.drops)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "timerscope: warning: {} events or stacks were lost ({reasons}); raise --max-sites, \
         --max-live or --max-stacks",
        snapshot.total_drops()
    );
}

/// `timerscope-PID-YYYYmmddTHHMMSS.pb.gz`, local time.
fn default_output(pid: u32) -> PathBuf {
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&now, &mut tm) };
    PathBuf::from(format!(
        "timerscope-{pid}-{:04}{:02}{:02}T{:02}{:02}{:02}.pb.gz",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}

/// Starts a command stopped at its first instruction after exec (ptrace), so the probes are
/// attached before any of its code runs.
fn launch_stopped(argv: &[OsString]) -> anyhow::Result<Child> {
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
    match waitpid(Pid::from_raw(child.id() as i32), None) {
        Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => Ok(child),
        other => bail!(
            "launch: {} did not stop at exec ({other:?})",
            Path::new(program).display()
        ),
    }
}

/// Waits for the duration, a signal, or the target's exit, showing a status line on a terminal.
/// SIGINT and SIGTERM, caught for the whole recording.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }
}

async fn wait_for_end(
    signals: &mut StopSignals,
    probe: &mut Probe,
    mappings: &mut LiveMappings,
    hooks: usize,
    pid: u32,
    exited: &mut tokio::task::JoinHandle<Option<ExitStatus>>,
    launched: bool,
    duration: Option<Duration>,
) -> anyhow::Result<(Stop, Option<ExitStatus>)> {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let status = crate::status::StatusLine::start();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = signals.interrupt.recv() => return Ok((Stop::Interrupted("SIGINT"), None)),
            _ = signals.terminate.recv() => return Ok((Stop::Interrupted("SIGTERM"), None)),
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => {
                return Ok((Stop::Duration, None));
            }
            result = &mut *exited, if launched => {
                return Ok((Stop::TargetExited, result.ok().flatten()));
            }
            _ = tick.tick() => {
                if !launched && !crate::preflight::process_alive(pid) {
                    return Ok((Stop::TargetExited, None));
                }
                collect::drain_mmap_events(&mut probe.mmap_events, mappings);
                if let Ok((events, drops)) = collect::counters(&probe.ebpf, hooks) {
                    status.show(events, collect::live_count(&probe.ebpf), drops);
                }
            }
        }
    }
}
