//! The command line: the top-level clap definitions, global flags, and the dispatch to one
//! file per subcommand under [`crate::commands`].

use clap::{Parser, Subcommand};

use crate::commands::{
    classify::ClassifyArgs, completions::CompletionsArgs, diff::DiffArgs,
    flamegraph::FlamegraphArgs, goroutines::GoroutinesArgs, inspect::InspectArgs, man::ManArgs,
    record::RecordArgs, report::ReportArgs, top::TopArgs, watch::WatchArgs,
};

/// The git commit this binary was built from (by build.rs; `-dirty` with uncommitted changes).
pub const GIT_COMMIT: &str = env!("TIMERSCOPE_GIT_COMMIT");

/// `--version`: the crate version and the git commit.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TIMERSCOPE_GIT_COMMIT"),
    ")"
);

/// Exact timer and memory-mapping profiles of running Go programs, via eBPF.
///
/// timerscope attaches uprobes to the Go runtime's timer functions (and tracepoints to mmap) in
/// one process, without restarting or changing it, and writes a gzip pprof profile that
/// `go tool pprof`, Pyroscope, Parca and speedscope read.
#[derive(Debug, Parser)]
#[command(name = "timerscope", version = VERSION, propagate_version = true,
          after_help = crate::exit::help())]
pub struct Cli {
    /// More log lines on stderr: -v for info, -vv for debug, -vvv for trace (RUST_LOG, when
    /// set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
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
    /// timer-not-stopped, timer-fire-delay, mmap-growth, heap-growth, goroutine-growth,
    /// goroutine-leak, c-heap-growth, rss-outside-heap), a severity, the first user-code
    /// function, file and line, evidence and a suggested fix. Several profiles in time order
    /// give trends. Exit status 3 when a finding reaches --fail-on; 2 for unusable input.
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
    /// Write one self-contained HTML report: findings, plots over time, flame graphs (no root
    /// needed).
    ///
    /// From a `watch` directory or profiles (one section per process), or an `inspect` store (one
    /// section per service). Each section lists the findings most severe first, plots every
    /// sample type over time with its fitted slope and threshold, shows the top sites' own
    /// series, the newest flame graph and a differential one against the baseline (the first
    /// profile, or the pinned round), and the recording facts. The page fetches nothing.
    ///
    /// Examples:
    ///   timerscope report /var/lib/timerscope -o report.html
    ///   timerscope report --store /var/lib/timerscope/inspect --service checkout -o checkout.html
    #[command(verbatim_doc_comment)]
    Report(ReportArgs),
    /// A live view of one process: its sites by live timers, events per second or any sample
    /// type, refreshed every second (needs root).
    ///
    /// Each site (first user-code function and line) shows its value (live timers and mapped
    /// bytes as they are; counted events per second) and its change per second since the last
    /// refresh; above them the RSS, probe overhead, capture tier and drops. Keys: q quits (and
    /// detaches every probe), t/T switch the sample type, s cycles the order (value, change,
    /// name). When stdout is not a terminal it prints a plain-text table per refresh, or one
    /// table after --iterations N.
    ///
    /// Examples:
    ///   timerscope top --pid 1234
    ///   timerscope top --pid 1234 --iterations 5 --sample-type timers_created > top.txt
    #[command(verbatim_doc_comment)]
    Top(TopArgs),
    /// Count a live Go process's goroutines by the `go` statement that created them and what
    /// they wait for, read from its memory (no probes, no endpoint; needs root).
    ///
    /// Example:
    ///   timerscope goroutines --pid 4242
    #[command(verbatim_doc_comment)]
    Goroutines(GoroutinesArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Examples:
    ///   source <(timerscope completions bash)
    ///   timerscope completions zsh > ~/.zfunc/_timerscope
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
    /// Write the man pages (`cargo xtask man` runs this).
    #[command(hide = true)]
    Man(ManArgs),
}

impl Command {
    /// Runs the subcommand; its exit status, or on error one line and the status the error
    /// calls for.
    pub async fn run(self) -> u8 {
        let (result, status_of): (anyhow::Result<u8>, fn(&anyhow::Error) -> u8) = match self {
            Command::Record(args) => (
                crate::commands::record::run(args).await,
                crate::exit::capture_status,
            ),
            Command::Watch(args) => (
                crate::commands::watch::run(args).await,
                crate::exit::capture_status,
            ),
            Command::Diff(args) => (
                crate::commands::diff::run(args),
                crate::exit::analysis_status,
            ),
            Command::Classify(args) => (
                crate::commands::classify::run(args),
                crate::exit::analysis_status,
            ),
            Command::Flamegraph(args) => (
                crate::commands::flamegraph::run(args),
                crate::exit::analysis_status,
            ),
            Command::Inspect(args) => (
                crate::commands::inspect::run(args),
                crate::exit::analysis_status,
            ),
            Command::Report(args) => (
                crate::commands::report::run(args),
                crate::exit::analysis_status,
            ),
            Command::Top(args) => (
                crate::commands::top::run(args).await,
                crate::exit::capture_status,
            ),
            Command::Goroutines(args) => (
                crate::commands::goroutines::run(args),
                crate::exit::capture_status,
            ),
            Command::Completions(args) => (
                crate::commands::completions::run(args),
                crate::exit::analysis_status,
            ),
            Command::Man(args) => (
                crate::commands::man::run(args),
                crate::exit::analysis_status,
            ),
        };
        result.unwrap_or_else(|error| {
            eprintln!("timerscope: error: {}", crate::exit::one_line(&error));
            status_of(&error)
        })
    }
}
