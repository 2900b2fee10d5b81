//! Naming leaks: rules that turn timerscope's timer and mmap profiles and Go's own heap and
//! goroutine profiles into findings with a site in user code, evidence and a suggested fix.
//!
//! Profiles are grouped by their sample types (one group per kind of profile) and each group is
//! read in time order, so several profiles of one process give trends.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use pprof::vocabulary::{
    ChannelMode, CommentKey, LabelKey, MappingClass, MemoryNumbers, SampleType, SyntheticFrame,
    TimerFamily, TimerKind, go_sample_type, parse_snapshot_ok,
};
use pprof::{ResolvedFrame, ResolvedProfile, ResolvedSample};

use crate::gosym::is_user_function;
use crate::trend::{self, Trend};

/// How urgent a finding is; ordered, so `--fail-on medium` also fails on high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}; use low, medium or high")]
pub struct UnknownSeverity(String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

/// The fixed set of finding kinds; their JSON names are part of the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    TimerAfterInLoop,
    TickerNotStopped,
    AfterfuncPending,
    TimerNotStopped,
    TimerFireDelay,
    MmapGrowth,
    HeapGrowth,
    GoroutineGrowth,
    GoroutineLeak,
    CHeapGrowth,
    RssOutsideHeap,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::TimerAfterInLoop => "timer-after-in-loop",
            FindingKind::TickerNotStopped => "ticker-not-stopped",
            FindingKind::AfterfuncPending => "afterfunc-pending",
            FindingKind::TimerNotStopped => "timer-not-stopped",
            FindingKind::TimerFireDelay => "timer-fire-delay",
            FindingKind::MmapGrowth => "mmap-growth",
            FindingKind::HeapGrowth => "heap-growth",
            FindingKind::GoroutineGrowth => "goroutine-growth",
            FindingKind::GoroutineLeak => "goroutine-leak",
            FindingKind::CHeapGrowth => "c-heap-growth",
            FindingKind::RssOutsideHeap => "rss-outside-heap",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem at one site in user code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub function: String,
    pub file: String,
    pub line: i64,
    /// One sentence with the numbers behind the finding.
    pub evidence: String,
    pub suggestion: String,
}

/// Findings of all profiles given, plus notes on what could not be judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassifyReport {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
}

impl ClassifyReport {
    /// Whether a finding at or above `fail_on` exists: the CLI then exits with status 3.
    pub fn fails(&self, fail_on: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= fail_on)
    }
}

// Thresholds. Counts of live timers below LOW are normal (a few long-lived tickers or timeouts).
const LIVE_LOW: f64 = 10.0;
/// Live timers at one site from which a finding is medium (or high while rising).
pub const LIVE_MEDIUM: f64 = 100.0;
const LIVE_HIGH: f64 = 1000.0;
/// The definition of a memory leak: live bytes growing faster than 0.5 MiB/s.
pub const BYTES_SLOPE_LEAK: f64 = 0.5 * MIB;
const MIB: f64 = 1024.0 * 1024.0;
/// Mean lateness of timer fires: scheduling noise stays well below 20 ms.
const DELAY_LOW_NS: f64 = 20e6;
const DELAY_MEDIUM_NS: f64 = 100e6;
const DELAY_HIGH_NS: f64 = 1e9;
/// Fewer fires than this say little about a mean delay.
const DELAY_MIN_FIRES: f64 = 10.0;
/// Goroutines: growth needs at least this many more goroutines at one site to matter.
const GOROUTINE_GROWTH_MIN: f64 = 100.0;
const GOROUTINE_SINGLE_LOW: f64 = 1000.0;
const GOROUTINE_SINGLE_MEDIUM: f64 = 10_000.0;

/// What becomes of an unreferenced, unstopped channel timer or ticker in the profiled program
/// (docs/go-runtime.md, "Channel mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelTimerFate {
    /// Go < 1.23, or 1.23–1.26 in async mode: kept in a timer heap until it fires; tickers forever.
    Retained,
    /// Go ≥ 1.23 with synchronous timer channels: garbage-collected once unreferenced.
    Collected,
}

/// Go version, timer family and channel mode from the comments the recorder writes.
#[derive(Debug, Clone)]
struct RuntimeContext {
    /// Go 1.23+ timers (family B), whose fixes differ.
    locked_timers: bool,
    fate: ChannelTimerFate,
    /// How the fate was decided, quoted in evidence.
    reason: String,
}

impl RuntimeContext {
    fn of(profile: &ResolvedProfile) -> Self {
        let go_version = profile.comment_value(CommentKey::GoVersion);
        let family = profile
            .comment_value(CommentKey::TimerFamily)
            .and_then(|f| f.parse::<TimerFamily>().ok());
        let mode = profile
            .comment_value(CommentKey::TimerChannelMode)
            .and_then(|m| m.parse::<ChannelMode>().ok());
        let version = go_version.unwrap_or("an unknown Go version");
        let (fate, reason) = match (family, mode) {
            (Some(TimerFamily::Timerproc | TimerFamily::StatusWord), _) => (
                ChannelTimerFate::Retained,
                format!("on {version} unstopped timers stay in the timer heap"),
            ),
            (_, Some(ChannelMode::Async)) => (
                ChannelTimerFate::Retained,
                format!("on {version} with asynchronous timer channels (asynctimerchan=1)"),
            ),
            (Some(TimerFamily::Locked), _) | (_, Some(ChannelMode::Sync)) => (
                ChannelTimerFate::Collected,
                format!("on {version} unreferenced timers are garbage-collected"),
            ),
            // Nothing known: assume the behaviour that leaks, and say so.
            (None, None) => (
                ChannelTimerFate::Retained,
                match go_version {
                    None => "assuming pre-1.23 timer semantics (the profile names no Go version)"
                        .to_owned(),
                    Some(v) => format!(
                        "assuming pre-1.23 timer semantics (the {v} profile names no timer family)"
                    ),
                },
            ),
        };
        Self {
            locked_timers: family == Some(TimerFamily::Locked),
            fate,
            reason,
        }
    }
}

/// A place in user code: the first frame of a stack, from the leaf, that is not runtime or
/// standard library.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Site {
    pub(crate) function: String,
    pub(crate) file: String,
    pub(crate) line: i64,
}

impl Site {
    fn of(frame: &ResolvedFrame) -> Self {
        Self {
            function: frame.function.clone(),
            file: frame.file.clone(),
            line: frame.line,
        }
    }

    /// `main.go:12`, the file's base name keeping evidence short.
    fn short_location(&self) -> String {
        let base = self.file.rsplit('/').next().unwrap_or(&self.file);
        format!("{base}:{}", self.line)
    }
}

/// The user-code site of a stack and the standard-library frames called from it (leaf first).
fn user_site<'a>(
    profile: &'a ResolvedProfile,
    sample: &'a ResolvedSample,
) -> Option<(Site, Vec<&'a str>)> {
    let mut callees = Vec::new();
    for frame in profile.stack(sample) {
        if is_user_function(&frame.function) {
            return Some((Site::of(frame), callees));
        }
        callees.push(frame.function.as_str());
    }
    None
}

/// Classifies profiles of one or more processes/kinds. Order does not matter: profiles are grouped
/// by sample types and sorted by `time_nanos` within a group.
pub fn classify(profiles: &[ResolvedProfile]) -> ClassifyReport {
    let mut groups: BTreeMap<String, Vec<&ResolvedProfile>> = BTreeMap::new();
    for p in profiles {
        let key = p
            .sample_types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        groups.entry(key).or_default().push(p);
    }
    let mut report = ClassifyReport::default();
    let mut process_wide = Vec::new();
    for (key, mut series) in groups {
        series.sort_by_key(|p| p.time_nanos);
        let has = |ty: &str| series[0].has_sample_type(ty);
        let mut applied = false;
        if has(SampleType::TimersLive.as_str()) {
            applied = true;
            timer_rules(&series, &mut report);
        }
        for rule in &BYTES_RULES {
            if has(rule.sample_type) {
                applied = true;
                bytes_growth(rule, &series, &mut report);
            }
        }
        if has(go_sample_type::GOROUTINE) {
            applied = true;
            goroutine_growth(&series, &mut report);
        }
        if has(SampleType::Goroutines.as_str()) {
            applied = true;
            goroutine_leaks(&series, &mut report);
        }
        if let Some(finding) = rss_outside_heap(&series) {
            applied = true;
            process_wide.push(finding);
        }
        if !applied {
            report.notes.push(format!(
                "{} profile(s) with sample types {key} have no classification rules",
                series.len()
            ));
        }
    }
    // RSS growing outside the Go heap is the finding of last resort: a site that allocates
    // the memory is the better answer, and so are goroutines piling up (each holds a stack).
    let explained = report.findings.iter().any(|f| {
        matches!(
            f.kind,
            FindingKind::MmapGrowth
                | FindingKind::CHeapGrowth
                | FindingKind::HeapGrowth
                | FindingKind::GoroutineLeak
        )
    });
    if !explained {
        report.findings.extend(process_wide);
    }
    fold_timers_into_goroutine_leaks(&mut report);
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then_with(|| a.function.cmp(&b.function))
            .then(a.line.cmp(&b.line))
    });
    report
}

/// Values of one site over a series of profiles; missing profiles count as 0.
#[derive(Debug, Default)]
pub(crate) struct SiteSeries {
    pub(crate) values: Vec<f64>,
}

/// Sums one sample-type column per key in each profile of `series`. `key_of` gets each sample
/// with its site (the user-code site, else the leaf) and returns its key, or `None` to skip it.
pub(crate) fn per_site<K: Ord + Clone>(
    series: &[&ResolvedProfile],
    column: &str,
    mut key_of: impl FnMut(&ResolvedProfile, &ResolvedSample, Site) -> Option<K>,
) -> BTreeMap<K, SiteSeries> {
    let mut sites: BTreeMap<K, SiteSeries> = BTreeMap::new();
    for (i, profile) in series.iter().enumerate() {
        let Some(index) = profile.sample_index(Some(column)) else {
            continue;
        };
        for sample in &profile.samples {
            let value = sample.values[index];
            if value == 0 {
                continue;
            }
            let site = match user_site(profile, sample) {
                Some((site, _)) => site,
                None => match profile.stack(sample).next() {
                    // No user frame (runtime-internal work): name the leaf so it is still findable.
                    Some(leaf) => Site::of(leaf),
                    None => continue,
                },
            };
            let Some(key) = key_of(profile, sample, site) else {
                continue;
            };
            let entry = sites.entry(key).or_default();
            entry.values.resize(series.len(), 0.0);
            entry.values[i] += value as f64;
        }
    }
    sites
}

/// (time, value) points of a series. Live quantities are what was live when a profile's
/// recording ended, so each point sits at `time_nanos + duration_nanos` (Go's own snapshots have
/// a duration of about zero).
pub(crate) fn points(series: &[&ResolvedProfile], values: &[f64]) -> Vec<(i64, f64)> {
    series
        .iter()
        .zip(values)
        .map(|(p, &v)| (p.time_nanos.saturating_add(p.duration_nanos.max(0)), v))
        .collect()
}

fn describe_trend(trend: &Trend, unit: impl Fn(f64) -> String) -> String {
    let (first, last) = (unit(trend.first), unit(trend.last));
    let change = if first == last {
        format!("stayed at {last}")
    } else if trend.last > trend.first {
        format!("rose from {first} to {last}")
    } else {
        format!("fell from {first} to {last}")
    };
    let mut text = format!("{change} over {} profiles", trend.points);
    if let (Some(span), Some(growth), Some(slope)) = (
        trend.span_seconds,
        trend.growth_per_second,
        trend.slope_per_second,
    ) {
        text += &format!(
            " in {span:.1} s ({}/s, fitted slope {}/s)",
            unit(growth),
            unit(slope)
        );
    }
    text
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

fn mebibytes(v: f64) -> String {
    format!("{:.1} MiB", v / MIB)
}

// ---------------------------------------------------------------------------------------------
// Timer rules

/// The leak rule a timer sample belongs to, decided by its `kind` label (or, without one, by the
/// time-package function the user code called).
fn timer_leak_kind(sample: &ResolvedSample, callees: &[&str]) -> Option<FindingKind> {
    let called = |name: &str| callees.contains(&name);
    let labelled = sample
        .str_label(LabelKey::Kind)
        .map(str::parse::<TimerKind>);
    let kind = match labelled {
        Some(kind) => kind.ok()?,
        None if called("time.NewTicker") || called("time.Tick") => TimerKind::Ticker,
        None if called("time.AfterFunc") => TimerKind::Afterfunc,
        None if called("time.Sleep") => TimerKind::Sleep,
        None if called("time.NewTimer") || called("time.After") => TimerKind::Timer,
        None => return None,
    };
    match kind {
        TimerKind::Ticker => Some(FindingKind::TickerNotStopped),
        TimerKind::Afterfunc => Some(FindingKind::AfterfuncPending),
        TimerKind::Timer if called("time.After") => Some(FindingKind::TimerAfterInLoop),
        TimerKind::Timer => Some(FindingKind::TimerNotStopped),
        _ => None,
    }
}

/// AfterFunc timers created by `context.WithTimeout`/`WithDeadline` (their callback cancels the
/// context) need a different fix than the user's own AfterFunc.
fn is_context_timer(sample: &ResolvedSample, callees: &[&str]) -> bool {
    callees.iter().any(|c| c.starts_with("context."))
        || sample
            .str_label(LabelKey::Callback)
            .is_some_and(|cb| cb.starts_with("context."))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerMeasure {
    Created,
    Stopped,
    Fired,
    Live,
    /// Pending in the runtime's timer heaps, read from memory (the snapshot tier).
    Pending,
    Delay,
}

const TIMER_COLUMNS: [(TimerMeasure, SampleType); 6] = [
    (TimerMeasure::Created, SampleType::TimersCreated),
    (TimerMeasure::Stopped, SampleType::TimersStopped),
    (TimerMeasure::Fired, SampleType::TimersFired),
    (TimerMeasure::Live, SampleType::TimersLive),
    (TimerMeasure::Pending, SampleType::TimersPending),
    (TimerMeasure::Delay, SampleType::TimerFireDelay),
];

/// Whether a profile holds a read of the runtime's timer heaps: its `timers_pending` are then
/// what the runtime holds, where the probes' live set misses timers that were garbage-collected
/// without being stopped (Go 1.23+ synchronous channels) or that predate the attach.
fn has_snapshot(profile: &ResolvedProfile) -> bool {
    profile
        .comments
        .iter()
        .any(|c| parse_snapshot_ok(c).is_some())
}

/// Whether a sample sits under the frame of timers that predate the attach: it has a callback but
/// no creation site to name.
fn created_before_attach(profile: &ResolvedProfile, sample: &ResolvedSample) -> bool {
    profile
        .stack(sample)
        .any(|f| f.function == SyntheticFrame::TimerCreatedBeforeAttach.as_str())
}

/// Key of one timer site: the rule (or fire delay), the site, and whether it is a context timer.
type TimerKey = (FindingKind, Site, bool);

fn timer_rules(series: &[&ResolvedProfile], report: &mut ClassifyReport) {
    let context = RuntimeContext::of(series[series.len() - 1]);
    let mut measures: BTreeMap<(TimerMeasure, TimerKey), SiteSeries> = BTreeMap::new();
    for (measure, column) in TIMER_COLUMNS {
        let column = column.as_str();
        let leak = per_site(series, column, |profile, sample, site| {
            if measure == TimerMeasure::Pending && created_before_attach(profile, sample) {
                return None;
            }
            let (_, callees) = user_site(profile, sample)?;
            let kind = timer_leak_kind(sample, &callees)?;
            Some((kind, site, is_context_timer(sample, &callees)))
        });
        // Lateness is judged for every timer with a user site, whatever its kind.
        let delay = per_site(series, column, |profile, sample, site| {
            user_site(profile, sample)?;
            Some((FindingKind::TimerFireDelay, site, false))
        });
        for (key, values) in leak.into_iter().chain(delay) {
            measures.insert((measure, key), values);
        }
    }
    let latest = |measure: TimerMeasure, key: &TimerKey| {
        measures
            .get(&(measure, key.clone()))
            .and_then(|s| s.values.last().copied())
            .unwrap_or(0.0)
    };
    let keys: BTreeSet<TimerKey> = measures
        .keys()
        .filter(|(m, _)| {
            matches!(
                m,
                TimerMeasure::Live | TimerMeasure::Pending | TimerMeasure::Delay
            )
        })
        .map(|(_, key)| key.clone())
        .collect();
    // Per profile: pending counts where the heaps were read, else the probes' live set.
    let snapshots: Vec<bool> = series.iter().map(|p| has_snapshot(p)).collect();
    let exact = snapshots.last().copied().unwrap_or(false);
    let held = |key: &TimerKey| -> Option<Vec<f64>> {
        let live = measures.get(&(TimerMeasure::Live, key.clone()));
        let pending = measures.get(&(TimerMeasure::Pending, key.clone()));
        if live.is_none() && pending.is_none() {
            return None;
        }
        let value = |s: Option<&SiteSeries>, i: usize| {
            s.and_then(|s| s.values.get(i).copied()).unwrap_or(0.0)
        };
        Some(
            snapshots
                .iter()
                .enumerate()
                .map(|(i, &snapshot)| value(if snapshot { pending } else { live }, i))
                .collect(),
        )
    };
    for key in keys {
        let (kind, site, context_timer) = &key;
        if *kind == FindingKind::TimerFireDelay {
            if let Some(f) = fire_delay(
                site,
                latest(TimerMeasure::Fired, &key),
                latest(TimerMeasure::Delay, &key),
            ) {
                report.findings.push(f);
            }
            continue;
        }
        let Some(held) = held(&key) else {
            continue;
        };
        let collected_anyway = !exact
            && *kind != FindingKind::AfterfuncPending
            && context.fate == ChannelTimerFate::Collected;
        if collected_anyway {
            // Func timers are always heaped, but channel timers and tickers are collected once
            // unreferenced on Go ≥ 1.23, so a high live count there is not a leak by itself (a
            // read of the heaps counts only those the runtime still holds).
            continue;
        }
        let trend = trend::fit(&points(series, &held));
        let Some(severity) = live_count_severity(&trend) else {
            continue;
        };
        let counts = format!(
            "created {}, stopped {}, fired {}",
            count(latest(TimerMeasure::Created, &key)),
            count(latest(TimerMeasure::Stopped, &key)),
            count(latest(TimerMeasure::Fired, &key)),
        );
        let what = match (kind, context_timer) {
            (FindingKind::TickerNotStopped, _) => "tickers",
            (FindingKind::TimerAfterInLoop, _) => "time.After timers",
            (FindingKind::AfterfuncPending, true) => "context deadline timers",
            (FindingKind::AfterfuncPending, false) => "AfterFunc timers",
            _ => "timers",
        };
        let growth = if trend.points >= 2 {
            format!("; the live count {}", describe_trend(&trend, count))
        } else {
            String::new()
        };
        let evidence = format!(
            "{} ({}) has {} {} {what} ({counts}) {}{growth}.",
            site.function,
            site.short_location(),
            count(trend.last),
            if exact {
                "pending (read from the runtime's timer heaps)"
            } else {
                "live"
            },
            if *kind == FindingKind::AfterfuncPending {
                "each keeping its callback and what it captures alive until it fires"
            } else if exact && context.fate == ChannelTimerFate::Collected {
                "still held by the runtime"
            } else {
                context.reason.as_str()
            },
        );
        report.findings.push(Finding {
            kind: *kind,
            severity,
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
            evidence,
            suggestion: timer_suggestion(*kind, *context_timer, &context).to_owned(),
        });
    }
}

/// Severity of a site's live-timer count: rising over three or more profiles is a leak whatever
/// the level; otherwise the level itself.
fn live_count_severity(trend: &Trend) -> Option<Severity> {
    let level = trend.last;
    if trend.keeps_rising {
        return Some(if level >= LIVE_MEDIUM {
            Severity::High
        } else {
            Severity::Medium
        });
    }
    if level >= LIVE_HIGH {
        Some(Severity::High)
    } else if level >= LIVE_MEDIUM {
        Some(Severity::Medium)
    } else if level >= LIVE_LOW {
        Some(Severity::Low)
    } else {
        None
    }
}

fn timer_suggestion(
    kind: FindingKind,
    context_timer: bool,
    context: &RuntimeContext,
) -> &'static str {
    let modern_go = context.locked_timers;
    match (kind, context_timer) {
        (FindingKind::TimerAfterInLoop, _) if modern_go => {
            "Create one time.NewTimer before the loop and Reset it each iteration (Stop it on exit), or drop GODEBUG=asynctimerchan=1 / raise go.mod to go 1.23 so abandoned time.After timers are collected."
        }
        (FindingKind::TimerAfterInLoop, _) => {
            "Create one time.NewTimer before the loop and Reset it each iteration (Stop it on exit), or build with Go 1.23+ and go.mod `go 1.23` so abandoned time.After timers are collected."
        }
        (FindingKind::TickerNotStopped, _) => {
            "Call Stop on the ticker when its loop ends (defer ticker.Stop() right after time.NewTicker), and do not use time.Tick outside long-lived loops."
        }
        (FindingKind::AfterfuncPending, true) => {
            "Call the cancel function returned by context.WithTimeout/WithDeadline (defer cancel()) so the deadline timer and the context it holds are released at once."
        }
        (FindingKind::AfterfuncPending, false) => {
            "Keep the *Timer returned by time.AfterFunc and Stop it once the work is done or abandoned, or use a shorter duration, so the callback's captures are released."
        }
        _ => {
            "Stop timers whose result is no longer needed (defer t.Stop()), and reuse one timer with Reset instead of creating one per iteration."
        }
    }
}

fn fire_delay(site: &Site, fired: f64, delay_ns: f64) -> Option<Finding> {
    if fired < DELAY_MIN_FIRES {
        return None;
    }
    let mean = delay_ns / fired;
    let severity = if mean >= DELAY_HIGH_NS {
        Severity::High
    } else if mean >= DELAY_MEDIUM_NS {
        Severity::Medium
    } else if mean >= DELAY_LOW_NS {
        Severity::Low
    } else {
        return None;
    };
    Some(Finding {
        kind: FindingKind::TimerFireDelay,
        severity,
        function: site.function.clone(),
        file: site.file.clone(),
        line: site.line,
        evidence: format!(
            "Timers created at {} ({}) fired {} times, on average {:.1} ms after they were due.",
            site.function,
            site.short_location(),
            count(fired),
            mean / 1e6
        ),
        suggestion: "Timers fire late when no P is free to run them: look for CPU-bound goroutines and long non-preemptible loops, check GOMAXPROCS against the container's CPU quota, and reduce GC pressure.".to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Growth of live bytes (timerscope mmap profiles, Go heap profiles)

struct BytesRule {
    kind: FindingKind,
    sample_type: &'static str,
    what: &'static str,
    suggestion: &'static str,
    /// One timerscope recording is a window by itself: its sites hold what was allocated during
    /// it and kept until its end. (A Go heap profile is a snapshot of everything in use.)
    single_recording: bool,
}

/// The frame timerscope puts on mappings that existed before it attached to the process.
const PRE_EXISTING_FRAME: &str = SyntheticFrame::PreExisting.as_str();

/// Whether a series of profiles comes from separate attachments (one `timerscope record` each)
/// rather than from one (the intervals of `timerscope watch`). Within one attachment,
/// `[pre-existing]` bytes can only shrink, as older mappings are unmapped, and a site's live
/// bytes carry over from interval to interval. Each new attachment starts its sites from zero
/// and counts what they kept before as `[pre-existing]`, which then grows: the series is
/// windowed, its sites hold only what was mapped during each recording.
fn is_windowed(series: &[&ResolvedProfile], sample_type: &str) -> bool {
    let pre_existing: Vec<i64> = series
        .iter()
        .map(|p| {
            let Some(index) = p.sample_index(Some(sample_type)) else {
                return 0;
            };
            p.samples
                .iter()
                .filter(|s| {
                    p.stack(s)
                        .next()
                        .is_some_and(|leaf| leaf.function == PRE_EXISTING_FRAME)
                })
                .map(|s| s.values[index])
                .sum()
        })
        .collect();
    pre_existing.windows(2).any(|w| w[1] > w[0])
}

/// How fast one site's live bytes grow.
struct SiteGrowth {
    site: Site,
    /// Bytes per second: the fitted slope over the series (cumulative profiles), or what stayed
    /// mapped per second recorded (windowed profiles).
    rate: f64,
    /// Grew at every step of three or more profiles (windowed: kept bytes in each of three or
    /// more recordings).
    steady: bool,
    numbers: String,
}

const BYTES_RULES: [BytesRule; 3] = [
    BytesRule {
        kind: FindingKind::MmapGrowth,
        sample_type: SampleType::MmapLiveBytes.as_str(),
        what: "live mmap bytes",
        suggestion: "Unmap or reuse the regions mapped here, bound caches backed by mapped memory, and if the mappings are the Go heap's own, look for the heap growth behind them.",
        single_recording: true,
    },
    BytesRule {
        kind: FindingKind::HeapGrowth,
        sample_type: go_sample_type::INUSE_SPACE,
        what: "in-use heap bytes",
        suggestion: "Memory allocated here is kept: bound the caches, maps or slices it ends up in (evict or cap them), and check for goroutines or timers that keep references alive; `timerscope diff` of two heap profiles shows what grew.",
        single_recording: false,
    },
    BytesRule {
        kind: FindingKind::CHeapGrowth,
        sample_type: SampleType::CHeapLiveBytes.as_str(),
        what: "live C heap bytes",
        suggestion: "C code called from here mallocs and does not free: free every block the C side returns (a Go wrapper's Close or a runtime.SetFinalizer/AddCleanup that calls the library's free), and check the library's ownership rules for returned pointers.",
        single_recording: true,
    },
];

fn bytes_growth(rule: &BytesRule, series: &[&ResolvedProfile], report: &mut ClassifyReport) {
    // Watch without --mmap lists every mapping as `[pre-existing]`: no call has a site to name.
    if rule.kind == FindingKind::MmapGrowth
        && series
            .iter()
            .any(|p| p.comment_value(CommentKey::MmapProbes) == Some("off"))
    {
        report.notes.push(format!(
            "{}: the mmap probes were off (mmap_probes=off), so no mapping has a call site; run `timerscope watch --mmap` or `timerscope record` to find where the mappings are made",
            rule.kind
        ));
        return;
    }
    if series.len() < 2 && rule.single_recording {
        single_recording_growth(rule, series[0], report);
        return;
    }
    if series.len() < 2 {
        report.notes.push(format!(
            "{}: one profile shows no growth; give several profiles of the process over time (or --baseline)",
            rule.kind
        ));
        return;
    }
    let totals: Vec<f64> = series
        .iter()
        .map(|p| {
            p.sample_index(Some(rule.sample_type))
                .map_or(0.0, |i| p.total(i) as f64)
        })
        .collect();
    let total = trend::fit(&points(series, &totals));
    let Some(total_slope) = total.slope_per_second else {
        report.notes.push(format!(
            "{}: the profiles carry no distinct time_nanos, so growth per second is unknown",
            rule.kind
        ));
        return;
    };
    if total_slope <= BYTES_SLOPE_LEAK {
        return;
    }
    // Mappings older than a recording are no site's: they are not named, whatever they do.
    let sites = per_site(series, rule.sample_type, |_, _, site| {
        (site.function != PRE_EXISTING_FRAME).then_some(site)
    });
    let windowed = is_windowed(series, rule.sample_type);
    let mut growing: Vec<SiteGrowth> = sites
        .into_iter()
        .filter_map(|(site, s)| {
            if windowed {
                windowed_growth(series, site, &s.values)
            } else {
                let t = trend::fit(&points(series, &s.values));
                Some(SiteGrowth {
                    site,
                    rate: t.slope_per_second?,
                    steady: t.keeps_rising,
                    numbers: describe_trend(&t, mebibytes),
                })
            }
        })
        .filter(|g| g.rate > 0.0)
        .collect();
    growing.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    if growing.is_empty() {
        report.notes.push(format!(
            "{}: the process's {} grew at {}/s, but none of it was mapped by a call during the recordings (it is in mappings made before or between them); record for longer",
            rule.kind,
            rule.what,
            mebibytes(total_slope),
        ));
    }
    // The process grows faster than the limit: name the site that grows most, and every other
    // site that alone grows faster than the limit.
    for (rank, g) in growing.iter().enumerate() {
        if rank > 0 && g.rate <= BYTES_SLOPE_LEAK {
            break;
        }
        let severity = if g.steady || g.rate > 10.0 * BYTES_SLOPE_LEAK {
            Severity::High
        } else {
            Severity::Medium
        };
        let site = &g.site;
        report.findings.push(Finding {
            kind: rule.kind,
            severity,
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
            evidence: format!(
                "{} allocated at {} ({}) {}, while the whole process grew at {}/s (leak threshold {}/s).",
                capitalize(rule.what),
                site.function,
                site.short_location(),
                g.numbers,
                mebibytes(total_slope),
                mebibytes(BYTES_SLOPE_LEAK),
            ),
            suggestion: rule.suggestion.to_owned(),
        });
    }
}

/// Bytes allocated during one recording at a user-code site and still held at its end, per
/// second recorded. What the Go runtime maps for its own heap is left to heap-growth (a heap
/// profile names the allocating code; a busy healthy process grows its arenas too), and
/// mappings older than the recording are no site's. One window says nothing about a trend, so a
/// finding here is medium at most.
fn single_recording_growth(
    rule: &BytesRule,
    profile: &ResolvedProfile,
    report: &mut ClassifyReport,
) {
    let recorded_seconds = profile.duration_nanos.max(0) as f64 / 1e9;
    if recorded_seconds <= 0.0 {
        report.notes.push(format!(
            "{}: the profile has no duration, so bytes kept per second are unknown",
            rule.kind
        ));
        return;
    }
    let series = [profile];
    let heap_arena = MappingClass::HeapArena.as_str();
    let sites = per_site(&series, rule.sample_type, |profile, sample, site| {
        let runtime_heap = sample.str_label(LabelKey::Mapping) == Some(heap_arena);
        (user_site(profile, sample).is_some() && !runtime_heap).then_some(site)
    });
    let mut kept: Vec<(Site, f64)> = sites
        .into_iter()
        .map(|(site, s)| (site, s.values[0]))
        .filter(|(_, bytes)| bytes / recorded_seconds > BYTES_SLOPE_LEAK)
        .collect();
    kept.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (site, bytes) in kept {
        report.findings.push(Finding {
            kind: rule.kind,
            severity: Severity::Medium,
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
            evidence: format!(
                "{} allocated at {} ({}) during one {recorded_seconds:.1} s recording and still held at its end: {} ({}/s, leak threshold {}/s); record again later to see whether it keeps growing.",
                capitalize(rule.what),
                site.function,
                site.short_location(),
                mebibytes(bytes),
                mebibytes(bytes / recorded_seconds),
                mebibytes(BYTES_SLOPE_LEAK),
            ),
            suggestion: rule.suggestion.to_owned(),
        });
    }
}

/// Growth of one site over windowed profiles (separate recordings of one process). A site holds
/// only what it mapped during each recording and kept until its end, so the rate is bytes kept
/// per second recorded, not a slope between recordings.
fn windowed_growth(series: &[&ResolvedProfile], site: Site, values: &[f64]) -> Option<SiteGrowth> {
    let recorded_seconds: f64 = series
        .iter()
        .map(|p| p.duration_nanos.max(0) as f64 / 1e9)
        .sum();
    if recorded_seconds <= 0.0 {
        return None;
    }
    let kept: f64 = values.iter().sum();
    let each = values
        .iter()
        .map(|&v| format!("{:.1}", v / MIB))
        .collect::<Vec<_>>()
        .join(", ");
    let rate = kept / recorded_seconds;
    Some(SiteGrowth {
        site,
        rate,
        steady: values.len() >= 3 && values.iter().all(|&v| v > 0.0),
        numbers: format!(
            "during {} recordings and still mapped at their ends: {each} MiB ({} in {recorded_seconds:.1} s recorded, {}/s)",
            values.len(),
            mebibytes(kept),
            mebibytes(rate),
        ),
    })
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Goroutines piling up

fn goroutine_growth(series: &[&ResolvedProfile], report: &mut ClassifyReport) {
    let sites = per_site(series, go_sample_type::GOROUTINE, |_, _, site| Some(site));
    for (site, s) in sites {
        let t = trend::fit(&points(series, &s.values));
        let increase = t.last - t.first;
        let severity = if series.len() >= 2 {
            let growing = t.growth_per_second.is_none_or(|g| g > 0.0);
            match (t.keeps_rising, increase >= GOROUTINE_GROWTH_MIN && growing) {
                (true, true) => Some(Severity::High),
                (true, false) if increase >= LIVE_LOW => Some(Severity::Medium),
                (false, true) => Some(Severity::Medium),
                _ => None,
            }
        } else if t.last >= GOROUTINE_SINGLE_MEDIUM {
            Some(Severity::Medium)
        } else if t.last >= GOROUTINE_SINGLE_LOW {
            Some(Severity::Low)
        } else {
            None
        };
        let Some(severity) = severity else {
            continue;
        };
        let numbers = if series.len() >= 2 {
            describe_trend(&t, count)
        } else {
            format!("number {} in one profile", count(t.last))
        };
        report.findings.push(Finding {
            kind: FindingKind::GoroutineGrowth,
            severity,
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
            evidence: format!(
                "Goroutines blocked at {} ({}) {numbers}.",
                site.function,
                site.short_location()
            ),
            suggestion: "Goroutines pile up blocked here: give each one a way to finish (close or drain the channel, select on ctx.Done(), add timeouts) and bound concurrency with a worker pool or semaphore.".to_owned(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// RSS or Sys growing while the Go heap stays flat

/// The frame a finding names when no code site is to blame: the process as a whole.
const PROCESS_FRAME: &str = "[process]";

/// RSS or the runtime's `Sys` growing faster than the leak threshold while `HeapAlloc` grew by
/// less than a quarter as much, from the memory numbers at the start of the first recording
/// and the end of the last: memory outside the Go heap (C heap, mappings, goroutine stacks).
fn rss_outside_heap(series: &[&ResolvedProfile]) -> Option<Finding> {
    let (first, last) = (series[0], series[series.len() - 1]);
    let numbers = |p: &ResolvedProfile, key| p.comment_value(key).map(MemoryNumbers::parse);
    let start = numbers(first, CommentKey::MemoryStart)?;
    let end = numbers(last, CommentKey::MemoryEnd)?;
    let span = (last.time_nanos + last.duration_nanos.max(0) - first.time_nanos) as f64 / 1e9;
    let growth = |f: fn(&MemoryNumbers) -> Option<u64>| -> Option<f64> {
        Some(f(&end)? as f64 - f(&start)? as f64)
    };
    // The Go heap's own pages are not outside it, even while HeapAlloc, sampled at two moments
    // of a GC sawtooth, looks flat: what grew beyond the heap's resident pages (RSS) or HeapSys
    // (Sys). Freed spans stay resident until the scavenger releases them, so a heap that shrank
    // moves pages from HeapInuse to HeapSys - HeapReleased with RSS unchanged. Profiles written
    // before heap_released was recorded fall back to HeapInuse.
    let outside = |total: Option<f64>, heap: Option<(&'static str, f64)>, plain| match heap {
        Some((less, heap)) => Some((less, total? - heap)),
        None => Some((plain, total?)),
    };
    let rss_heap = growth(|n| Some(n.heap_sys?.saturating_sub(n.heap_released?)))
        .map(|heap| ("RSS less HeapSys - HeapReleased", heap))
        .or_else(|| growth(|n| n.heap_inuse).map(|heap| ("RSS less HeapInuse", heap)));
    let rss = outside(growth(|n| n.rss), rss_heap, "RSS");
    let sys = outside(
        growth(|n| n.sys),
        growth(|n| n.heap_sys).map(|heap| ("Sys less HeapSys", heap)),
        "Sys",
    );
    let heap = growth(|n| n.heap_alloc)?;
    let (what, grown) = match (rss, sys) {
        (Some(r), Some(s)) if s.1 > r.1 => s,
        (Some(r), _) => r,
        (None, Some(s)) => s,
        (None, None) => return None,
    };
    if span <= 0.0 || grown / span <= BYTES_SLOPE_LEAK || heap >= grown / 4.0 {
        return None;
    }
    let kept = |ty: SampleType| {
        last.column(ty).map_or(0.0, |i| {
            last.samples
                .iter()
                .filter(|s| {
                    last.stack(s)
                        .next()
                        .is_some_and(|leaf| leaf.function != PRE_EXISTING_FRAME)
                })
                .map(|s| s.values[i] as f64)
                .sum()
        })
    };
    let stacks = growth(|n| n.stack_inuse).unwrap_or(0.0);
    let rate = grown / span;
    Some(Finding {
        kind: FindingKind::RssOutsideHeap,
        severity: if rate > 10.0 * BYTES_SLOPE_LEAK {
            Severity::High
        } else {
            Severity::Medium
        },
        function: PROCESS_FRAME.to_owned(),
        file: String::new(),
        line: 0,
        evidence: format!(
            "{what} grew by {} in {span:.1} s ({}/s) while HeapAlloc changed by {}; of the latest recording, mappings made during it hold {}, the C heap {}, and goroutine stacks grew by {}.",
            mebibytes(grown),
            mebibytes(rate),
            mebibytes(heap),
            mebibytes(kept(SampleType::MmapLiveBytes)),
            mebibytes(kept(SampleType::CHeapLiveBytes)),
            mebibytes(stacks),
        ),
        suggestion: "Memory outside the Go heap is growing: record with C heap probes on (the default of `timerscope record` for cgo programs) to find the C call site, look for goroutines piling up (each holds a stack), and check mmap-backed caches; GODEBUG=madvdontneed=1 only changes when freed heap is returned.".to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Goroutines blocked for good (timerscope's goroutine snapshots, with creation counts from probes)

/// Blocked goroutines of one creation site at one place: below this, a few stuck goroutines
/// are not worth a finding.
const GOROUTINE_LEAK_MIN: f64 = 100.0;

/// Wait reasons (as Go names them) of goroutines waiting for another goroutine that may never
/// come. Idle network connections (`IO wait`), sleeps and the runtime's own workers wait too,
/// but that is what they are for.
const LEAKING_WAIT_REASONS: [&str; 12] = [
    "chan receive",
    "chan send",
    "select",
    "select (no cases)",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "sync.WaitGroup.Wait",
    "semacquire",
];

/// The function of a `created_by` label, `function (file:line)`.
fn creator_function(created_by: &str) -> &str {
    created_by.split(" (").next().unwrap_or(created_by)
}

/// Goroutines created (or exited) during the recording of `profile`, by the user function
/// that created them.
fn goroutines_by_creator(profile: &ResolvedProfile, column: SampleType) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    let Some(index) = profile.sample_index(Some(column.as_str())) else {
        return counts;
    };
    for sample in &profile.samples {
        if sample.values[index] == 0 {
            continue;
        }
        // The creating stack's leaf is newproc's caller: the function with the `go` statement.
        if let Some((site, _)) = user_site(profile, sample) {
            *counts.entry(site.function).or_insert(0.0) += sample.values[index] as f64;
        }
    }
    counts
}

fn goroutine_leaks(series: &[&ResolvedProfile], report: &mut ClassifyReport) {
    let groups = per_site(
        series,
        SampleType::Goroutines.as_str(),
        |profile, sample, site| {
            let reason = sample.str_label(LabelKey::WaitReason)?;
            if !LEAKING_WAIT_REASONS.contains(&reason) {
                return None;
            }
            let created_by = sample.str_label(LabelKey::CreatedBy).unwrap_or("");
            let blocked_in_user_code = user_site(profile, sample).is_some();
            if !blocked_in_user_code && !is_user_function(creator_function(created_by)) {
                return None;
            }
            Some((site, created_by.to_owned(), reason.to_owned()))
        },
    );
    let latest = series[series.len() - 1];
    let created = goroutines_by_creator(latest, SampleType::GoroutinesCreated);
    let exited = goroutines_by_creator(latest, SampleType::GoroutinesExited);
    let recorded_seconds = latest.duration_nanos.max(0) as f64 / 1e9;
    for ((site, created_by, reason), s) in groups {
        let trend = trend::fit(&points(series, &s.values));
        let blocked = trend.last;
        if blocked < GOROUTINE_LEAK_MIN && !trend.keeps_rising {
            continue;
        }
        let creator = creator_function(&created_by);
        let made = created.get(creator).copied().unwrap_or(0.0);
        let gone = exited.get(creator).copied().unwrap_or(0.0);
        let piled_up = made - gone;
        let rising = series.len() >= 2 && trend.last - trend.first >= GOROUTINE_LEAK_MIN.min(10.0);
        let severity = if (trend.keeps_rising && rising)
            || (piled_up >= GOROUTINE_LEAK_MIN && blocked >= GOROUTINE_LEAK_MIN)
        {
            Severity::High
        } else if (rising && trend.last - trend.first >= GOROUTINE_LEAK_MIN)
            || blocked >= GOROUTINE_SINGLE_MEDIUM
        {
            Severity::Medium
        } else {
            continue;
        };
        let mut evidence = format!(
            "{} goroutines created by {} are blocked in {reason:?} at {} ({})",
            count(blocked),
            if created_by.is_empty() {
                "an unknown site"
            } else {
                &created_by
            },
            site.function,
            site.short_location(),
        );
        if made > 0.0 && recorded_seconds > 0.0 {
            evidence += &format!(
                "; {} were created there during the {recorded_seconds:.1} s recording and {} exited",
                count(made),
                count(gone)
            );
        }
        if series.len() >= 2 {
            evidence += &format!("; the blocked count {}", describe_trend(&trend, count));
        }
        evidence.push('.');
        report.findings.push(Finding {
            kind: FindingKind::GoroutineLeak,
            severity,
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
            evidence,
            suggestion: "These goroutines wait for something that never comes: give each a way out (select on ctx.Done() or a done channel, close the channel they receive from, use a buffered channel for a reply nobody may read) and bound how many are started.".to_owned(),
        });
    }
}

/// Timers waited on by leaking goroutines (a `time.After` in the `select` they are blocked
/// in) are evidence of the goroutine leak, not a leak of their own: the goroutines hold them.
fn fold_timers_into_goroutine_leaks(report: &mut ClassifyReport) {
    let is_timer = |kind: FindingKind| {
        matches!(
            kind,
            FindingKind::TimerAfterInLoop
                | FindingKind::TimerNotStopped
                | FindingKind::TickerNotStopped
                | FindingKind::AfterfuncPending
        )
    };
    let leaking: BTreeSet<String> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::GoroutineLeak)
        .map(|f| f.function.clone())
        .collect();
    let (held, kept): (Vec<Finding>, Vec<Finding>) = std::mem::take(&mut report.findings)
        .into_iter()
        .partition(|f| is_timer(f.kind) && leaking.contains(&f.function));
    report.findings = kept;
    for timer in held {
        if let Some(leak) = report
            .findings
            .iter_mut()
            .find(|f| f.kind == FindingKind::GoroutineLeak && f.function == timer.function)
        {
            leak.evidence += &format!(
                " The blocked goroutines also hold the timers they wait on ({}: {})",
                timer.kind, timer.evidence
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use pprof::{Frame, ProfileBuilder, SampleLabel};

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            system_name: function.to_owned(),
            file: "/src/app/main.go".to_owned(),
            line,
            start_line: 0,
        }
    }

    fn label(key: LabelKey, value: &str) -> SampleLabel {
        SampleLabel::Str {
            key: key.to_string(),
            value: value.to_owned(),
        }
    }

    /// A timerscope recording of `seconds` whose samples are (stack leaf first, sample type,
    /// value, labels).
    /// (stack leaf first, sample type, value, labels)
    type TestSample<'a> = (&'a [(&'a str, i64)], SampleType, i64, Vec<SampleLabel>);

    fn recording(seconds: i64, samples: &[TestSample]) -> ResolvedProfile {
        recording_with(seconds, &[], samples)
    }

    /// Like [`recording`], with the recorder's `comments`.
    fn recording_with(
        seconds: i64,
        comments: &[String],
        samples: &[TestSample],
    ) -> ResolvedProfile {
        let mut builder = ProfileBuilder::new(&SampleType::pairs(), SampleType::DEFAULT.as_str());
        builder
            .time_nanos(1)
            .duration_nanos(seconds * 1_000_000_000);
        for comment in comments {
            builder.comment(comment.clone());
        }
        for (stack, column, value, labels) in samples {
            let locations: Vec<u64> = stack
                .iter()
                .map(|&(function, line)| builder.location(0, 0, &[frame(function, line)]))
                .collect();
            let mut values = vec![0; SampleType::ALL.len()];
            values[column.column()] = *value;
            builder.add_sample(&locations, &values, labels);
        }
        ResolvedProfile::new(&builder.build().unwrap())
    }

    const BLOCKED: &[(&str, i64)] = &[
        ("runtime.gopark", 1),
        ("runtime.selectgo", 2),
        ("main.wait", 30),
    ];
    const CREATOR: &[(&str, i64)] = &[("main.spawn", 20), ("main.main", 10)];

    fn blocked(n: i64, reason: &str) -> TestSample<'static> {
        (
            BLOCKED,
            SampleType::Goroutines,
            n,
            vec![
                label(LabelKey::WaitReason, reason),
                label(LabelKey::CreatedBy, "main.spawn (main.go:20)"),
            ],
        )
    }

    #[test]
    fn goroutines_created_and_blocked_during_one_recording_leak() {
        let profile = recording(
            8,
            &[
                blocked(320, "select"),
                (CREATOR, SampleType::GoroutinesCreated, 320, vec![]),
            ],
        );
        let report = classify(&[profile]);
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let finding = &report.findings[0];
        assert_eq!(finding.kind, FindingKind::GoroutineLeak);
        assert_eq!(finding.severity, Severity::High);
        assert_eq!((finding.function.as_str(), finding.line), ("main.wait", 30));
        assert!(
            finding.evidence.contains("main.spawn (main.go:20)"),
            "{}",
            finding.evidence
        );
        assert!(
            finding.evidence.contains("320 were created"),
            "{}",
            finding.evidence
        );
    }

    #[test]
    fn long_lived_or_idle_goroutines_are_no_leak() {
        // A pool of workers started before the recording, and idle connections in IO wait.
        let profile = recording(8, &[blocked(500, "chan receive"), blocked(5000, "IO wait")]);
        let report = classify(&[profile]);
        assert!(report.findings.is_empty(), "{report:#?}");
    }

    #[test]
    fn pending_counts_of_a_snapshot_replace_the_live_set_on_go_1_23_sync_channels() {
        let after: &[(&str, i64)] = &[("time.After", 156), ("main.poll", 12)];
        let timer = || vec![label(LabelKey::Kind, "timer")];
        let go = [
            CommentKey::GoVersion.comment("go1.25.5"),
            CommentKey::TimerFamily.comment(TimerFamily::Locked),
            CommentKey::TimerChannelMode.comment(ChannelMode::Sync),
        ];
        // Live counts alone prove nothing there: collected timers stay in the live set.
        let live_only = recording_with(8, &go, &[(after, SampleType::TimersLive, 500, timer())]);
        assert!(classify(&[live_only]).findings.is_empty());
        // A read of the heaps counts what the runtime holds: 300 of the 5000 "live".
        let mut with_snapshot = go.to_vec();
        with_snapshot.push(CommentKey::Snapshot.comment(pprof::vocabulary::snapshot_ok(300, 0, 0)));
        let both = recording_with(
            8,
            &with_snapshot,
            &[
                (after, SampleType::TimersLive, 5000, timer()),
                (after, SampleType::TimersPending, 300, timer()),
            ],
        );
        let report = classify(&[both]);
        let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingKind::TimerAfterInLoop], "{report:#?}");
        let evidence = &report.findings[0].evidence;
        assert!(evidence.contains("has 300 pending"), "{evidence}");
        // Pending timers made before the attach have no creation site to name.
        let before_attach: &[(&str, i64)] = &[
            ("main.expire", 40),
            (SyntheticFrame::TimerCreatedBeforeAttach.as_str(), 0),
        ];
        let unattributed = recording_with(
            8,
            &with_snapshot,
            &[(
                before_attach,
                SampleType::TimersPending,
                300,
                vec![label(LabelKey::Kind, "afterfunc")],
            )],
        );
        assert!(classify(&[unattributed]).findings.is_empty());
    }

    #[test]
    fn a_timer_waited_on_by_leaking_goroutines_is_evidence_not_a_finding() {
        let after: &[(&str, i64)] = &[
            ("time.NewTimer", 86),
            ("time.After", 156),
            ("main.wait", 29),
        ];
        let profile = recording(
            8,
            &[
                blocked(320, "select"),
                (CREATOR, SampleType::GoroutinesCreated, 320, vec![]),
                (
                    after,
                    SampleType::TimersLive,
                    320,
                    vec![label(LabelKey::Kind, "timer")],
                ),
            ],
        );
        let report = classify(&[profile]);
        let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingKind::GoroutineLeak], "{report:#?}");
        assert!(report.findings[0].evidence.contains("timer-after-in-loop"));
    }

    #[test]
    fn c_heap_kept_during_one_recording_grows() {
        let site: &[(&str, i64)] = &[
            ("runtime.cgocall", 1),
            ("main._Cfunc_leak", 2),
            ("main.leakC", 44),
        ];
        let freed: &[(&str, i64)] = &[
            ("runtime.cgocall", 1),
            ("main._Cfunc_pair", 3),
            ("main.pairs", 50),
        ];
        let profile = recording(
            8,
            &[
                (site, SampleType::CHeapLiveBytes, 40 << 20, vec![]),
                (freed, SampleType::CHeapLiveBytes, 0, vec![]),
                (freed, SampleType::CHeapAllocBytes, 400 << 20, vec![]),
            ],
        );
        let report = classify(&[profile]);
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        assert_eq!(report.findings[0].kind, FindingKind::CHeapGrowth);
        assert_eq!(report.findings[0].severity, Severity::Medium);
        assert_eq!(report.findings[0].function, "main.leakC");
    }

    fn with_memory(
        mut profile: ResolvedProfile,
        start: (u64, u64),
        end: (u64, u64),
    ) -> ResolvedProfile {
        let numbers = |(rss, heap_alloc)| MemoryNumbers {
            rss: Some(rss),
            heap_alloc: Some(heap_alloc),
            ..MemoryNumbers::default()
        };
        profile
            .comments
            .push(numbers(start).comment(CommentKey::MemoryStart));
        profile
            .comments
            .push(numbers(end).comment(CommentKey::MemoryEnd));
        profile
    }

    #[test]
    fn rss_growing_while_the_heap_is_flat_is_outside_the_heap() {
        let mib = 1 << 20;
        let profile = with_memory(recording(8, &[]), (10 * mib, 4 * mib), (80 * mib, 5 * mib));
        let report = classify(&[profile]);
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let finding = &report.findings[0];
        assert_eq!(finding.kind, FindingKind::RssOutsideHeap);
        assert_eq!(finding.function, "[process]");
        assert!(
            finding.evidence.contains("RSS grew by 70.0 MiB"),
            "{}",
            finding.evidence
        );

        // The heap grew as much: that is heap growth, not memory outside it.
        let profile = with_memory(recording(8, &[]), (10 * mib, 4 * mib), (80 * mib, 70 * mib));
        assert!(classify(&[profile]).findings.is_empty());
        // Sys grew with HeapSys (a churning heap's reserve) while HeapAlloc, caught at two
        // points of the GC sawtooth, looks flat: not outside the heap either.
        let mut churn = recording(8, &[]);
        let figures = |sys, heap_sys| MemoryNumbers {
            heap_alloc: Some(3 * mib),
            heap_sys: Some(heap_sys),
            sys: Some(sys),
            ..MemoryNumbers::default()
        };
        churn
            .comments
            .push(figures(20 * mib, 16 * mib).comment(CommentKey::MemoryStart));
        churn
            .comments
            .push(figures(37 * mib, 33 * mib).comment(CommentKey::MemoryEnd));
        assert!(classify(&[churn]).findings.is_empty());
        // The heap shrank: 8 MiB of spans went from HeapInuse to free but still resident
        // (HeapSys - HeapReleased the same), RSS flat. Not outside the heap; growth beyond the
        // resident heap is.
        let resident = |rss, heap_inuse, heap_released| MemoryNumbers {
            rss: Some(rss),
            heap_alloc: Some(3 * mib),
            heap_inuse: Some(heap_inuse),
            heap_sys: Some(32 * mib),
            heap_released: Some(heap_released),
            ..MemoryNumbers::default()
        };
        let shrunk = |end: MemoryNumbers| {
            let mut profile = recording(8, &[]);
            profile
                .comments
                .push(resident(40 * mib, 16 * mib, 8 * mib).comment(CommentKey::MemoryStart));
            profile.comments.push(end.comment(CommentKey::MemoryEnd));
            classify(&[profile]).findings
        };
        assert!(shrunk(resident(40 * mib, 8 * mib, 8 * mib)).is_empty());
        let grown = shrunk(resident(60 * mib, 8 * mib, 8 * mib));
        assert_eq!(grown.len(), 1, "{grown:#?}");
        assert!(
            grown[0]
                .evidence
                .starts_with("RSS less HeapSys - HeapReleased grew by 20.0 MiB"),
            "{}",
            grown[0].evidence
        );
        // A C heap site explains it: that finding is the answer, not the process-wide one.
        let site: &[(&str, i64)] = &[("runtime.cgocall", 1), ("main.leakC", 44)];
        let profile = with_memory(
            recording(
                8,
                &[(site, SampleType::CHeapLiveBytes, 60 * mib as i64, vec![])],
            ),
            (10 * mib, 4 * mib),
            (80 * mib, 5 * mib),
        );
        let kinds: Vec<FindingKind> = classify(&[profile])
            .findings
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(kinds, [FindingKind::CHeapGrowth]);
    }

    #[test]
    fn mmap_growth_without_the_mmap_probes_says_to_turn_them_on() {
        let mib: i64 = 1 << 20;
        let off = [CommentKey::MmapProbes.comment("off")];
        let listed: &[(&str, i64)] = &[(PRE_EXISTING_FRAME, 0)];
        let series: Vec<ResolvedProfile> = (0..3)
            .map(|i| {
                let mut profile = recording_with(
                    8,
                    &off,
                    &[(
                        listed,
                        SampleType::MmapLiveBytes,
                        (10 + 20 * i) * mib,
                        vec![],
                    )],
                );
                profile.time_nanos = i * 8_000_000_000;
                profile
            })
            .collect();
        let report = classify(&series);
        assert!(report.findings.is_empty(), "{report:#?}");
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with("mmap-growth: the mmap probes were off")
                    && n.contains("--mmap")),
            "{:#?}",
            report.notes
        );
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::High > Severity::Medium && Severity::Medium > Severity::Low);
        assert_eq!("medium".parse::<Severity>(), Ok(Severity::Medium));
        assert!("urgent".parse::<Severity>().is_err());
        assert_eq!(
            serde_json::to_string(&FindingKind::AfterfuncPending).unwrap(),
            format!("\"{}\"", FindingKind::AfterfuncPending.as_str())
        );
    }
}
