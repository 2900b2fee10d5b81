//! Command-line interface: clap definitions and the thin wiring to each stage.

use std::{ffi::OsString, path::PathBuf, process::ExitCode, time::Duration};

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
