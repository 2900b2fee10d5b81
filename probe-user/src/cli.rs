//! Command-line interface: clap definitions and the thin wiring to each stage.

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

use analyzer::{cli_args, inspect};
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
    /// Capture continuously on a host: one profile per interval, metrics, pushes (needs root).
    ///
    /// Each interval's profile (DIR/<exe>-<pid>-<start>.pb.gz, written atomically) has that
    /// interval's counts, and the live timers and mappings as of its end. With --exe every
    /// process running that binary is followed, including ones started later (a restarted
    /// target is picked up under its new pid). SIGINT/SIGTERM write the current interval and
    /// exit 0; SIGHUP rotates now.
    ///
    /// Examples:
    ///   timerscope watch --pid 1234 --interval 60s --dir /var/lib/timerscope
    ///   timerscope watch --exe /usr/local/bin/api --dir /var/lib/timerscope --keep 1440 \
    ///       --max-disk 2GiB --metrics-addr 127.0.0.1:9464 --push http://pyroscope:4040
    Watch(WatchArgs),
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
    /// Inspect Go services through their own net/http/pprof endpoints (no root needed).
    ///
    /// One run is one round, meant for cron or a CI schedule: pull each service's profiles
    /// (cpu, heap, goroutine, block, mutex; a few services at a time, with timeouts and retries),
    /// store them under STORE/<service>/<profile>/<timestamp>.pb.gz, and compare each with the
    /// service's previous round and its baseline. Reports per service: function shares that
    /// moved more than --threshold points, the slopes of heap in-use bytes and goroutines over
    /// the stored rounds, and the classifier's findings (a function whose memory grows while its
    /// goroutines pile up is one finding). A service that does not answer is reported as
    /// unreachable; the others still run. Exit status 3 when something reaches --fail-on.
    ///
    /// Targets file (TOML; YAML with the same keys also works):
    ///   [[services]]
    ///   name = "checkout"
    ///   url = "http://10.0.0.7:6060"
    ///   profiles = ["cpu", "heap", "goroutine"]
    ///   threshold = 10.0     # optional: pp, instead of --threshold
    ///
    /// Examples:
    ///   timerscope inspect --targets services.toml --store /var/lib/timerscope
    ///   timerscope inspect --targets services.yaml --cpu-seconds 10 --json --fail-on high
    ///   timerscope inspect baseline set checkout            # pin the newest round
    #[command(verbatim_doc_comment)]
    Inspect(InspectArgs),
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
#[command(subcommand_negates_reqs = true)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub action: Option<InspectAction>,
    /// The services to inspect: a TOML (*.toml) or YAML (*.yaml, *.yml) file.
    #[arg(long, required = true)]
    pub targets: Option<PathBuf>,
    /// Where rounds are stored [default: $XDG_STATE_HOME/timerscope/inspect, else
    /// ~/.local/state/timerscope/inspect].
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    /// Length of each CPU profile in seconds.
    #[arg(long, default_value_t = inspect::DEFAULT_CPU_SECONDS,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub cpu_seconds: u32,
    /// Flag functions whose share of a profile moved by more than this many percentage points
    /// since the baseline or the previous round (a service's own `threshold` wins).
    #[arg(long, default_value_t = cli_args::DEFAULT_THRESHOLD_PP)]
    pub threshold: f64,
    /// Rounds kept per service; older ones are deleted, except the pinned baseline.
    #[arg(long, default_value_t = inspect::DEFAULT_KEEP_ROUNDS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a finding, share shift or growth of this severity or higher exists.
    #[arg(long, value_name = "low|medium|high")]
    pub fail_on: Option<analyzer::classify::Severity>,
}

#[derive(Debug, Subcommand)]
pub enum InspectAction {
    /// Choose the round each later round is compared with.
    #[command(subcommand)]
    Baseline(BaselineAction),
}

#[derive(Debug, Subcommand)]
pub enum BaselineAction {
    /// Pin a stored round of SERVICE as its baseline (without one, the oldest stored round is
    /// used).
    ///
    /// Example:
    ///   timerscope inspect --store /var/lib/timerscope baseline set checkout 20260127T1015
    #[command(verbatim_doc_comment)]
    Set {
        /// The service's name in the targets file.
        service: String,
        /// The round: its timestamp as in the report (YYYYmmddTHHMMSS.mmmZ), RFC 3339, or a
        /// unique prefix [default: the newest round].
        timestamp: Option<String>,
    },
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

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Process to watch; the watch ends when it exits.
    #[arg(long, conflicts_with = "exe", required_unless_present = "exe")]
    pub pid: Option<u32>,
    /// Watch every process running this binary, now and later.
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// Length of one profile's interval.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Directory for the profiles (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep at most this many profiles (oldest deleted first).
    #[arg(long)]
    pub keep: Option<usize>,
    /// Keep the profiles under this total size (e.g. 500MiB, 2GiB).
    #[arg(long)]
    pub max_disk: Option<bytesize::ByteSize>,
    /// Serve Prometheus metrics here (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Push each profile to this Pyroscope server (its /ingest API); spooled while it is down.
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    #[command(flatten)]
    pub sizes: MapSizeArgs,
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
    /// Distinct user stacks kept (about 1 KiB of kernel memory each).
    #[arg(long, default_value_t = MapSizes::default().stacks,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
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
        Command::Watch(args) => {
            let target = match (args.pid, args.exe) {
                (Some(pid), _) => crate::watch::WatchTarget::Pid(pid),
                (None, Some(exe)) => crate::watch::WatchTarget::Exe(exe),
                (None, None) => unreachable!("clap requires --pid or --exe"),
            };
            crate::watch::watch(crate::watch::WatchOptions {
                target,
                interval: args.interval,
                dir: args.dir,
                keep: args.keep,
                max_disk: args.max_disk.map(|size| size.as_u64()),
                metrics_addr: args.metrics_addr,
                push: args.push,
                sizes: (&args.sizes).into(),
            })
            .await?;
            Ok(ExitCode::SUCCESS)
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
        Command::Inspect(args) => Ok(analyze(|| inspect_command(args))),
    }
}

fn inspect_command(args: InspectArgs) -> anyhow::Result<i32> {
    let store = args.store.unwrap_or_else(inspect::default_store_dir);
    match (args.action, args.targets) {
        (Some(InspectAction::Baseline(BaselineAction::Set { service, timestamp })), _) => {
            let round = inspect::set_baseline(&store, &service, timestamp.as_deref())?;
            let profiles: Vec<&str> = round.profiles.keys().map(|k| k.name()).collect();
            println!(
                "{service}: baseline pinned to round {} ({}) in {}",
                round.timestamp,
                profiles.join(", "),
                store.display()
            );
            Ok(0)
        }
        (None, Some(targets)) => {
            let report = inspect::run_inspect(&inspect::InspectOptions {
                targets,
                store,
                pull: inspect::pull::PullSettings {
                    cpu_seconds: args.cpu_seconds,
                    ..Default::default()
                },
                threshold_pp: args.threshold,
                keep_rounds: usize::try_from(args.keep).unwrap_or(usize::MAX),
            })?;
            print_report(&report, args.json);
            Ok(cli_args::inspect_exit_status(&report, args.fail_on))
        }
        (None, None) => unreachable!("clap requires --targets without a subcommand"),
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
