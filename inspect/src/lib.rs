//! `timerscope inspect`: scheduled inspection of Go services through their own `net/http/pprof`
//! endpoints (without root or eBPF), or of local Go processes through their memory. One run is
//! one round: pull every service's profiles (a few services at a time), store them, and judge
//! each service's round against its history.
//!
//! - [`targets`]: the targets file (TOML or YAML).
//! - [`local`]: `pid` and `exe` targets, read through a [`local::ProcessProfiles`].
//! - [`client`]: TLS roots, extra headers and basic auth for pulls (and watch's pushes).
//! - [`pull`]: HTTP(S) pulls with timeouts and retries; a service that is down is reported.
//! - [`store`]: `STORE/<service>/<profile>/<timestamp>.pb.gz`, an index per service,
//!   deduplication, retention, the pinned baseline.
//! - [`analysis`]: shares against baseline and previous round, slopes, the classifier.
//! - [`report`]: what a round found (the `timerscope` command renders it).

pub mod analysis;
pub mod client;
pub mod local;
pub mod pull;
pub mod report;
pub mod store;
pub mod targets;

use std::path::{Path, PathBuf};

use analysis::{Thresholds, analyze, mib_per_s};
use pull::{PullSettings, ServicePull, pull_all};
use report::{InspectReport, ProfileFailure, Reachability, ServiceReport};
use store::{Round, Store, StoreError};
use targets::{Service, Target, TargetsError, load_targets};

pub use analysis::{DEFAULT_GOROUTINE_SLOPE_PER_S, DEFAULT_HEAP_SLOPE_MIB_PER_S};
pub use pull::DEFAULT_CPU_SECONDS;
pub use store::DEFAULT_KEEP_ROUNDS;

/// `timerscope inspect --targets FILE [--store DIR] [--cpu-seconds N] [--threshold PP] [--keep N]`
#[derive(Debug, Clone, PartialEq)]
pub struct InspectOptions {
    pub targets: PathBuf,
    pub store: PathBuf,
    pub pull: PullSettings,
    /// Share changes above this many points are flagged, unless a service sets its own.
    pub threshold_pp: f64,
    /// Rounds kept per service (the pinned baseline is kept as well).
    pub keep_rounds: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Targets(#[from] TargetsError),
    #[error("store {}", .0.display())]
    Store(PathBuf, #[source] StoreError),
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

impl InspectError {
    /// Whether the user's input is at fault (exit status 2) rather than the system (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            InspectError::Targets(_) | InspectError::Client(_) => true,
            InspectError::Store(_, e) => e.is_bad_input(),
        }
    }
}

/// The store used without `--store`: `$XDG_STATE_HOME/timerscope/inspect`, else
/// `~/.local/state/timerscope/inspect`, else `./timerscope-inspect`.
pub fn default_store_dir() -> PathBuf {
    let nonempty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(state) = nonempty("XDG_STATE_HOME") {
        return PathBuf::from(state).join("timerscope/inspect");
    }
    match nonempty("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/timerscope/inspect"),
        None => PathBuf::from("timerscope-inspect"),
    }
}

/// An error and its sources on one line, `a: b: c`, for reports.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One inspection round over every service in the targets file; `processes` reads the profiles
/// of `pid` and `exe` targets.
pub fn run_inspect(
    options: &InspectOptions,
    processes: &dyn local::ProcessProfiles,
) -> Result<InspectReport, InspectError> {
    let services = load_targets(&options.targets)?;
    let urls: Vec<&str> = services
        .iter()
        .filter_map(|s| match &s.target {
            Target::Url(url) => Some(url.as_str()),
            Target::Pid(_) | Target::Exe(_) => None,
        })
        .collect();
    // A URL or CA file that could never work is refused before anything is pulled.
    for url in &urls {
        options.pull.client.endpoint(url)?;
    }
    options.pull.client.tls_config(urls.iter().copied())?;
    let store_error = |e| InspectError::Store(options.store.clone(), e);
    let store = Store::create(&options.store)
        .map_err(store_error)?
        .with_limits(options.pull.limits);
    let pulls = pull_all(&services, &options.pull, processes);
    let mut reports = Vec::with_capacity(services.len());
    for (service, pull) in services.iter().zip(pulls) {
        let mut index = store.index(&service.name).map_err(store_error)?;
        let mut report = ServiceReport {
            service: service.name.clone(),
            target: service.target.describe(),
            pid: None,
            reachability: Reachability::Reached,
            error: None,
            round: None,
            previous: index.rounds.last().map(|r: &Round| r.timestamp.clone()),
            baseline: None,
            rounds_stored: index.rounds.len(),
            trends: Vec::new(),
            shares: Vec::new(),
            findings: Vec::new(),
            profile_errors: Vec::new(),
            notes: Vec::new(),
        };
        let (started, profiles, failures, pid) = match pull {
            ServicePull::Unreachable(error) => {
                report.reachability = Reachability::Unreachable;
                report.error = Some(error_chain(&error));
                reports.push(report);
                continue;
            }
            ServicePull::Reached {
                started,
                profiles,
                failures,
                pid,
            } => (started, profiles, failures, pid),
        };
        report.pid = pid;
        report.profile_errors = failures
            .iter()
            .map(|(profile, error)| ProfileFailure {
                profile: *profile,
                error: error_chain(error),
            })
            .collect();
        if profiles.is_empty() {
            report
                .notes
                .push("no profile pulled: nothing stored this round".to_owned());
            reports.push(report);
            continue;
        }
        let timestamp = store
            .commit_round(&mut index, started, &profiles, options.keep_rounds)
            .map_err(store_error)?;
        let analysis = analyze(&store, &index, &thresholds(service, options));
        report.round = Some(timestamp);
        report.previous = analysis.previous;
        report.baseline = analysis.baseline;
        report.rounds_stored = index.rounds.len();
        report.trends = analysis.trends;
        report.shares = analysis.shares;
        report.findings = analysis.findings;
        report.notes = analysis.notes;
        reports.push(report);
    }
    Ok(InspectReport {
        targets: options.targets.clone(),
        store: options.store.clone(),
        services: reports,
    })
}

fn thresholds(service: &Service, options: &InspectOptions) -> Thresholds {
    Thresholds {
        share_pp: service.threshold_pp.unwrap_or(options.threshold_pp),
        heap_slope_bytes_per_s: mib_per_s(
            service
                .heap_slope_mib_per_s
                .unwrap_or(DEFAULT_HEAP_SLOPE_MIB_PER_S),
        ),
        goroutine_slope_per_s: service
            .goroutine_slope_per_s
            .unwrap_or(DEFAULT_GOROUTINE_SLOPE_PER_S),
    }
}

/// `timerscope inspect baseline set SERVICE [TIMESTAMP]`: pins a stored round (default: the
/// newest) as the service's baseline and returns it.
pub fn set_baseline(
    store_dir: &Path,
    service: &str,
    timestamp: Option<&str>,
) -> Result<Round, InspectError> {
    Store::new(store_dir)
        .set_baseline(service, timestamp)
        .map_err(|e| InspectError::Store(store_dir.to_owned(), e))
}
