//! One module per subcommand: its clap arguments and what it does with them.

pub mod classify;
pub mod completions;
pub mod diff;
pub mod flamegraph;
pub mod goroutines;
pub mod inspect;
pub mod man;
pub mod record;
pub mod report;
pub mod top;
pub mod watch;

use std::path::Path;

use anyhow::Context as _;
use capture::attach::MapSizes;
use clap::Args;
use pprof::{DecodeLimits, Profile, read_file_with};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Reads a profile file within `limits`, naming it in the error.
fn load_profile(path: &Path, limits: &DecodeLimits) -> anyhow::Result<Profile> {
    read_file_with(path, limits).with_context(|| format!("{}", path.display()))
}

/// How much memory reading one profile may take.
#[derive(Debug, Args)]
pub struct ProfileSizeArgs {
    /// Largest profile read: bytes of protobuf once gunzipped, and about what it takes decoded
    /// (a larger one is refused; peak memory stays within about twice this).
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub max_profile_size: bytesize::ByteSize,
}

impl From<&ProfileSizeArgs> for DecodeLimits {
    fn from(args: &ProfileSizeArgs) -> Self {
        Self {
            max_size: args.max_profile_size.as_u64(),
        }
    }
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
    /// C heap blocks tracked as live at once (kernel memory grows with the blocks live, about
    /// 100 bytes each).
    #[arg(long, default_value_t = MapSizes::default().c_blocks,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(capture::collect::MAX_C_BLOCKS)))]
    pub max_c_blocks: u32,
    /// Timer creations remembered so pending timers read from memory land at their creation
    /// stacks (about 100 bytes of kernel memory each; the oldest are evicted first, counted).
    #[arg(long, default_value_t = MapSizes::default().creations,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 24)))]
    pub max_creations: u32,
    /// Goroutines created while recorded that are tracked until they exit, so their exits
    /// count at their creating stack (about 64 bytes of kernel memory each, allocated up
    /// front).
    #[arg(long, default_value_t = MapSizes::default().goroutines,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub max_goroutines: u32,
}

impl From<&MapSizeArgs> for MapSizes {
    fn from(args: &MapSizeArgs) -> Self {
        Self {
            sites: args.max_sites,
            live: args.max_live,
            stacks: args.max_stacks,
            c_blocks: args.max_c_blocks,
            creations: args.max_creations,
            goroutines: args.max_goroutines,
        }
    }
}

/// `--events all|create|none`: which timer events the probes capture.
pub fn events_parser() -> impl clap::builder::TypedValueParser<Value = pprof::vocabulary::Events> {
    use clap::builder::TypedValueParser as _;
    let names: Vec<&'static str> = pprof::vocabulary::Events::ALL
        .iter()
        .map(|e| e.as_str())
        .collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|name| name.parse().expect("one of the possible values"))
}

/// SIGINT and SIGTERM, caught for the whole of a capture command.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
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
