//! `timerscope flamegraph PROFILE -o OUT.svg`: an SVG flame graph, differential with `--base`.

use std::path::PathBuf;

use analyzer::flamegraph::{FlamegraphSummary, write_flamegraph};
use clap::Args;
use pprof::{DecodeLimits, ResolvedProfile, write_bytes_atomic};

use super::{ProfileSizeArgs, load_profile};

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
    #[command(flatten)]
    pub size: ProfileSizeArgs,
}

/// What `flamegraph` draws, without clap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlamegraphOptions {
    pub profile: PathBuf,
    pub sample_index: Option<String>,
    pub base: Option<PathBuf>,
    pub output: PathBuf,
    pub limits: DecodeLimits,
}

impl From<FlamegraphArgs> for FlamegraphOptions {
    fn from(args: FlamegraphArgs) -> Self {
        Self {
            profile: args.profile,
            sample_index: args.sample_index,
            base: args.base,
            output: args.output,
            limits: (&args.size).into(),
        }
    }
}

/// Draws the flame graph and writes it atomically to `--output`.
pub fn run_flamegraph(options: &FlamegraphOptions) -> anyhow::Result<FlamegraphSummary> {
    let profile = ResolvedProfile::new(&load_profile(&options.profile, &options.limits)?);
    let base = match &options.base {
        Some(path) => Some(ResolvedProfile::new(&load_profile(path, &options.limits)?)),
        None => None,
    };
    let mut svg = Vec::new();
    let summary = write_flamegraph(
        &profile,
        base.as_ref(),
        options.sample_index.as_deref(),
        &mut svg,
    )?;
    write_bytes_atomic(&options.output, &svg)?;
    Ok(summary)
}

pub fn run(args: FlamegraphArgs) -> anyhow::Result<u8> {
    let summary = run_flamegraph(&args.into())?;
    println!("{}", crate::render::Text(&summary));
    Ok(crate::exit::SUCCESS)
}
