//! What `timerscope inspect` reports: per service a table (metric, baseline, previous, current,
//! threshold, status) and findings, as text (`Display`) or JSON (serde).

use std::path::PathBuf;

use serde::Serialize;

use analyzer::classify::{Finding, FindingKind, Severity};

use crate::targets::ProfileKind;

/// One inspection run over every service of a targets file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InspectReport {
    pub targets: PathBuf,
    pub store: PathBuf,
    /// In the order of the targets file.
    pub services: Vec<ServiceReport>,
}

impl InspectReport {
    /// Whether anything reached `fail_on`: a finding, a share shift or a growth trend. An
    /// unreachable service is reported but is not a finding.
    pub fn fails(&self, fail_on: Severity) -> bool {
        self.services.iter().any(|s| {
            s.findings.iter().any(|f| f.severity >= fail_on)
                || s.trends.iter().any(|t| t.severity >= Some(fail_on))
                || s.shares
                    .iter()
                    .flat_map(|c| &c.shifts)
                    .any(|shift| shift.severity >= fail_on)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Reached,
    /// Its first profile got no answer after every retry; nothing was stored.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceReport {
    pub service: String,
    /// Where it was inspected: its URL (without a password), `pid N` or `exe PATH`.
    pub target: String,
    /// The process read, for `pid` and `exe` targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub reachability: Reachability,
    /// Why the service is unreachable.
    pub error: Option<String>,
    /// This round's timestamp (none when unreachable).
    pub round: Option<String>,
    /// The round before this one; for an unreachable service, the last one stored.
    pub previous: Option<String>,
    pub baseline: Option<BaselineRound>,
    pub rounds_stored: usize,
    /// Heap in-use bytes and goroutines over the stored history.
    pub trends: Vec<TrendMetric>,
    /// Per profile: function shares against the baseline and the previous round.
    pub shares: Vec<ShareComparison>,
    /// The classifier's findings, one per function: a function whose memory grows while its
    /// goroutines pile up is one finding with both pieces of evidence.
    pub findings: Vec<SiteFinding>,
    /// Profiles of this round that could not be pulled.
    pub profile_errors: Vec<ProfileFailure>,
    pub notes: Vec<String>,
}

impl ServiceReport {
    /// The target as tables show it, with the process read when the target named none.
    pub fn shown_target(&self) -> String {
        match self.pid {
            Some(pid) if !self.target.starts_with("pid ") => format!("{} (pid {pid})", self.target),
            _ => self.target.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaselineRound {
    pub timestamp: String,
    /// False when no baseline is pinned and the oldest stored round stands in.
    pub pinned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Alert,
    /// Not enough history or data to say.
    NotJudged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrendQuantity {
    /// Sum of `inuse_space` in the heap profile.
    HeapInuseBytes,
    /// Sum of the goroutine profile.
    Goroutines,
}

impl TrendQuantity {
    pub fn label(self) -> &'static str {
        match self {
            TrendQuantity::HeapInuseBytes => "heap in-use bytes",
            TrendQuantity::Goroutines => "goroutines",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            TrendQuantity::HeapInuseBytes => "bytes",
            TrendQuantity::Goroutines => "count",
        }
    }
}

/// A quantity's values and fitted slope over the stored rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendMetric {
    pub metric: TrendQuantity,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub previous: Option<f64>,
    pub current: f64,
    /// Least-squares slope over every stored round that has the profile.
    pub slope_per_second: Option<f64>,
    /// Alert above this slope.
    pub threshold_per_second: f64,
    pub rounds: usize,
    /// The value of every stored round that has the profile, oldest first: what the slope was
    /// fitted to.
    pub points: Vec<TrendPoint>,
    /// Strictly rising over at least three rounds.
    pub keeps_rising: bool,
    pub status: Status,
    /// Set when the status is alert: high when it keeps rising, else medium.
    pub severity: Option<Severity>,
}

/// One round's value of a trend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrendPoint {
    /// The round's time, nanoseconds since the epoch.
    pub time_nanos: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Against {
    Baseline,
    Previous,
}

impl Against {
    pub fn name(self) -> &'static str {
        match self {
            Against::Baseline => "baseline",
            Against::Previous => "previous",
        }
    }
}

/// Which share of a function moved: its own (flat) or with its callees (cum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareMeasure {
    Flat,
    Cum,
}

/// The share comparison of one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareComparison {
    pub profile: ProfileKind,
    pub sample_type: String,
    pub threshold_pp: f64,
    pub status: Status,
    /// Why not judged; or the largest move.
    pub detail: String,
    /// Functions whose share moved by more than the threshold, largest move first.
    pub shifts: Vec<ShareShift>,
}

/// One function whose share of a profile moved by more than the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareShift {
    pub function: String,
    pub measure: ShareMeasure,
    /// Percent of the profile's total.
    pub baseline_share: Option<f64>,
    pub previous_share: Option<f64>,
    pub current_share: f64,
    /// Percentage points moved since the baseline / the previous round.
    pub points_vs_baseline: Option<f64>,
    pub points_vs_previous: Option<f64>,
    /// The comparisons where the move exceeded the threshold.
    pub flagged_against: Vec<Against>,
    /// High when a move exceeds twice the threshold.
    pub severity: Severity,
}

impl ShareShift {
    /// The larger of the two moves, by magnitude.
    pub fn largest_move(&self) -> f64 {
        [self.points_vs_baseline, self.points_vs_previous]
            .into_iter()
            .flatten()
            .fold(0.0, |a: f64, b| if b.abs() > a.abs() { b } else { a })
    }
}

/// The classifier's evidence at one function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteFinding {
    pub function: String,
    pub severity: Severity,
    /// One kind, or heap-growth and goroutine-growth found together.
    pub kinds: Vec<FindingKind>,
    /// One sentence for the whole finding.
    pub summary: String,
    /// The classifier's findings, each with its file, line, evidence and suggested fix.
    pub evidence: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileFailure {
    pub profile: ProfileKind,
    pub error: String,
}
