//! Command-line interface: clap definitions and the thin wiring to each stage.

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

use analyzer::cli_args;
use clap::{Args, Parser, Subcommand};

use crate::{
    attach::MapSizes,
    record::{RecordOptions, RecordTarget},
};

/// Exact timer and memory-mapping profiles of running Go programs, via eBPF.
///
/// timerscope attaches uprobes to the Go runtime's timer functions (and tracepoints to mmap) in
/// one process, without restarting or changing it, and writes a gzip pprof profile that
/// `go tool pprof`, Pyroscope, Parca and speedscope read.
#[derive(Debug, Parser)]
#[command(name = "timerscope", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record every timer created, reset, stopped and fired in a Go process (needs root).
    ///
    /// Attach to a running process with --pid, or launch one after `--`. The profile has the
    /// sample types timers_created, timers_reset, timers_stopped, timers_fired, timers_live (the
    /// default: timers still pending at the end, at the stack that created them) and
    /// timer_fire_delay, with labels kind (timer, ticker, afterfunc, sleep, netpoll, runtime)
    /// and callback (AfterFunc's function).
    ///
    /// Examples:
    ///   timerscope record --pid 1234 --duration 30s
    ///   timerscope record --output leak.pb.gz -- ./server --port 8080
    ///   go tool pprof -top -sample_index=timers_live leak.pb.gz
    Record(RecordArgs),
    /// Compare two profiles per function, like `go tool pprof -diff_base` (no root needed).
    ///
    /// Shows flat and cumulative change per function, each function's share of the total before
    /// and after and the change in percentage points, and functions that appeared or vanished.
    /// Rows whose share moved by more than --threshold points are flagged. Reads any pprof:
    /// timerscope's, or Go's own heap, goroutine, block, mutex and CPU profiles.
    ///
    /// Examples:
    ///   timerscope diff before.pb.gz after.pb.gz
    ///   timerscope diff --sample-index inuse_space heap1.pb.gz heap2.pb.gz --output d.pb.gz
    Diff(DiffArgs),
    /// Name the leaks in one or more profiles of one process (no root needed).
    ///
    /// Each finding has a kind (timer-after-in-loop, ticker-not-stopped, afterfunc-pending,
    /// timer-not-stopped, timer-fire-delay, mmap-growth, heap-growth, goroutine-growth), a
    /// severity, the first user-code function, file and line, evidence and a suggested fix.
    /// Several profiles in time order give trends. Exit status 3 when a finding reaches
    /// --fail-on; 2 for unusable input.
    ///
    /// Examples:
    ///   timerscope classify leak.pb.gz
    ///   timerscope classify --fail-on high --json heap-*.pb.gz
    Classify(ClassifyArgs),
    /// Draw a flame graph (SVG); differential with --base (no root needed).
    ///
    /// Example:
    ///   timerscope flamegraph --sample-index timers_live leak.pb.gz -o leak.svg
    Flamegraph(FlamegraphArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier profile.
    pub base: PathBuf,
    /// The later profile.
    pub new: PathBuf,
    /// Sample type to compare (e.g. timers_live, inuse_space) [default: the profile's default].
    #[arg(long)]
    pub sample_index: Option<String>,
    /// Rows to show (flagged rows are always shown); 0 for all.
    #[arg(long, default_value_t = analyzer::cli_args::DEFAULT_TOP)]
    pub top: usize,
    /// Flag functions whose share of the total moved by more than this many percentage points.
    #[arg(long, default_value_t = analyzer::cli_args::DEFAULT_THRESHOLD_PP)]
    pub threshold: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write a diff profile (base samples negated, labelled pprof::base=true).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Profiles of one process, oldest first (or in any order: time_nanos orders them).
    #[arg(required = true)]
    pub profiles: Vec<PathBuf>,
    /// A baseline profile, or a directory whose newest profile of the same binary is used.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Print JSON (see analyzer/schema/findings.schema.json).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a finding of this severity or higher exists.
    #[arg(long, value_name = "low|medium|high")]
    pub fail_on: Option<analyzer::classify::Severity>,
}

#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    pub profile: PathBuf,
    /// Sample type to draw [default: the profile's default].
    #[arg(long)]
    pub sample_index: Option<String>,
    /// Draw the difference from this profile.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Where to write the SVG.
    #[arg(long, short)]
    pub output: PathBuf,
}

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
    #[command(flatten)]
    pub sizes: MapSizeArgs,
    /// Command to launch and record.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Kernel map sizes. Overflows are counted and reported, never silent; raise these when they
/// are.
#[derive(Debug, Args)]
pub struct MapSizeArgs {
    /// Distinct (event, stack, callback) sites the kernel can count.
    #[arg(long, default_value_t = MapSizes::default().sites)]
    pub max_sites: u32,
    /// Timers tracked as live at once.
    #[arg(long, default_value_t = MapSizes::default().live)]
    pub max_live: u32,
    /// Distinct user stacks kept.
    #[arg(long, default_value_t = MapSizes::default().stacks)]
    pub max_stacks: u32,
}

impl From<&MapSizeArgs> for MapSizes {
    fn from(args: &MapSizeArgs) -> Self {
        Self {
            sites: args.max_sites,
            live: args.max_live,
            stacks: args.max_stacks,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => {
            let target = match args.pid {
                Some(pid) => RecordTarget::Pid(pid),
                None => RecordTarget::Command(args.command),
            };
            let outcome = crate::record::record(RecordOptions {
                target,
                duration: args.duration,
                output: args.output,
                sizes: (&args.sizes).into(),
            })
            .await?;
            println!("{}", outcome.output.display());
            Ok(exit_code_of(outcome.command_status))
        }
        Command::Diff(args) => Ok(analyze(|| {
            let report = cli_args::run_diff(&cli_args::DiffOptions {
                base: args.base,
                new: args.new,
                sample_index: args.sample_index,
                top: args.top,
                threshold_pp: args.threshold,
                output: args.output,
            })?;
            print_report(&report, args.json);
            Ok(0)
        })),
        Command::Classify(args) => Ok(analyze(|| {
            let report = cli_args::run_classify(&cli_args::ClassifyOptions {
                profiles: args.profiles,
                baseline: args.baseline,
            })?;
            print_report(&report, args.json);
            Ok(cli_args::classify_exit_status(&report, args.fail_on))
        })),
        Command::Flamegraph(args) => Ok(analyze(|| {
            let summary = cli_args::run_flamegraph(&cli_args::FlamegraphOptions {
                profile: args.profile,
                sample_index: args.sample_index,
                base: args.base,
                output: args.output,
            })?;
            println!("{summary}");
            Ok(0)
        })),
    }
}

fn print_report<T: std::fmt::Display + serde::Serialize>(report: &T, json: bool) {
    if json {
        println!("{}", cli_args::to_json(report));
    } else {
        print!("{report}");
    }
}

/// Runs an analyzer command: its own exit status, or on error one line and 2 (unusable input)
/// or 1 — never 3, which means "findings".
fn analyze(command: impl FnOnce() -> anyhow::Result<i32>) -> ExitCode {
    match command() {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) => {
            eprintln!("timerscope: error: {error:#}");
            ExitCode::from(cli_args::error_exit_status(&error) as u8)
        }
    }
}

/// A launched command's exit status, passed through (signals as 128 + signal, like a shell).
fn exit_code_of(status: Option<std::process::ExitStatus>) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, Some(signal)) => ExitCode::from(128 + signal as u8),
            _ => ExitCode::FAILURE,
        },
        None => ExitCode::SUCCESS,
    }
}
