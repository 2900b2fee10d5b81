//! The HTML report (`timerscope report`, `inspect --html`): one self-contained page per run, with
//! per subject (a recorded process, or an inspected service) its findings most severe first,
//! plots over time of every sample type its profiles have (fitted slope and threshold drawn),
//! small series of the top sites, the latest flame graph and a differential one against the
//! baseline, and the recording facts. The numbers come from the analyzer (classify, series,
//! trends, flame graphs) and inspect's analysis; this module only lays them out.

mod html;
mod svg;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use analyzer::classify::{Finding, classify};
use analyzer::flamegraph::write_flamegraph;
use analyzer::series::{Measure, Series, SiteSeries, Threshold, top_sites, totals};
use inspect::report::{SiteFinding, TrendMetric, TrendQuantity};
use inspect::targets::ProfileKind;
use pprof::ResolvedProfile;
use pprof::vocabulary::{CommentKey, parse_drops_comment};

pub use html::render;

/// Sites shown per sample type.
const TOP_SITES: usize = 5;

/// A whole page.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// What the report was made from (a directory, a store, files).
    pub source: String,
    pub sections: Vec<Section>,
}

/// One subject: a process's profiles, or an inspected service's rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    pub subtitle: String,
    /// Most severe first.
    pub findings: Vec<SiteFinding>,
    pub panels: Vec<Panel>,
    pub sites: Vec<SitePanel>,
    pub flamegraphs: Vec<Flamegraph>,
    /// (name, value) of the newest profile's recording, and the drops of all of them.
    pub facts: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// One plot: series of one unit over time; the first carries the fit and the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub lines: Vec<Series>,
}

/// The top sites of one sample type, each with its own small series.
#[derive(Debug, Clone, PartialEq)]
pub struct SitePanel {
    pub title: String,
    pub sites: Vec<SiteSeries>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flamegraph {
    pub title: String,
    /// inferno's SVG document, with its own script: shown in a frame of its own.
    pub svg: Vec<u8>,
}

/// What a sample type is called in titles.
fn quantity_name(sample_type: &str) -> String {
    match sample_type {
        "timers_live" => "live timers".to_owned(),
        "timers_pending" => "pending timers".to_owned(),
        "mmap_live_bytes" => "mapped bytes (live mmap)".to_owned(),
        "c_heap_live_bytes" => "C heap live bytes".to_owned(),
        "inuse_space" => TrendQuantity::HeapInuseBytes.label().to_owned(),
        "goroutine" | "goroutines" => TrendQuantity::Goroutines.label().to_owned(),
        other => other.replace('_', " "),
    }
}

fn rate_title(lines: &[Series]) -> String {
    if lines.iter().all(|s| s.sample_type.starts_with("timers_")) {
        return "timer events per second".to_owned();
    }
    let names: Vec<String> = lines
        .iter()
        .map(|s| quantity_name(&s.sample_type))
        .collect();
    format!("{} per second", names.join(", "))
}

/// One finding as the report lists it (inspect merges several at one function; classify's
/// stand alone).
fn site_finding(finding: Finding) -> SiteFinding {
    SiteFinding {
        function: finding.function.clone(),
        severity: finding.severity,
        kinds: vec![finding.kind],
        summary: finding.evidence.clone(),
        evidence: vec![finding],
    }
}

/// Profiles grouped by their sample types (one group per kind of profile), each in time order.
fn by_kind<'a>(profiles: &[&'a ResolvedProfile]) -> Vec<Vec<&'a ResolvedProfile>> {
    let mut groups: BTreeMap<String, Vec<&'a ResolvedProfile>> = BTreeMap::new();
    for &p in profiles {
        let key: Vec<String> = p.sample_types.iter().map(ToString::to_string).collect();
        groups.entry(key.join(",")).or_default().push(p);
    }
    let mut groups: Vec<_> = groups.into_values().collect();
    for group in &mut groups {
        group.sort_by_key(|p| p.time_nanos);
    }
    groups
}

/// Plots and top sites of one kind of profile. `threshold_of` may replace the analyzer's
/// threshold of a total (a service's own alert level).
fn plots(
    group: &[&ResolvedProfile],
    threshold_of: &dyn Fn(&str) -> Option<Threshold>,
) -> (Vec<Panel>, Vec<SitePanel>) {
    let mut panels = Vec::new();
    let mut rates: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    let mut sites = Vec::new();
    for mut series in totals(group).into_iter().filter(Series::has_data) {
        if let Some(threshold) = threshold_of(&series.sample_type) {
            series.threshold = Some(threshold);
        }
        match series.measure {
            Measure::Level => {
                let name = quantity_name(&series.sample_type);
                let top = top_sites(group, &series.sample_type, TOP_SITES);
                if !top.is_empty() {
                    sites.push(SitePanel {
                        title: format!("top sites by {name}"),
                        sites: top,
                    });
                }
                panels.push(Panel {
                    title: name,
                    lines: vec![series],
                });
            }
            Measure::Rate => rates.entry(series.unit.clone()).or_default().push(series),
        }
    }
    for lines in rates.into_values() {
        panels.push(Panel {
            title: rate_title(&lines),
            lines,
        });
    }
    (panels, sites)
}

/// The sample type a flame graph of `profile` draws: the default one when it has data, else the
/// first level with data, else the first with data.
fn flame_sample_type(profile: &ResolvedProfile) -> Option<String> {
    let positive = |i: usize| profile.samples.iter().any(|s| s.values[i] > 0);
    let default = profile.sample_index(None).filter(|&i| positive(i));
    let level = || {
        (0..profile.sample_types.len())
            .find(|&i| Measure::of(&profile.sample_types[i].ty) == Measure::Level && positive(i))
    };
    let any = || (0..profile.sample_types.len()).find(|&i| positive(i));
    let index = default.or_else(level).or_else(any)?;
    Some(profile.sample_types[index].ty.clone())
}

/// The newest profile's flame graph, and a differential one against `base` (another profile of
/// the same kind) when given.
fn flamegraphs(
    latest: &ResolvedProfile,
    base: Option<&ResolvedProfile>,
    notes: &mut Vec<String>,
) -> Vec<Flamegraph> {
    let Some(sample_type) = flame_sample_type(latest) else {
        return Vec::new();
    };
    let when = time_text(
        latest
            .time_nanos
            .saturating_add(latest.duration_nanos.max(0)),
    );
    let mut wanted = vec![(None, format!("{sample_type} at {when}"))];
    if let Some(base) = base {
        let then = time_text(base.time_nanos.saturating_add(base.duration_nanos.max(0)));
        wanted.push((
            Some(base),
            format!("{sample_type}: {when} against the baseline of {then}"),
        ));
    }
    let mut graphs = Vec::new();
    for (base, title) in wanted {
        let mut svg = Vec::new();
        match write_flamegraph(latest, base, Some(&sample_type), &mut svg) {
            Ok(_) => graphs.push(Flamegraph { title, svg }),
            Err(error) => notes.push(format!("no flame graph of {title}: {error}")),
        }
    }
    graphs
}

/// RFC 3339 to the second, UTC.
fn time_text(nanos: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The recording facts: the newest profile's comments (Go version, timer family, channel mode,
/// hooks, tier, ...), its binary, the span covered, and the drops summed over every profile.
fn facts(profiles: &[&ResolvedProfile]) -> Vec<(String, String)> {
    let Some(latest) = profiles.iter().max_by_key(|p| p.time_nanos) else {
        return Vec::new();
    };
    let first = profiles.iter().map(|p| p.time_nanos).min().unwrap_or(0);
    let last = profiles
        .iter()
        .map(|p| p.time_nanos.saturating_add(p.duration_nanos.max(0)))
        .max()
        .unwrap_or(0);
    let mut facts = vec![
        ("profiles".to_owned(), profiles.len().to_string()),
        (
            "covering".to_owned(),
            format!("{} to {}", time_text(first), time_text(last)),
        ),
    ];
    if !latest.main_file.is_empty() {
        facts.push(("binary".to_owned(), latest.main_file.clone()));
    }
    if !latest.main_build_id.is_empty() {
        facts.push(("build id".to_owned(), latest.main_build_id.clone()));
    }
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    for p in profiles {
        for (reason, n) in p
            .comments
            .iter()
            .filter_map(|c| parse_drops_comment(c))
            .flatten()
        {
            *drops.entry(reason).or_default() += n;
        }
    }
    for comment in &latest.comments {
        if parse_drops_comment(comment).is_some() {
            continue;
        }
        match comment.split_once('=') {
            Some((key, value)) => facts.push((key.trim().to_owned(), value.trim().to_owned())),
            None => facts.push(("comment".to_owned(), comment.clone())),
        }
    }
    if profiles
        .iter()
        .any(|p| p.comments.iter().any(|c| parse_drops_comment(c).is_some()))
    {
        let text: Vec<String> = drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        let total: u64 = drops.values().sum();
        facts.push((
            "drops (all profiles)".to_owned(),
            format!("{total} ({})", text.join(" ")),
        ));
    }
    facts
}

/// The subject a recorded profile belongs to: its process (`pid` comment), else its binary.
fn subject_of(profile: &ResolvedProfile) -> String {
    let exe = profile
        .main_file
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty());
    match (profile.comment_value(CommentKey::Pid), exe) {
        (Some(pid), Some(exe)) => format!("{exe} (pid {pid})"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, Some(exe)) => exe.to_owned(),
        (None, None) => "profiles".to_owned(),
    }
}

/// The report of recorded profiles (a `watch` directory, or files): one section per process.
pub fn profiles_report(source: String, profiles: &[(PathBuf, ResolvedProfile)]) -> Report {
    let mut subjects: BTreeMap<String, Vec<&ResolvedProfile>> = BTreeMap::new();
    for (_, p) in profiles {
        subjects.entry(subject_of(p)).or_default().push(p);
    }
    let sections = subjects
        .into_iter()
        .map(|(title, profiles)| {
            let owned: Vec<ResolvedProfile> = profiles.iter().map(|&p| p.clone()).collect();
            let classified = classify(&owned);
            let mut notes = classified.notes;
            let mut section = Section {
                subtitle: format!(
                    "{} profile(s) from {}",
                    profiles.len(),
                    facts(&profiles)
                        .into_iter()
                        .find(|(k, _)| k == "covering")
                        .map_or_else(String::new, |(_, v)| v)
                ),
                title,
                findings: classified.findings.into_iter().map(site_finding).collect(),
                panels: Vec::new(),
                sites: Vec::new(),
                flamegraphs: Vec::new(),
                facts: facts(&profiles),
                notes: Vec::new(),
            };
            for group in by_kind(&profiles) {
                let (panels, sites) = plots(&group, &|_| None);
                section.panels.extend(panels);
                section.sites.extend(sites);
                let latest = group[group.len() - 1];
                let base = (group.len() >= 2).then(|| group[0]);
                section
                    .flamegraphs
                    .extend(flamegraphs(latest, base, &mut notes));
            }
            section.notes = notes;
            section
        })
        .collect();
    Report { source, sections }
}

/// What inspect's analysis says of one service, for its section.
pub struct ServiceSummary<'a> {
    pub service: &'a str,
    pub subtitle: String,
    pub trends: &'a [TrendMetric],
    pub findings: &'a [SiteFinding],
    pub notes: &'a [String],
    /// The baseline round's time, for the differential flame graphs.
    pub baseline_nanos: Option<i64>,
}

/// The sample type inspect fits a trend to in a profile of `kind`.
fn trend_sample_type(metric: TrendQuantity) -> (ProfileKind, &'static str) {
    match metric {
        TrendQuantity::HeapInuseBytes => (
            ProfileKind::Heap,
            pprof::vocabulary::go_sample_type::INUSE_SPACE,
        ),
        TrendQuantity::Goroutines => (
            ProfileKind::Goroutine,
            pprof::vocabulary::go_sample_type::GOROUTINE,
        ),
    }
}

/// One inspected service's section: its findings and trends from inspect's analysis, plots of
/// every stored round's profiles (the trends' alert levels as thresholds), and flame graphs of
/// the newest round against the baseline.
pub fn service_section(
    summary: &ServiceSummary<'_>,
    history: &BTreeMap<ProfileKind, Vec<ResolvedProfile>>,
) -> Section {
    let mut section = Section {
        title: summary.service.to_owned(),
        subtitle: summary.subtitle.clone(),
        findings: summary.findings.to_vec(),
        panels: Vec::new(),
        sites: Vec::new(),
        flamegraphs: Vec::new(),
        facts: Vec::new(),
        notes: summary.notes.to_vec(),
    };
    let mut all: Vec<&ResolvedProfile> = Vec::new();
    for (&kind, profiles) in history {
        let group: Vec<&ResolvedProfile> = profiles.iter().collect();
        all.extend(&group);
        let threshold_of = |sample_type: &str| {
            summary.trends.iter().find_map(|t| {
                (trend_sample_type(t.metric) == (kind, sample_type))
                    .then_some(Threshold::Slope(t.threshold_per_second))
            })
        };
        let (panels, sites) = plots(&group, &threshold_of);
        section.panels.extend(panels);
        section.sites.extend(sites);
        let Some(latest) = group.last() else { continue };
        let base = summary
            .baseline_nanos
            .and_then(|t| group.iter().find(|p| p.time_nanos == t))
            .filter(|b| b.time_nanos != latest.time_nanos);
        section
            .flamegraphs
            .extend(flamegraphs(latest, base.copied(), &mut section.notes));
    }
    section.facts = facts(&all);
    section
}
