//! `timerscope diff BASE NEW`: per-function change between two profiles, like
//! `go tool pprof -diff_base`.

use std::path::PathBuf;

use analyzer::diff::{DEFAULT_THRESHOLD_PP, DiffReport, diff_profile, diff_sums};
use anyhow::Context as _;
use clap::Args;
use pprof::{DecodeLimits, FunctionSums, write_atomic};

use super::{ProfileSizeArgs, load_profile};

/// `--top` default.
pub const DEFAULT_TOP: usize = 20;

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
    #[arg(long, default_value_t = DEFAULT_TOP)]
    pub top: usize,
    /// Flag functions whose share of the total moved by more than this many percentage points.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD_PP)]
    pub threshold: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write a diff profile (base samples negated, labelled pprof::base=true).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub size: ProfileSizeArgs,
}

/// What `diff` compares, without clap.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffOptions {
    pub base: PathBuf,
    pub new: PathBuf,
    pub sample_index: Option<String>,
    /// Rows to show; 0 shows all. Flagged rows are always shown.
    pub top: usize,
    pub threshold_pp: f64,
    pub output: Option<PathBuf>,
    pub limits: DecodeLimits,
}

impl From<DiffArgs> for DiffOptions {
    fn from(args: DiffArgs) -> Self {
        Self {
            base: args.base,
            new: args.new,
            sample_index: args.sample_index,
            top: args.top,
            threshold_pp: args.threshold,
            output: args.output,
            limits: (&args.size).into(),
        }
    }
}

/// Compares NEW against BASE and writes the diff profile when `--output` is given.
pub fn run_diff(options: &DiffOptions) -> anyhow::Result<DiffReport> {
    // Only the per-function sums, one profile at a time: a fraction of a decoded profile's size.
    let sums = |path: &std::path::Path, sample_type: Option<&str>| {
        FunctionSums::read_file(path, sample_type, &options.limits)
            .with_context(|| format!("{}", path.display()))
    };
    let asked = options.sample_index.as_deref();
    let new = sums(&options.new, asked)?;
    // The type chosen in the new profile, also when the base's default differs.
    let base = sums(&options.base, new.sample_type().or(asked))?;
    let mut report = diff_sums(&base, &new, asked, options.threshold_pp)?;
    if let Some(output) = &options.output {
        let (base, new) = (
            load_profile(&options.base, &options.limits)?,
            load_profile(&options.new, &options.limits)?,
        );
        write_atomic(output, &diff_profile(&base, &new)?)?;
    }
    report.truncate(options.top);
    Ok(report)
}

pub fn run(args: DiffArgs) -> anyhow::Result<u8> {
    let json = args.json;
    let report = run_diff(&args.into())?;
    crate::render::print_report(&report, json);
    Ok(crate::exit::SUCCESS)
}
