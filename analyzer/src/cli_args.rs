//! What the `timerscope diff|classify|flamegraph` subcommands do, without clap: option structs,
//! `run_*` functions, text (`Display`) and JSON rendering, and exit statuses (also `inspect`'s,
//! whose options and run live in [`crate::inspect`]). The clap layer in probe-user only fills the
//! structs and prints.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::classify::{ClassifyReport, Severity, classify};
use crate::diff::{DiffError, DiffReport, Presence, diff, diff_profile};
use crate::flamegraph::{FlamegraphError, FlamegraphSummary, write_flamegraph};
use crate::inspect::InspectError;
use crate::inspect::report::InspectReport;
use crate::pprof::Profile;
use crate::profile::{ProfileError, read_file, write_atomic, write_bytes_atomic};
use crate::resolved::ResolvedProfile;

/// `--threshold` default: share changes above this many percentage points are flagged.
pub const DEFAULT_THRESHOLD_PP: f64 = 15.0;
/// `--top` default.
pub const DEFAULT_TOP: usize = 20;

/// Exit status when `classify --fail-on` matched a finding.
pub const EXIT_FINDINGS: i32 = 3;
/// Exit status for unusable input: unreadable or invalid profiles, incompatible profiles, unknown
/// sample types, no baseline, a refused output path.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit status for any other failure.
pub const EXIT_FAILURE: i32 = 1;

/// `timerscope diff BASE NEW [--sample-index NAME] [--top N] [--threshold PP] [--json]
/// [--output DIFF.pb.gz]`
#[derive(Debug, Clone, PartialEq)]
pub struct DiffOptions {
    pub base: PathBuf,
    pub new: PathBuf,
    pub sample_index: Option<String>,
    /// Rows to show; 0 shows all. Flagged rows are always shown.
    pub top: usize,
    pub threshold_pp: f64,
    pub output: Option<PathBuf>,
}

/// `timerscope classify PROFILE... [--baseline FILE|DIR] [--json] [--fail-on low|medium|high]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyOptions {
    pub profiles: Vec<PathBuf>,
    pub baseline: Option<PathBuf>,
}

/// `timerscope flamegraph PROFILE [--sample-index NAME] [--base BASE] -o OUT.svg`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlamegraphOptions {
    pub profile: PathBuf,
    pub sample_index: Option<String>,
    pub base: Option<PathBuf>,
    pub output: PathBuf,
}

fn load(path: &Path) -> anyhow::Result<Profile> {
    read_file(path).with_context(|| format!("{}", path.display()))
}

/// Compares NEW against BASE and writes the diff profile when `--output` is given.
pub fn run_diff(options: &DiffOptions) -> anyhow::Result<DiffReport> {
    let base = load(&options.base)?;
    let new = load(&options.new)?;
    let mut report = diff(
        &ResolvedProfile::new(&base),
        &ResolvedProfile::new(&new),
        options.sample_index.as_deref(),
        options.threshold_pp,
    )?;
    if let Some(output) = &options.output {
        write_atomic(output, &diff_profile(&base, &new)?)?;
    }
    report.truncate(options.top);
    Ok(report)
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
        let Ok(profile) = read_file(&path) else {
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
        profiles.push(ResolvedProfile::new(&load(path)?));
    }
    if let Some(baseline) = &options.baseline {
        let base = if baseline.is_dir() {
            let first = options.profiles.first().zip(profiles.first());
            let (first_path, first) = first.context("classify needs at least one PROFILE")?;
            if first.main_build_id.is_empty() {
                return Err(BaselineError::NoBuildId(first_path.clone()).into());
            }
            find_baseline(baseline, &first.main_build_id, &options.profiles)?.1
        } else {
            load(baseline)?
        };
        profiles.push(ResolvedProfile::new(&base));
    }
    Ok(classify(&profiles))
}

/// The exit status of `classify`: 3 when a finding at or above `fail_on` exists, else 0.
pub fn classify_exit_status(report: &ClassifyReport, fail_on: Option<Severity>) -> i32 {
    match fail_on {
        Some(level) if report.fails(level) => EXIT_FINDINGS,
        _ => 0,
    }
}

/// The exit status of `inspect`: 3 when a finding, share shift or growth trend at or above
/// `fail_on` exists, else 0 (an unreachable service alone is not a failure).
pub fn inspect_exit_status(report: &InspectReport, fail_on: Option<Severity>) -> i32 {
    match fail_on {
        Some(level) if report.fails(level) => EXIT_FINDINGS,
        _ => 0,
    }
}

/// The exit status for an error returned by a `run_*` function: 2 for unusable input, 1 otherwise;
/// never 3, which means "findings".
pub fn error_exit_status(error: &anyhow::Error) -> i32 {
    let bad_input = error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<ProfileError>() {
            return !matches!(e, ProfileError::Write { .. });
        }
        if let Some(e) = cause.downcast_ref::<InspectError>() {
            return e.is_bad_input();
        }
        if let Some(e) = cause.downcast_ref::<FlamegraphError>() {
            return !matches!(e, FlamegraphError::Render(_));
        }
        cause.is::<DiffError>() || cause.is::<BaselineError>()
    });
    if bad_input {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILURE
    }
}

/// Draws the flame graph and writes it atomically to `--output`.
pub fn run_flamegraph(options: &FlamegraphOptions) -> anyhow::Result<FlamegraphSummary> {
    let profile = ResolvedProfile::new(&load(&options.profile)?);
    let base = match &options.base {
        Some(path) => Some(ResolvedProfile::new(&load(path)?)),
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

/// JSON for `--json`: the serde form of any report.
pub fn to_json<T: serde::Serialize>(report: &T) -> String {
    // These reports hold only strings, numbers and enums: serializing cannot fail.
    serde_json::to_string_pretty(report).expect("report serializes")
}

/// A value in its unit, scaled for reading: bytes in KiB/MiB/GiB, nanoseconds in µs/ms/s.
pub(crate) fn human(value: f64, unit: &str) -> String {
    let scales: &[(f64, &str)] = match unit {
        "bytes" => &[
            (1024.0 * 1024.0 * 1024.0, "GiB"),
            (1024.0 * 1024.0, "MiB"),
            (1024.0, "KiB"),
        ],
        "nanoseconds" => &[(1e9, "s"), (1e6, "ms"), (1e3, "µs")],
        _ => &[],
    };
    for &(factor, name) in scales {
        if value.abs() >= factor {
            return format!("{:.2}{name}", value / factor);
        }
    }
    match unit {
        "bytes" => format!("{value:.0}B"),
        "nanoseconds" => format!("{value:.0}ns"),
        _ => format!("{value:.0}"),
    }
}

fn signed(value: i64, unit: &str) -> String {
    let text = human(value as f64, unit);
    if value > 0 { format!("+{text}") } else { text }
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Type: {}  base total {}  new total {}  (! = share moved more than {} pp)",
            self.sample_type,
            human(self.base_total as f64, &self.unit),
            human(self.new_total as f64, &self.unit),
            self.threshold_pp
        )?;
        writeln!(
            f,
            "  {:>11} {:>23} {:>11} {:>23}  function",
            "flat Δ", "flat% base→new (Δpp)", "cum Δ", "cum% base→new (Δpp)"
        )?;
        for r in &self.rows {
            let note = match r.presence {
                Presence::Both => "",
                Presence::Appeared => " (appeared)",
                Presence::Vanished => " (vanished)",
            };
            writeln!(
                f,
                "{} {:>11} {:>6.2}→{:>6.2} ({:>+7.2}) {:>11} {:>6.2}→{:>6.2} ({:>+7.2})  {}{note}",
                if r.flagged { '!' } else { ' ' },
                signed(r.flat_delta, &self.unit),
                r.flat_share_base,
                r.flat_share_new,
                r.flat_share_delta_pp,
                signed(r.cum_delta, &self.unit),
                r.cum_share_base,
                r.cum_share_new,
                r.cum_share_delta_pp,
                r.function
            )?;
        }
        if self.omitted_rows > 0 {
            writeln!(
                f,
                "  ... {} smaller changes not shown (--top 0 shows all)",
                self.omitted_rows
            )?;
        }
        writeln!(f, "appeared: {}", list_or_none(&self.appeared))?;
        write!(f, "vanished: {}", list_or_none(&self.vanished))
    }
}

/// At most this many names of appeared/vanished functions in text output (JSON has them all).
const LISTED_NAMES: usize = 10;

fn list_or_none(names: &[String]) -> String {
    match names.len() {
        0 => "none".to_owned(),
        n if n <= LISTED_NAMES => names.join(", "),
        n => format!(
            "{}, and {} more (--json lists all)",
            names[..LISTED_NAMES].join(", "),
            n - LISTED_NAMES
        ),
    }
}

impl fmt::Display for ClassifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            writeln!(f, "no findings")?;
        }
        for finding in &self.findings {
            writeln!(
                f,
                "[{}] {} at {} ({}:{})\n    {}\n    fix: {}",
                finding.severity,
                finding.kind,
                finding.function,
                finding.file,
                finding.line,
                finding.evidence,
                finding.suggestion
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

impl fmt::Display for FlamegraphSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} flame graph of {} with {} stacks",
            if self.differential {
                "differential"
            } else {
                "plain"
            },
            self.sample_type,
            self.stacks
        )
    }
}
