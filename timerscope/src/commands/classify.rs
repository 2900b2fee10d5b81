//! `timerscope classify PROFILE...`: the leaks the profiles show, with their sites in user code.

use std::fs;
use std::path::{Path, PathBuf};

use analyzer::classify::{ClassifyReport, Severity, classify};
use anyhow::Context as _;
use clap::Args;
use pprof::{DecodeLimits, Profile, ResolvedProfile, read_file_with};

use super::{ProfileSizeArgs, load_profile};

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
    pub fail_on: Option<Severity>,
    #[command(flatten)]
    pub size: ProfileSizeArgs,
}

/// What `classify` reads, without clap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyOptions {
    pub profiles: Vec<PathBuf>,
    pub baseline: Option<PathBuf>,
    pub limits: DecodeLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(
        "{0} has no build id on its main mapping, so no baseline of the same binary can be chosen; pass --baseline FILE instead"
    )]
    NoBuildId(PathBuf),
    #[error(
        "no profile in {dir} has build id {build_id}; record a baseline of this binary there or pass --baseline FILE"
    )]
    NotFound { dir: PathBuf, build_id: String },
    #[error("cannot list {0}")]
    ReadDir(PathBuf, #[source] std::io::Error),
}

/// The newest profile in `dir` (by `time_nanos`, then file name) whose main mapping has
/// `build_id`, other than the files in `exclude`. Files that are not profiles are skipped.
pub fn find_baseline(
    dir: &Path,
    build_id: &str,
    exclude: &[PathBuf],
    limits: &DecodeLimits,
) -> Result<(PathBuf, Profile), BaselineError> {
    let excluded: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let entries = fs::read_dir(dir).map_err(|e| BaselineError::ReadDir(dir.to_owned(), e))?;
    let mut best: Option<(i64, PathBuf, Profile)> = None;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() || path.canonicalize().is_ok_and(|c| excluded.contains(&c)) {
            continue;
        }
        let Ok(profile) = read_file_with(&path, limits) else {
            continue;
        };
        let resolved = ResolvedProfile::new(&profile);
        if resolved.main_build_id != build_id {
            continue;
        }
        let newer = best
            .as_ref()
            .is_none_or(|(t, p, _)| (resolved.time_nanos, &path) > (*t, p));
        if newer {
            best = Some((resolved.time_nanos, path, profile));
        }
    }
    best.map(|(_, path, profile)| (path, profile))
        .ok_or_else(|| BaselineError::NotFound {
            dir: dir.to_owned(),
            build_id: build_id.to_owned(),
        })
}

/// Classifies the profiles (plus the baseline as the earliest point of their series).
pub fn run_classify(options: &ClassifyOptions) -> anyhow::Result<ClassifyReport> {
    let mut profiles = Vec::with_capacity(options.profiles.len() + 1);
    for path in &options.profiles {
        profiles.push(ResolvedProfile::new(&load_profile(path, &options.limits)?));
    }
    if let Some(baseline) = &options.baseline {
        let base = if baseline.is_dir() {
            let first = options.profiles.first().zip(profiles.first());
            let (first_path, first) = first.context("classify needs at least one PROFILE")?;
            if first.main_build_id.is_empty() {
                return Err(BaselineError::NoBuildId(first_path.clone()).into());
            }
            find_baseline(
                baseline,
                &first.main_build_id,
                &options.profiles,
                &options.limits,
            )?
            .1
        } else {
            load_profile(baseline, &options.limits)?
        };
        profiles.push(ResolvedProfile::new(&base));
    }
    Ok(classify(&profiles))
}

pub fn run(args: ClassifyArgs) -> anyhow::Result<u8> {
    let report = run_classify(&ClassifyOptions {
        profiles: args.profiles,
        baseline: args.baseline,
        limits: (&args.size).into(),
    })?;
    crate::render::print_report(&report, args.json);
    Ok(exit_status(&report, args.fail_on))
}

/// 3 when a finding at or above `fail_on` exists, else 0.
pub fn exit_status(report: &ClassifyReport, fail_on: Option<Severity>) -> u8 {
    crate::exit::findings_status(fail_on.is_some_and(|level| report.fails(level)))
}
