//! Judging one service's newest round against its history: function shares against the baseline
//! and the previous round, slopes of heap in-use bytes and goroutines over every stored round,
//! and the classifier over the heap and goroutine series, with heap and goroutine findings at the
//! same function merged into one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use analyzer::classify::{Finding, FindingKind, Severity, classify};
use analyzer::diff::{DiffReport, diff};
use analyzer::trend;
use analyzer::units::human;
use pprof::Profile;
use pprof::ResolvedProfile;

use crate::report::{
    Against, BaselineRound, ShareComparison, ShareMeasure, ShareShift, SiteFinding, Status,
    TrendMetric, TrendPoint, TrendQuantity,
};
use crate::store::{Round, ServiceIndex, Store};
use crate::targets::ProfileKind;

const MIB: f64 = 1024.0 * 1024.0;
/// Default alert level of the heap slope: the classifier's leak level.
pub const DEFAULT_HEAP_SLOPE_MIB_PER_S: f64 = 0.5;
/// Default alert level of the goroutine slope.
pub const DEFAULT_GOROUTINE_SLOPE_PER_S: f64 = 1.0;

/// The thresholds of one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub share_pp: f64,
    pub heap_slope_bytes_per_s: f64,
    pub goroutine_slope_per_s: f64,
}

/// What the analysis of one service gives for its report.
#[derive(Debug, Default)]
pub struct ServiceAnalysis {
    pub baseline: Option<BaselineRound>,
    pub previous: Option<String>,
    pub trends: Vec<TrendMetric>,
    pub shares: Vec<ShareComparison>,
    pub findings: Vec<SiteFinding>,
    pub notes: Vec<String>,
}

/// Decodes stored profiles once each (identical rounds share a file) and turns unreadable ones
/// into notes.
struct Loader<'a> {
    store: &'a Store,
    index: &'a ServiceIndex,
    decoded: HashMap<String, Option<Profile>>,
    notes: Vec<String>,
}

impl Loader<'_> {
    /// The round's profile of `kind`, timed at the round (not at the file's own time).
    fn resolved(&mut self, round: &Round, kind: ProfileKind) -> Option<ResolvedProfile> {
        let stored = round.profiles.get(&kind)?;
        let profile = self
            .decoded
            .entry(stored.file.clone())
            .or_insert_with(|| match self.store.load(&self.index.service, stored) {
                Ok(profile) => Some(profile),
                Err(error) => {
                    self.notes.push(format!(
                        "stored {kind} profile {} skipped: {}",
                        stored.file,
                        crate::error_chain(&error)
                    ));
                    None
                }
            })
            .as_ref()?;
        let mut resolved = ResolvedProfile::new(profile);
        resolved.time_nanos = round.time_nanos;
        Some(resolved)
    }
}

/// Every stored round's profiles by kind, oldest first, each timed at its round; unreadable
/// profiles become notes.
pub fn history(
    store: &Store,
    index: &ServiceIndex,
) -> (BTreeMap<ProfileKind, Vec<ResolvedProfile>>, Vec<String>) {
    let mut loader = Loader {
        store,
        index,
        decoded: HashMap::new(),
        notes: Vec::new(),
    };
    let mut by_kind: BTreeMap<ProfileKind, Vec<ResolvedProfile>> = BTreeMap::new();
    for round in &index.rounds {
        for &kind in round.profiles.keys() {
            if let Some(profile) = loader.resolved(round, kind) {
                by_kind.entry(kind).or_default().push(profile);
            }
        }
    }
    (by_kind, loader.notes)
}

/// Analyzes the newest round of `index` (nothing when it has no round).
pub fn analyze(store: &Store, index: &ServiceIndex, thresholds: &Thresholds) -> ServiceAnalysis {
    let rounds = &index.rounds;
    let Some(current) = rounds.last() else {
        return ServiceAnalysis::default();
    };
    let mut loader = Loader {
        store,
        index,
        decoded: HashMap::new(),
        notes: Vec::new(),
    };
    let previous = rounds.len().checked_sub(2).map(|i| &rounds[i]);
    let pinned = index.baseline.as_deref().and_then(|ts| {
        let found = index.round(ts);
        if found.is_none() {
            loader.notes.push(format!(
                "the pinned baseline {ts} is not in the store any more; using the oldest round"
            ));
        }
        found
    });
    let baseline = pinned
        .map(|round| (round, true))
        .or_else(|| rounds.first().map(|round| (round, false)))
        .filter(|(round, _)| round.timestamp != current.timestamp);

    let mut shares = Vec::new();
    for &kind in current.profiles.keys() {
        let Some(mut now) = loader.resolved(current, kind) else {
            continue;
        };
        if kind == ProfileKind::Cpu {
            fold_preemption(&mut now);
        }
        let mut references = Vec::new();
        for (against, round) in [
            (Against::Baseline, baseline.map(|(r, _)| r)),
            (Against::Previous, previous),
        ] {
            let Some(round) = round else { continue };
            match loader.resolved(round, kind) {
                Some(mut profile) => {
                    if kind == ProfileKind::Cpu {
                        fold_preemption(&mut profile);
                    }
                    references.push((against, profile))
                }
                None => loader.notes.push(format!(
                    "the {} round {} has no {kind} profile to compare with",
                    against.name(),
                    round.timestamp
                )),
            }
        }
        shares.push(compare_shares(kind, &now, &references, thresholds.share_pp));
    }

    let mut trends = Vec::new();
    let mut series: Vec<ResolvedProfile> = Vec::new();
    for (kind, quantity, sample_type, threshold) in [
        (
            ProfileKind::Heap,
            TrendQuantity::HeapInuseBytes,
            "inuse_space",
            thresholds.heap_slope_bytes_per_s,
        ),
        (
            ProfileKind::Goroutine,
            TrendQuantity::Goroutines,
            "goroutine",
            thresholds.goroutine_slope_per_s,
        ),
    ] {
        if !current.profiles.contains_key(&kind) {
            continue;
        }
        let mut values: BTreeMap<&str, f64> = BTreeMap::new();
        let mut points = Vec::new();
        for round in rounds {
            let Some(profile) = loader.resolved(round, kind) else {
                continue;
            };
            let Some(index) = profile.sample_index(Some(sample_type)) else {
                continue;
            };
            let value = profile.total(index) as f64;
            values.insert(&round.timestamp, value);
            points.push((round.time_nanos, value));
            series.push(profile);
        }
        let Some(&current_value) = values.get(current.timestamp.as_str()) else {
            continue;
        };
        let value_at =
            |round: Option<&Round>| round.and_then(|r| values.get(r.timestamp.as_str()).copied());
        let fit = trend::fit(&points);
        let slope = fit.slope_per_second;
        let (status, severity) = match slope {
            None => (Status::NotJudged, None),
            Some(s) if s > threshold => (
                Status::Alert,
                Some(if fit.keeps_rising {
                    Severity::High
                } else {
                    Severity::Medium
                }),
            ),
            Some(_) => (Status::Ok, None),
        };
        trends.push(TrendMetric {
            metric: quantity,
            unit: quantity.unit(),
            baseline: value_at(baseline.map(|(r, _)| r)),
            previous: value_at(previous),
            current: current_value,
            slope_per_second: slope,
            threshold_per_second: threshold,
            rounds: points.len(),
            points: points
                .iter()
                .map(|&(time_nanos, value)| TrendPoint { time_nanos, value })
                .collect(),
            keeps_rising: fit.keeps_rising,
            status,
            severity,
        });
    }

    let classified = classify(&series);
    // A growth finding stands only where the service as a whole grows past its threshold, so a
    // per-service threshold can quiet a slow, accepted growth.
    let alerting = |quantity| {
        trends
            .iter()
            .any(|t| t.metric == quantity && t.status == Status::Alert)
    };
    let findings: Vec<Finding> = classified
        .findings
        .into_iter()
        .filter(|f| match f.kind {
            FindingKind::HeapGrowth => alerting(TrendQuantity::HeapInuseBytes),
            FindingKind::GoroutineGrowth => alerting(TrendQuantity::Goroutines),
            _ => true,
        })
        .collect();
    let mut notes = loader.notes;
    notes.extend(classified.notes);
    ServiceAnalysis {
        baseline: baseline.map(|(round, pinned)| BaselineRound {
            timestamp: round.timestamp.clone(),
            pinned,
        }),
        previous: previous.map(|r| r.timestamp.clone()),
        trends,
        shares,
        findings: merge_by_function(findings),
        notes,
    }
}

/// A share move must also exceed this many standard errors of sampling noise to be flagged: in
/// a profile of a few dozen samples, a function's share moves by 15 points by chance.
const NOISE_STANDARD_ERRORS: f64 = 3.0;

/// Go's default `runtime.MemProfileRate`: a heap profile holds about one sampled allocation per
/// this many bytes.
const HEAP_BYTES_PER_SAMPLE: f64 = 512.0 * 1024.0;

/// How many independent samples a profile's shares rest on: CPU samples, goroutines,
/// contentions, or for a heap profile the sampled allocations its in-use bytes stand for.
fn sample_count(kind: ProfileKind, profile: &ResolvedProfile) -> f64 {
    let support = kind.share_support();
    let total = profile
        .sample_index(Some(support.sample_type))
        .map_or(0, |i| profile.total(i)) as f64;
    match kind {
        ProfileKind::Heap => total / HEAP_BYTES_PER_SAMPLE,
        _ => total,
    }
}

/// Standard error, in percentage points, of the difference of two shares (in percent) measured
/// on `n_before` and `n_after` samples (pooled two-proportion test).
fn share_noise_pp(before: f64, after: f64, n_before: f64, n_after: f64) -> f64 {
    if n_before <= 0.0 || n_after <= 0.0 {
        return f64::INFINITY;
    }
    let pooled = (before / 100.0 * n_before + after / 100.0 * n_after) / (n_before + n_after);
    100.0 * (pooled * (1.0 - pooled) * (1.0 / n_before + 1.0 / n_after)).sqrt()
}

/// The function a preemption interrupted gets the CPU samples that landed in
/// `runtime.asyncPreempt` on top of it: on a busy machine a profiling signal is often delivered
/// right there, which would move shares between the two at random.
fn fold_preemption(profile: &mut ResolvedProfile) {
    let preempt: Vec<u32> = (0..profile.frames.len() as u32)
        .filter(|&id| profile.frames[id as usize].function == "runtime.asyncPreempt")
        .collect();
    for sample in &mut profile.samples {
        if sample.stack.len() > 1 && preempt.contains(&sample.stack[0]) {
            sample.stack.remove(0);
        }
    }
}

/// One comparison: the diff of a reference round against this one.
struct Compared {
    against: Against,
    report: DiffReport,
    /// Samples behind the reference and this round's shares.
    samples_before: f64,
    samples_after: f64,
}

/// Compares the function shares of `now` with each reference profile.
fn compare_shares(
    kind: ProfileKind,
    now: &ResolvedProfile,
    references: &[(Against, ResolvedProfile)],
    threshold_pp: f64,
) -> ShareComparison {
    let sample_type = kind.share_sample_type();
    let comparison = |status, detail: String, shifts| ShareComparison {
        profile: kind,
        sample_type: sample_type.to_owned(),
        threshold_pp,
        status,
        detail,
        shifts,
    };
    if references.is_empty() {
        return comparison(
            Status::NotJudged,
            "no earlier round to compare with".to_owned(),
            Vec::new(),
        );
    }
    let support = kind.share_support();
    let supported = |p: &ResolvedProfile| {
        p.sample_index(Some(support.sample_type))
            .is_some_and(|i| p.total(i) >= support.min_total)
    };
    let unit = if kind == ProfileKind::Heap {
        "bytes"
    } else {
        "count"
    };
    let too_little = |which: &str| {
        format!(
            "{which} has under {} {}, too little to compare shares",
            human(support.min_total as f64, unit),
            support.what
        )
    };
    if !supported(now) {
        return comparison(Status::NotJudged, too_little("this round"), Vec::new());
    }
    let mut compared = Vec::new();
    let mut problems = Vec::new();
    for (against, reference) in references {
        if !supported(reference) {
            problems.push(too_little(&format!("the {} round", against.name())));
            continue;
        }
        match diff(reference, now, Some(sample_type), threshold_pp) {
            Ok(report) => compared.push(Compared {
                against: *against,
                report,
                samples_before: sample_count(kind, reference),
                samples_after: sample_count(kind, now),
            }),
            Err(error) => problems.push(error.to_string()),
        }
    }
    if compared.is_empty() {
        return comparison(Status::NotJudged, problems.join("; "), Vec::new());
    }

    let candidates: BTreeSet<&str> = compared
        .iter()
        .flat_map(|c| c.report.flagged().map(|r| r.function.as_str()))
        .collect();
    let mut shifts: Vec<ShareShift> = candidates
        .into_iter()
        .filter_map(|function| shift_of(function, &compared, threshold_pp))
        .collect();
    shifts.sort_by(|a, b| {
        b.largest_move()
            .abs()
            .total_cmp(&a.largest_move().abs())
            .then_with(|| a.function.cmp(&b.function))
    });
    if !shifts.is_empty() {
        let detail = format!(
            "{} function(s) moved more than {threshold_pp} pp",
            shifts.len()
        );
        return comparison(Status::Alert, detail, shifts);
    }
    let largest = compared
        .iter()
        .flat_map(|c| c.report.rows.iter().map(move |r| (c, r)))
        .max_by(|a, b| {
            a.1.flat_share_delta_pp
                .abs()
                .total_cmp(&b.1.flat_share_delta_pp.abs())
        });
    let detail = match largest {
        Some((c, row)) => {
            let noise = if row.flat_share_delta_pp.abs() > threshold_pp {
                format!(
                    ", within sampling noise of {:.0} and {:.0} samples",
                    c.samples_before, c.samples_after
                )
            } else {
                String::new()
            };
            format!(
                "largest move {} {:+.1} pp vs {}{noise}",
                row.function,
                row.flat_share_delta_pp,
                c.against.name()
            )
        }
        None => "unchanged".to_owned(),
    };
    comparison(Status::Ok, detail, Vec::new())
}

/// The shares of one function that the diff flagged, in every comparison; `None` when no move
/// both exceeds the threshold and stands out of sampling noise.
fn shift_of(function: &str, compared: &[Compared], threshold_pp: f64) -> Option<ShareShift> {
    let rows = || {
        compared
            .iter()
            .filter_map(move |c| c.report.rows.iter().find(|r| r.function == function))
    };
    let measure = if rows().any(|r| r.flat_share_delta_pp.abs() > threshold_pp) {
        ShareMeasure::Flat
    } else {
        ShareMeasure::Cum
    };
    // The function's value in this round: every diff has this round as its new side.
    let any_row = rows().next()?;
    let (value_now, current_share) = match measure {
        ShareMeasure::Flat => (any_row.flat_new, any_row.flat_share_new),
        ShareMeasure::Cum => (any_row.cum_new, any_row.cum_share_new),
    };
    let mut shift = ShareShift {
        function: function.to_owned(),
        measure,
        baseline_share: None,
        previous_share: None,
        current_share,
        points_vs_baseline: None,
        points_vs_previous: None,
        flagged_against: Vec::new(),
        severity: Severity::Medium,
    };
    for c in compared {
        let row = c.report.rows.iter().find(|r| r.function == function);
        let before = match (row, measure) {
            (Some(r), ShareMeasure::Flat) => r.flat_share_base,
            (Some(r), ShareMeasure::Cum) => r.cum_share_base,
            // No row: the value did not change, only the total around it.
            (None, _) if c.report.base_total == 0 => 0.0,
            (None, _) => value_now as f64 * 100.0 / c.report.base_total as f64,
        };
        let moved = current_share - before;
        let noise = share_noise_pp(before, current_share, c.samples_before, c.samples_after);
        if moved.abs() > threshold_pp && moved.abs() > NOISE_STANDARD_ERRORS * noise {
            shift.flagged_against.push(c.against);
            if moved.abs() > 2.0 * threshold_pp {
                shift.severity = Severity::High;
            }
        }
        match c.against {
            Against::Baseline => {
                shift.baseline_share = Some(before);
                shift.points_vs_baseline = Some(moved);
            }
            Against::Previous => {
                shift.previous_share = Some(before);
                shift.points_vs_previous = Some(moved);
            }
        }
    }
    (!shift.flagged_against.is_empty()).then_some(shift)
}

/// One finding per function, most severe first; heap growth and goroutines piling up at the same
/// function become one finding with both pieces of evidence.
fn merge_by_function(findings: Vec<Finding>) -> Vec<SiteFinding> {
    let mut by_function: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    for finding in findings {
        by_function
            .entry(finding.function.clone())
            .or_default()
            .push(finding);
    }
    let mut merged = Vec::new();
    for (function, group) in by_function {
        let heap = group.iter().find(|f| f.kind == FindingKind::HeapGrowth);
        let goroutines = group
            .iter()
            .find(|f| f.kind == FindingKind::GoroutineGrowth);
        if let (Some(heap), Some(goroutines)) = (heap, goroutines) {
            let rest = group.iter().filter(|f| {
                !matches!(
                    f.kind,
                    FindingKind::HeapGrowth | FindingKind::GoroutineGrowth
                )
            });
            merged.push(SiteFinding {
                function: function.clone(),
                severity: heap.severity.max(goroutines.severity),
                kinds: vec![FindingKind::HeapGrowth, FindingKind::GoroutineGrowth],
                summary: format!(
                    "Goroutines in {function} pile up blocked ({}:{}) and keep the memory they allocated ({}:{}) alive: one leak, seen in the heap and goroutine profiles of the same rounds.",
                    base_name(&goroutines.file),
                    goroutines.line,
                    base_name(&heap.file),
                    heap.line
                ),
                evidence: vec![heap.clone(), goroutines.clone()],
            });
            for finding in rest {
                merged.push(single(finding.clone()));
            }
        } else {
            merged.extend(group.into_iter().map(single));
        }
    }
    merged.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.function.cmp(&b.function))
    });
    merged
}

fn single(finding: Finding) -> SiteFinding {
    SiteFinding {
        function: finding.function.clone(),
        severity: finding.severity,
        kinds: vec![finding.kind],
        summary: finding.evidence.clone(),
        evidence: vec![finding],
    }
}

fn base_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

/// `heap_slope_mib_per_s` in bytes per second.
pub fn mib_per_s(value: f64) -> f64 {
    value * MIB
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::pull::PulledProfile;
    use pprof::{Frame, ProfileBuilder, encode_gzip};

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            file: "/src/svc/main.go".to_owned(),
            line,
            ..Frame::default()
        }
    }

    /// A profile of `kind` with one sample per (function, line, values).
    fn pulled(kind: ProfileKind, samples: &[(&str, i64, &[i64])]) -> PulledProfile {
        let types: &[(&str, &str)] = match kind {
            ProfileKind::Cpu => &[("samples", "count"), ("cpu", "nanoseconds")],
            ProfileKind::Heap => &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            _ => &[("goroutine", "count")],
        };
        let mut b = ProfileBuilder::new(types, "");
        for (i, (function, line, values)) in samples.iter().enumerate() {
            let loc = b.location(0, 0x1000 + i as u64, &[frame(function, *line)]);
            b.add_sample(&[loc], values, &[]);
        }
        let profile = b.build().unwrap();
        PulledProfile {
            kind,
            bytes: encode_gzip(&profile),
            profile,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    const THRESHOLDS: Thresholds = Thresholds {
        share_pp: 15.0,
        heap_slope_bytes_per_s: 0.5 * MIB,
        goroutine_slope_per_s: 1.0,
    };

    fn cpu(samples: &[(&str, i64)]) -> PulledProfile {
        let values: Vec<[i64; 2]> = samples.iter().map(|&(_, n)| [n, n * 10_000_000]).collect();
        let samples: Vec<(&str, i64, &[i64])> = samples
            .iter()
            .zip(&values)
            .map(|(&(f, _), v)| (f, 1, v.as_slice()))
            .collect();
        pulled(ProfileKind::Cpu, &samples)
    }

    #[test]
    fn a_moved_hot_function_is_flagged_against_baseline_and_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut index = store.index("api").unwrap();
        let rounds = [
            cpu(&[("main.steady", 20), ("main.alpha", 80)]),
            cpu(&[("main.steady", 60), ("main.alpha", 40)]),
            cpu(&[("main.steady", 60), ("main.beta", 40)]),
        ];
        let mut analysis = ServiceAnalysis::default();
        for (i, round) in rounds.into_iter().enumerate() {
            store
                .commit_round(&mut index, at(10 * i as u64), &[round], 10)
                .unwrap();
            analysis = analyze(&store, &index, &THRESHOLDS);
            if i == 0 {
                assert_eq!(analysis.shares[0].status, Status::NotJudged);
            }
        }
        let cpu = &analysis.shares[0];
        assert_eq!(cpu.status, Status::Alert, "{cpu:?}");
        let shift = |name: &str| {
            cpu.shifts
                .iter()
                .find(|s| s.function == name)
                .unwrap_or_else(|| panic!("{name} not flagged: {cpu:?}"))
        };
        let beta = shift("main.beta");
        assert_eq!(beta.measure, ShareMeasure::Flat);
        assert_eq!(
            (beta.baseline_share, beta.previous_share, beta.current_share),
            (Some(0.0), Some(0.0), 40.0)
        );
        assert_eq!(beta.flagged_against, [Against::Baseline, Against::Previous]);
        assert_eq!(beta.severity, Severity::High);
        let alpha = shift("main.alpha");
        assert_eq!(alpha.points_vs_baseline, Some(-80.0));
        assert_eq!(alpha.points_vs_previous, Some(-40.0));
        // Unchanged since the previous round, but 40 points above the baseline.
        let steady = shift("main.steady");
        assert_eq!(steady.points_vs_previous, Some(0.0));
        assert_eq!(steady.points_vs_baseline, Some(40.0));
        assert_eq!(steady.flagged_against, [Against::Baseline]);
        assert_eq!(
            analysis.baseline,
            Some(BaselineRound {
                timestamp: index.rounds[0].timestamp.clone(),
                pinned: false
            })
        );
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut index = store.index("idle").unwrap();
        for (i, hot) in ["main.a", "main.b"].into_iter().enumerate() {
            store
                .commit_round(&mut index, at(i as u64), &[cpu(&[(hot, 3)])], 10)
                .unwrap();
        }
        let analysis = analyze(&store, &index, &THRESHOLDS);
        assert_eq!(analysis.shares[0].status, Status::NotJudged);
        assert!(
            analysis.shares[0].detail
                == "this round has under 20 CPU samples, too little to compare shares",
            "{}",
            analysis.shares[0].detail
        );
    }

    #[test]
    fn moves_within_sampling_noise_or_from_preemption_are_not_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut index = store.index("busy").unwrap();
        // 60 samples a round: 80% → 96% is 16 points, under three standard errors (about 18).
        let noisy = [
            cpu(&[("main.work", 48), ("main.other", 12)]),
            cpu(&[("main.work", 58), ("main.other", 2)]),
        ];
        for (i, round) in noisy.into_iter().enumerate() {
            store
                .commit_round(&mut index, at(i as u64), &[round], 10)
                .unwrap();
        }
        let shares = &analyze(&store, &index, &THRESHOLDS).shares[0];
        assert_eq!(shares.status, Status::Ok, "{shares:?}");
        assert!(
            shares.detail.contains("within sampling noise"),
            "{}",
            shares.detail
        );

        // Samples that landed in runtime.asyncPreempt belong to the function it interrupted.
        let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")], "");
        let preempt = b.location(0, 0x1, &[frame("runtime.asyncPreempt", 1)]);
        let work = b.location(0, 0x2, &[frame("main.work", 2)]);
        b.add_sample(&[preempt, work], &[30, 300], &[]);
        b.add_sample(&[work], &[70, 700], &[]);
        let mut profile = ResolvedProfile::new(&b.build().unwrap());
        fold_preemption(&mut profile);
        for sample in &profile.samples {
            let leaf = profile.stack(sample).next().unwrap();
            assert_eq!(leaf.function, "main.work");
        }
    }

    #[test]
    fn growing_heap_and_goroutines_at_one_function_are_one_finding() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut index = store.index("leaky").unwrap();
        for round in 0..4i64 {
            let held = (round * 20) << 20;
            let heap = pulled(
                ProfileKind::Heap,
                &[
                    ("main.leaky", 10, &[round, held, round, held]),
                    ("main.cache", 30, &[1, 4 << 20, 1, 4 << 20]),
                ],
            );
            let goroutines = pulled(
                ProfileKind::Goroutine,
                &[("main.leaky", 11, &[round * 150]), ("main.serve", 40, &[4])],
            );
            store
                .commit_round(&mut index, at(10 * round as u64), &[heap, goroutines], 10)
                .unwrap();
        }
        let analysis = analyze(&store, &index, &THRESHOLDS);
        assert!(
            analysis
                .trends
                .iter()
                .all(|t| t.status == Status::Alert && t.severity == Some(Severity::High)),
            "{:?}",
            analysis.trends
        );
        let points: Vec<f64> = analysis.trends[0].points.iter().map(|p| p.value).collect();
        assert_eq!(
            points,
            [4.0, 24.0, 44.0, 64.0].map(|m| m * MIB),
            "heap per round"
        );
        let (history, notes) = history(&store, &index);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(history[&ProfileKind::Goroutine].len(), 4);
        assert_eq!(store.services().unwrap(), ["leaky"]);
        assert_eq!(analysis.findings.len(), 1, "{:?}", analysis.findings);
        let finding = &analysis.findings[0];
        assert_eq!(finding.function, "main.leaky");
        assert_eq!(
            finding.kinds,
            [FindingKind::HeapGrowth, FindingKind::GoroutineGrowth]
        );
        let lines: Vec<i64> = finding.evidence.iter().map(|e| e.line).collect();
        assert_eq!(lines, [10, 11]);
        assert!(
            finding.summary.contains("main.go:11"),
            "{}",
            finding.summary
        );

        // A service that accepts this growth raises its thresholds: no finding.
        let relaxed = Thresholds {
            heap_slope_bytes_per_s: 10.0 * MIB,
            goroutine_slope_per_s: 100.0,
            ..THRESHOLDS
        };
        assert!(analyze(&store, &index, &relaxed).findings.is_empty());
    }
}
