//! Series over time of a process's profiles, for plots: each sample type's total per profile
//! (levels such as live timers, and event counts as rates per second), the same per user-code
//! site for the sites that hold the most, with the trend fitted to each and the level the
//! classifier judges it against. Driven by the sample types the profiles have, so a new one is
//! plotted without code here knowing it.

use pprof::ResolvedProfile;
use pprof::vocabulary::SyntheticFrame;

use crate::classify::{BYTES_SLOPE_LEAK, LIVE_MEDIUM, per_site, points};
use crate::trend::{self, Trend};

/// How a sample type's values read over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// What existed at the profile's end (live timers, pending timers, in-use bytes,
    /// goroutines): plotted as is.
    Level,
    /// What happened during the profile's window (timers created, bytes mapped, CPU time):
    /// plotted per second of the window; profiles without a duration have no rate.
    Rate,
}

impl Measure {
    /// The measure of a sample type, by its name: levels say what is live, pending or in use,
    /// or count goroutines (timerscope's `timers_live`, `timers_pending`, `mmap_live_bytes`,
    /// `goroutines`, Go's `inuse_space`, `goroutine`); everything else counts events.
    pub fn of(sample_type: &str) -> Measure {
        let level = ["live", "pending", "inuse"]
            .iter()
            .any(|word| sample_type.split('_').any(|part| part == *word))
            || sample_type.starts_with("goroutine");
        if level { Measure::Level } else { Measure::Rate }
    }
}

/// The level the analysis judges a series against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A value (per site: live timers from which a finding is medium).
    Level(f64),
    /// A growth per second (live bytes faster than this are a leak).
    Slope(f64),
}

/// One quantity over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub sample_type: String,
    /// The sample type's unit; per second for rates.
    pub unit: String,
    pub measure: Measure,
    /// (time in nanoseconds since the epoch, value): the end of each profile's window.
    pub points: Vec<(i64, f64)>,
    pub trend: Trend,
    pub threshold: Option<Threshold>,
}

impl Series {
    /// Whether any point is not zero.
    pub fn has_data(&self) -> bool {
        self.points.iter().any(|p| p.1 != 0.0)
    }
}

/// One user-code site's series of one sample type.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteSeries {
    pub function: String,
    pub file: String,
    pub line: i64,
    pub series: Series,
}

/// The threshold the classifier applies to the total of a level series: live bytes growing
/// faster than the leak rate.
fn total_threshold(unit: &str, measure: Measure) -> Option<Threshold> {
    (measure == Measure::Level && unit == "bytes").then_some(Threshold::Slope(BYTES_SLOPE_LEAK))
}

/// The threshold of one site's series: live or pending timers at one site from the level of a
/// medium finding, bytes as for totals.
fn site_threshold(sample_type: &str, unit: &str, measure: Measure) -> Option<Threshold> {
    if measure == Measure::Level && sample_type.starts_with("timers_") {
        return Some(Threshold::Level(LIVE_MEDIUM));
    }
    total_threshold(unit, measure)
}

fn sorted<'a>(profiles: &[&'a ResolvedProfile]) -> Vec<&'a ResolvedProfile> {
    let mut series = profiles.to_vec();
    series.sort_by_key(|p| p.time_nanos);
    series
}

/// A profile's value per second of its window (rates), or as is (levels); `None` for a rate of
/// a profile that has no duration.
fn scaled(profile: &ResolvedProfile, measure: Measure, value: f64) -> Option<f64> {
    match measure {
        Measure::Level => Some(value),
        Measure::Rate if profile.duration_nanos > 0 => {
            Some(value / (profile.duration_nanos as f64 / 1e9))
        }
        Measure::Rate => None,
    }
}

fn series_of(
    sample_type: &str,
    unit: &str,
    profiles: &[&ResolvedProfile],
    values: &[f64],
    threshold: impl Fn(&str, Measure) -> Option<Threshold>,
) -> Option<Series> {
    let measure = Measure::of(sample_type);
    let all = points(profiles, values);
    let points: Vec<(i64, f64)> = profiles
        .iter()
        .zip(all)
        .filter_map(|(p, (t, v))| Some((t, scaled(p, measure, v)?)))
        .collect();
    if points.is_empty() {
        return None;
    }
    let unit = match measure {
        Measure::Level => unit.to_owned(),
        Measure::Rate => format!("{unit}/s"),
    };
    Some(Series {
        sample_type: sample_type.to_owned(),
        threshold: threshold(&unit, measure),
        unit,
        measure,
        trend: trend::fit(&points),
        points,
    })
}

/// The total of every sample type of `profiles` (profiles of one kind of one process, in any
/// order), in the order of the first profile's sample types. Rates need profiles with a
/// duration; sample types with no point are left out.
pub fn totals(profiles: &[&ResolvedProfile]) -> Vec<Series> {
    let profiles = sorted(profiles);
    let Some(first) = profiles.first() else {
        return Vec::new();
    };
    first
        .sample_types
        .iter()
        .filter_map(|kind| {
            let values: Vec<f64> = profiles
                .iter()
                .map(|p| {
                    p.sample_index(Some(&kind.ty))
                        .map_or(0.0, |i| p.total(i) as f64)
                })
                .collect();
            series_of(&kind.ty, &kind.unit, &profiles, &values, |unit, measure| {
                total_threshold(unit, measure)
            })
        })
        .collect()
}

/// The `limit` user-code sites holding the most of `sample_type` in the newest profile (for
/// levels; for rates, in the busiest profile), each with its series. Mappings older than the
/// recording belong to no site and are left out.
pub fn top_sites(
    profiles: &[&ResolvedProfile],
    sample_type: &str,
    limit: usize,
) -> Vec<SiteSeries> {
    let profiles = sorted(profiles);
    let Some(unit) = profiles.first().and_then(|p| {
        p.sample_types
            .iter()
            .find(|k| k.ty == sample_type)
            .map(|k| k.unit.clone())
    }) else {
        return Vec::new();
    };
    let pre_existing = SyntheticFrame::PreExisting.as_str();
    let sites = per_site(&profiles, sample_type, |_, _, site| {
        (site.function != pre_existing).then_some(site)
    });
    let mut ranked: Vec<SiteSeries> = sites
        .into_iter()
        .filter_map(|(site, values)| {
            let mut values = values.values;
            values.resize(profiles.len(), 0.0);
            let series = series_of(sample_type, &unit, &profiles, &values, |unit, measure| {
                site_threshold(sample_type, unit, measure)
            })?;
            Some(SiteSeries {
                function: site.function,
                file: site.file,
                line: site.line,
                series,
            })
        })
        .filter(|s| s.series.has_data())
        .collect();
    let rank = |s: &SiteSeries| match s.series.measure {
        Measure::Level => s.series.points.last().map_or(0.0, |p| p.1),
        Measure::Rate => s.series.points.iter().map(|p| p.1).fold(0.0, f64::max),
    };
    ranked.sort_by(|a, b| {
        rank(b)
            .total_cmp(&rank(a))
            .then_with(|| a.function.cmp(&b.function))
    });
    ranked.truncate(limit);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use pprof::{Frame, ProfileBuilder};

    const SECOND: i64 = 1_000_000_000;

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            file: "/src/app/main.go".to_owned(),
            line,
            ..Frame::default()
        }
    }

    /// An interval of one second ending at `i + 1` s: `live` timers at main.leak, 5 at
    /// main.steady, and `created` creations at main.leak.
    fn interval(i: i64, live: i64, created: i64) -> ResolvedProfile {
        let mut b = ProfileBuilder::new(
            &[("timers_created", "count"), ("timers_live", "count")],
            "timers_live",
        );
        let leak = b.location(0, 0x10, &[frame("time.After", 1), frame("main.leak", 22)]);
        let steady = b.location(0, 0x20, &[frame("main.steady", 40)]);
        b.add_sample(&[leak], &[created, live], &[]);
        b.add_sample(&[steady], &[0, 5], &[]);
        let mut profile = b.build().unwrap();
        profile.time_nanos = i * SECOND;
        profile.duration_nanos = SECOND;
        ResolvedProfile::new(&profile)
    }

    #[test]
    fn levels_plot_as_is_and_counts_per_second() {
        assert_eq!(Measure::of("timers_live"), Measure::Level);
        assert_eq!(Measure::of("timers_pending"), Measure::Level);
        assert_eq!(Measure::of("c_heap_live_bytes"), Measure::Level);
        assert_eq!(Measure::of("inuse_space"), Measure::Level);
        assert_eq!(Measure::of("goroutines"), Measure::Level);
        assert_eq!(Measure::of("goroutine"), Measure::Level);
        assert_eq!(Measure::of("timers_created"), Measure::Rate);
        assert_eq!(Measure::of("mmap_bytes"), Measure::Rate);
        assert_eq!(Measure::of("alloc_space"), Measure::Rate);
        // A profile without a duration has no rate of anything.
        let mut snapshot = interval(0, 1, 1);
        snapshot.duration_nanos = 0;
        let only: Vec<String> = totals(&[&snapshot])
            .into_iter()
            .map(|s| s.sample_type)
            .collect();
        assert_eq!(only, ["timers_live"]);
    }

    #[test]
    fn totals_and_top_sites_follow_the_growing_site() {
        let profiles: Vec<ResolvedProfile> = (0..4)
            .map(|i| interval(i, 100 * (i + 1), 2 * 100))
            .collect();
        let refs: Vec<&ResolvedProfile> = profiles.iter().rev().collect();
        let totals = totals(&refs);
        let live = totals
            .iter()
            .find(|s| s.sample_type == "timers_live")
            .unwrap();
        assert_eq!(live.unit, "count");
        let values: Vec<f64> = live.points.iter().map(|p| p.1).collect();
        assert_eq!(values, [105.0, 205.0, 305.0, 405.0], "in time order");
        assert_eq!(live.points[0].0, SECOND, "at the end of the first window");
        assert_eq!(live.trend.slope_per_second, Some(100.0));
        assert_eq!(live.trend.intercept, Some(105.0));
        let created = totals
            .iter()
            .find(|s| s.sample_type == "timers_created")
            .unwrap();
        assert_eq!(created.unit, "count/s");
        assert!(created.points.iter().all(|p| p.1 == 200.0));

        let sites = top_sites(&refs, "timers_live", 1);
        assert_eq!(sites.len(), 1);
        assert_eq!(
            (sites[0].function.as_str(), sites[0].line),
            ("main.leak", 22)
        );
        assert!(sites[0].series.trend.keeps_rising);
        assert_eq!(
            sites[0].series.threshold,
            Some(Threshold::Level(LIVE_MEDIUM))
        );
        let both = top_sites(&refs, "timers_live", 5);
        assert_eq!(both[1].function, "main.steady");
        assert!(top_sites(&refs, "no_such_type", 5).is_empty());
    }
}
