//! `timerscope report`: one self-contained HTML file from a `watch` directory, profiles, or an
//! `inspect` store (one service or all). `inspect --html` uses the same page for its round.

use std::path::{Path, PathBuf};

use analyzer::diff::DEFAULT_THRESHOLD_PP;
use anyhow::Context as _;
use clap::Args;
use inspect::analysis::{Thresholds, analyze, history, mib_per_s};
use inspect::report::{InspectReport, Reachability, ServiceReport};
use inspect::store::{ServiceIndex, Store, StoreError};
use inspect::{DEFAULT_GOROUTINE_SLOPE_PER_S, DEFAULT_HEAP_SLOPE_MIB_PER_S, InspectError};
use pprof::{ResolvedProfile, write_bytes_atomic};

use super::load_profile;
use crate::report::{Report, Section, ServiceSummary, profiles_report, render, service_section};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Profiles, or `watch` directories (every *.pb.gz directly in them).
    #[arg(required_unless_present = "store", conflicts_with = "store")]
    pub paths: Vec<PathBuf>,
    /// An `inspect` store: report its services' stored rounds.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// With --store: only this service (repeat for several) [default: every service].
    #[arg(long, requires = "store")]
    pub service: Vec<String>,
    /// Where to write the HTML file.
    #[arg(long, short)]
    pub output: PathBuf,
    #[command(flatten)]
    pub size: super::ProfileSizeArgs,
}

/// Unusable input of `report` (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0} holds no *.pb.gz profile; give a `timerscope watch` directory or profile files")]
    NoProfiles(PathBuf),
    #[error("the store {0} holds no inspected service; run `timerscope inspect --store` first")]
    EmptyStore(PathBuf),
}

/// The profiles given: files as they are, directories by their `*.pb.gz` files.
fn collect_profiles(
    paths: &[PathBuf],
    limits: &pprof::DecodeLimits,
) -> anyhow::Result<Vec<(PathBuf, ResolvedProfile)>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".pb.gz"))
                .collect();
            if found.is_empty() {
                return Err(ReportError::NoProfiles(path.clone()).into());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .into_iter()
        .map(|file| {
            Ok((
                file.clone(),
                ResolvedProfile::new(&load_profile(&file, limits)?),
            ))
        })
        .collect()
}

/// Thresholds of `report --store`, which has no targets file: inspect's defaults.
fn default_thresholds() -> Thresholds {
    Thresholds {
        share_pp: DEFAULT_THRESHOLD_PP,
        heap_slope_bytes_per_s: mib_per_s(DEFAULT_HEAP_SLOPE_MIB_PER_S),
        goroutine_slope_per_s: DEFAULT_GOROUTINE_SLOPE_PER_S,
    }
}

fn store_error(store: &Path) -> impl Fn(StoreError) -> InspectError + '_ {
    move |e| InspectError::Store(store.to_owned(), e)
}

fn baseline_nanos(index: &ServiceIndex, timestamp: Option<&str>) -> Option<i64> {
    timestamp
        .and_then(|ts| index.round(ts))
        .map(|r| r.time_nanos)
}

/// A store's services, each judged as the newest round of `inspect` would be (with inspect's
/// default thresholds).
fn store_report(store_dir: &Path, services: &[String]) -> anyhow::Result<Report> {
    let store = Store::new(store_dir);
    let services = if services.is_empty() {
        store.services().map_err(store_error(store_dir))?
    } else {
        services.to_vec()
    };
    if services.is_empty() {
        return Err(ReportError::EmptyStore(store_dir.to_owned()).into());
    }
    let mut sections = Vec::new();
    for service in &services {
        let index = store.index(service).map_err(store_error(store_dir))?;
        let Some(newest) = index.rounds.last() else {
            return Err(InspectError::Store(
                store_dir.to_owned(),
                StoreError::NoRounds {
                    service: service.clone(),
                },
            )
            .into());
        };
        let analysis = analyze(&store, &index, &default_thresholds());
        let baseline = analysis.baseline.as_ref().map(|b| b.timestamp.as_str());
        let subtitle = format!(
            "{} round(s) stored, newest {}{}",
            index.rounds.len(),
            newest.timestamp,
            baseline.map_or_else(String::new, |b| format!(", baseline {b}"))
        );
        let (history, mut notes) = history(&store, &index);
        notes.extend(analysis.notes.iter().cloned());
        sections.push(service_section(
            &ServiceSummary {
                service,
                subtitle,
                trends: &analysis.trends,
                findings: &analysis.findings,
                notes: &notes,
                baseline_nanos: baseline_nanos(&index, baseline),
            },
            &history,
        ));
    }
    Ok(Report {
        source: format!("inspect store {}", store_dir.display()),
        sections,
    })
}

/// The report of one `inspect` round: each service as the round judged it.
pub fn inspect_report(report: &InspectReport) -> anyhow::Result<Report> {
    let store = Store::new(&report.store);
    let mut sections = Vec::new();
    for service in &report.services {
        sections.push(service_of_round(&store, &report.store, service)?);
    }
    Ok(Report {
        source: format!(
            "inspect of {} (store {})",
            report.targets.display(),
            report.store.display()
        ),
        sections,
    })
}

fn service_of_round(
    store: &Store,
    store_dir: &Path,
    service: &ServiceReport,
) -> anyhow::Result<Section> {
    let baseline = service.baseline.as_ref().map(|b| b.timestamp.as_str());
    let mut notes: Vec<String> = service.error.iter().cloned().collect();
    notes.extend(
        service
            .profile_errors
            .iter()
            .map(|f| format!("{} profile not pulled: {}", f.profile, f.error)),
    );
    notes.extend(service.notes.iter().cloned());
    let (history, index) = match (service.reachability, &service.round) {
        (Reachability::Reached, Some(_)) => {
            let index = store
                .index(&service.service)
                .map_err(store_error(store_dir))?;
            let (history, loaded) = history(store, &index);
            notes.extend(loaded);
            (history, Some(index))
        }
        _ => (Default::default(), None),
    };
    let subtitle = match (service.reachability, &service.round) {
        (Reachability::Unreachable, _) => format!("{} UNREACHABLE", service.shown_target()),
        (_, Some(round)) => format!(
            "{} round {round}, {} round(s) stored{}",
            service.shown_target(),
            service.rounds_stored,
            baseline.map_or_else(String::new, |b| format!(", baseline {b}"))
        ),
        (_, None) => format!("{} nothing stored this round", service.shown_target()),
    };
    Ok(service_section(
        &ServiceSummary {
            service: &service.service,
            subtitle,
            trends: &service.trends,
            findings: &service.findings,
            notes: &notes,
            baseline_nanos: index.as_ref().and_then(|i| baseline_nanos(i, baseline)),
        },
        &history,
    ))
}

/// Writes the page atomically.
pub fn write_html(path: &Path, report: &Report) -> anyhow::Result<()> {
    write_bytes_atomic(path, render(report).as_bytes())?;
    Ok(())
}

pub fn run(args: ReportArgs) -> anyhow::Result<u8> {
    let report = match &args.store {
        Some(store) => store_report(store, &args.service)?,
        None => {
            let profiles = collect_profiles(&args.paths, &(&args.size).into())?;
            let source: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
            profiles_report(source.join(" "), &profiles)
        }
    };
    write_html(&args.output, &report)?;
    let findings: usize = report.sections.iter().map(|s| s.findings.len()).sum();
    println!(
        "report: {} section(s), {findings} finding(s) written to {}",
        report.sections.len(),
        args.output.display()
    );
    Ok(crate::exit::SUCCESS)
}
