//! Timer and mmap rules on timerscope-shaped profiles, for each Go runtime the issue names.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use analyzer::classify::{ClassifyReport, FindingKind, Severity, classify};
use common::*;
use pprof::{ResolvedProfile, write_atomic};
use timerscope::commands::classify::{
    ClassifyOptions, exit_status as classify_exit_status, run_classify,
};
use timerscope::render::to_json;

const LEAKS_GO: &str = "/src/app/leaks.go";
const SLEEP_GO: &str = "/usr/local/go/src/time/sleep.go";

fn user(function: &str, line: i64) -> Vec<pprof::Frame> {
    vec![frame(function, LEAKS_GO, line)]
}

struct Expected {
    kind: FindingKind,
    site: TimerSite,
    /// Whether the rule applies on a runtime (channel timers are collected on Go ≥ 1.23 sync).
    applies: fn(GoRuntime) -> bool,
}

fn leak_fixture() -> Vec<Expected> {
    let retained: fn(GoRuntime) -> bool = GoRuntime::retains_channel_timers;
    let always: fn(GoRuntime) -> bool = |_| true;
    let mut context_site = TimerSite::new(
        "afterfunc",
        vec![
            frame("time.AfterFunc", SLEEP_GO, 176),
            frame(
                "context.WithDeadlineCause",
                "/usr/local/go/src/context/context.go",
                618,
            ),
            frame(
                "context.WithDeadline",
                "/usr/local/go/src/context/context.go",
                598,
            ),
            frame(
                "context.WithTimeout",
                "/usr/local/go/src/context/context.go",
                691,
            ),
        ],
        user("main.handle", 88),
    )
    .counts(1200, 0, 0);
    context_site.callback = Some("context.WithDeadlineCause.func2");
    let mut retry = TimerSite::new(
        "afterfunc",
        vec![frame("time.AfterFunc", SLEEP_GO, 176)],
        user("main.scheduleRetry", 70),
    )
    .counts(800, 0, 100);
    retry.callback = Some("main.scheduleRetry.func1");
    vec![
        Expected {
            kind: FindingKind::TimerAfterInLoop,
            site: TimerSite::new(
                "timer",
                vec![
                    frame("time.NewTimer", SLEEP_GO, 86),
                    frame("time.After", SLEEP_GO, 156),
                ],
                user("main.poll", 23),
            )
            .counts(20_000, 0, 14_000),
            applies: retained,
        },
        Expected {
            kind: FindingKind::TickerNotStopped,
            site: TimerSite::new(
                "ticker",
                vec![frame(
                    "time.NewTicker",
                    "/usr/local/go/src/time/tick.go",
                    38,
                )],
                user("main.startWorker", 41),
            )
            .counts(500, 0, 0),
            applies: retained,
        },
        Expected {
            kind: FindingKind::TimerNotStopped,
            site: TimerSite::new(
                "timer",
                vec![frame("time.NewTimer", SLEEP_GO, 86)],
                user("main.deadlineFor", 57),
            )
            .counts(3000, 0, 0),
            applies: retained,
        },
        Expected {
            kind: FindingKind::AfterfuncPending,
            site: retry,
            applies: always,
        },
        Expected {
            kind: FindingKind::AfterfuncPending,
            site: context_site,
            applies: always,
        },
        Expected {
            kind: FindingKind::TimerFireDelay,
            site: TimerSite::new(
                "timer",
                vec![frame("time.NewTimer", SLEEP_GO, 86)],
                user("main.pace", 101),
            )
            .counts(200, 0, 200)
            .delay(200 * 250_000_000),
            applies: always,
        },
    ]
}

/// A program that uses timers correctly: everything it creates is stopped or fires promptly, and
/// one heartbeat ticker lives for the whole run.
fn healthy_sites() -> Vec<TimerSite> {
    vec![
        TimerSite::new(
            "timer",
            vec![frame("time.NewTimer", SLEEP_GO, 86)],
            user("main.withTimeout", 130),
        )
        .counts(1000, 1000, 0),
        TimerSite::new(
            "ticker",
            vec![frame(
                "time.NewTicker",
                "/usr/local/go/src/time/tick.go",
                38,
            )],
            user("main.heartbeat", 140),
        )
        .counts(1, 0, 0),
        TimerSite::new(
            "afterfunc",
            vec![frame("time.AfterFunc", SLEEP_GO, 176)],
            user("main.debounce", 150),
        )
        .counts(300, 0, 300)
        .delay(300 * 200_000),
        TimerSite::new(
            "sleep",
            vec![frame("time.Sleep", SLEEP_GO, 16)],
            user("main.backoff", 160),
        )
        .counts(400, 0, 400)
        .delay(400 * 300_000),
    ]
}

fn classify_profiles(profiles: &[pprof::Profile]) -> ClassifyReport {
    let resolved: Vec<ResolvedProfile> = profiles.iter().map(ResolvedProfile::new).collect();
    let report = classify(&resolved);
    assert_matches_schema(&to_json(&report));
    report
}

#[test]
fn each_timer_finding_kind_at_its_site_on_each_runtime() {
    let fixture = leak_fixture();
    let sites: Vec<TimerSite> = fixture.iter().map(|e| e.site.clone()).collect();
    for runtime in RUNTIMES {
        let report = classify_profiles(&[timer_profile(runtime, T0, &sites)]);
        for expected in &fixture {
            let site = &expected.site.user[0];
            let found: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.function == site.function)
                .collect();
            if !(expected.applies)(runtime) {
                assert!(
                    found.is_empty(),
                    "{runtime:?}: no finding expected at {}: {found:?}",
                    site.function
                );
                continue;
            }
            assert_eq!(
                found.len(),
                1,
                "{runtime:?}: one finding at {}: {report:#?}",
                site.function
            );
            let f = found[0];
            assert_eq!(f.kind, expected.kind, "{runtime:?} {}", site.function);
            assert_eq!((f.file.as_str(), f.line), (site.file.as_str(), site.line));
            if expected.kind != FindingKind::TimerFireDelay {
                assert!(
                    f.evidence.contains(&expected.site.live.to_string()),
                    "evidence names the live count {}: {}",
                    expected.site.live,
                    f.evidence
                );
            }
        }
        let expected_count = fixture.iter().filter(|e| (e.applies)(runtime)).count();
        assert_eq!(
            report.findings.len(),
            expected_count,
            "{runtime:?}: {report:#?}"
        );
    }
}

#[test]
fn context_timers_get_the_cancel_suggestion() {
    let fixture = leak_fixture();
    let sites: Vec<TimerSite> = fixture.iter().map(|e| e.site.clone()).collect();
    let report = classify_profiles(&[timer_profile(RUNTIMES[4], T0, &sites)]);
    let by_function = |name: &str| report.findings.iter().find(|f| f.function == name).unwrap();
    assert!(by_function("main.handle").suggestion.contains("cancel"));
    assert!(
        !by_function("main.scheduleRetry")
            .suggestion
            .contains("cancel")
    );
    let delay = by_function("main.pace");
    assert_eq!(delay.severity, Severity::Medium, "250 ms mean lateness");
    assert!(delay.evidence.contains("250.0 ms"), "{}", delay.evidence);
}

#[test]
fn healthy_timer_program_has_no_findings() {
    for runtime in RUNTIMES {
        let single = classify_profiles(&[timer_profile(runtime, T0, &healthy_sites())]);
        assert!(single.findings.is_empty(), "{runtime:?}: {single:#?}");
        let series: Vec<_> = (1..=4)
            .map(|i| {
                let sites: Vec<TimerSite> = healthy_sites()
                    .iter()
                    .map(|s| {
                        if s.kind == "ticker" {
                            s.clone()
                        } else {
                            s.scaled(i)
                        }
                    })
                    .collect();
                timer_profile(runtime, T0 + i * 10 * SECOND, &sites)
            })
            .collect();
        let report = classify_profiles(&series);
        assert!(report.findings.is_empty(), "{runtime:?}: {report:#?}");
    }
}

#[test]
fn live_timers_rising_over_three_profiles_is_a_leak_even_at_low_counts() {
    let site = TimerSite::new(
        "afterfunc",
        vec![frame("time.AfterFunc", SLEEP_GO, 176)],
        user("main.slowLeak", 200),
    )
    .counts(3, 0, 0);
    for runtime in RUNTIMES {
        let profiles: Vec<_> = (1..=4)
            .map(|i| timer_profile(runtime, T0 + i * 5 * SECOND, &[site.scaled(i)]))
            .collect();
        // Given out of order: classify sorts by time.
        let shuffled = [
            profiles[2].clone(),
            profiles[0].clone(),
            profiles[3].clone(),
            profiles[1].clone(),
        ];
        let report = classify_profiles(&shuffled);
        assert_eq!(report.findings.len(), 1, "{runtime:?}: {report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.kind, FindingKind::AfterfuncPending);
        assert_eq!(f.severity, Severity::Medium);
        assert!(f.evidence.contains("from 3 to 12"), "{}", f.evidence);
        assert!(
            f.evidence.contains("0.6/s") || f.evidence.contains("1/s"),
            "rate in evidence: {}",
            f.evidence
        );

        let two = classify_profiles(&profiles[..2]);
        assert!(
            two.findings.is_empty(),
            "two low points are no trend: {two:#?}"
        );
        let mut recovered = [profiles[3].clone(), profiles[0].clone()];
        recovered[1].time_nanos = recovered[0].time_nanos + SECOND;
        let recovered = classify_profiles(&recovered);
        assert!(
            recovered.findings.is_empty(),
            "12 then 3 live is no leak: {recovered:#?}"
        );
    }
}

#[test]
fn tickers_without_version_comments_are_judged_conservatively() {
    let ticker = TimerSite::new(
        "ticker",
        vec![frame(
            "time.NewTicker",
            "/usr/local/go/src/time/tick.go",
            38,
        )],
        user("main.poller", 12),
    )
    .counts(150, 0, 0);
    let mut profile = timer_profile(RUNTIMES[4], T0, &[ticker]);
    profile.comment.clear();
    let report = classify_profiles(&[profile]);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].kind, FindingKind::TickerNotStopped);
    assert_eq!(report.findings[0].severity, Severity::Medium);
    assert!(
        report.findings[0].evidence.contains("no Go version"),
        "{}",
        report.findings[0].evidence
    );
}

#[test]
fn kind_is_inferred_from_the_stack_when_the_label_is_missing() {
    let fixture = leak_fixture();
    let ticker = &fixture[1].site;
    let mut profile = timer_profile(RUNTIMES[0], T0, std::slice::from_ref(ticker));
    for sample in &mut profile.sample {
        sample.label.clear();
    }
    let report = classify_profiles(&[profile]);
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    assert_eq!(report.findings[0].kind, FindingKind::TickerNotStopped);
}

fn mmap_series(runtime: GoRuntime, growth_per_profile: i64) -> Vec<pprof::Profile> {
    (0..4)
        .map(|i| {
            let sites = [
                MmapSite {
                    user: user("main.growArena", 120),
                    mapping_label: "[anon]",
                    mapped: (8 << 20) + i * growth_per_profile,
                    unmapped: 0,
                },
                MmapSite {
                    user: user("main.scratch", 125),
                    mapping_label: "[anon]",
                    mapped: (i + 1) * (64 << 20),
                    unmapped: (i + 1) * (64 << 20),
                },
            ];
            mmap_profile(runtime, T0 + i * SECOND, &sites)
        })
        .collect()
}

#[test]
fn mmap_growth_names_the_growing_site_and_spares_balanced_ones() {
    for runtime in RUNTIMES {
        let report = classify_profiles(&mmap_series(runtime, 2 << 20));
        assert_eq!(report.findings.len(), 1, "{runtime:?}: {report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.kind, FindingKind::MmapGrowth);
        assert_eq!((f.function.as_str(), f.line), ("main.growArena", 120));
        assert_eq!(f.severity, Severity::High, "keeps rising over 4 profiles");
        assert!(f.evidence.contains("2.0 MiB/s"), "{}", f.evidence);

        let slow = classify_profiles(&mmap_series(runtime, 256 << 10));
        assert!(
            slow.findings.is_empty(),
            "0.25 MiB/s is below the leak slope: {slow:#?}"
        );
        let flat = classify_profiles(&mmap_series(runtime, 0));
        assert!(flat.findings.is_empty(), "{flat:#?}");
        // One recording is a window of its own: what its sites mapped and kept is named, at
        // medium (no trend yet); the balanced site is not.
        let single = classify_profiles(&mmap_series(runtime, 2 << 20)[3..]);
        assert_eq!(single.findings.len(), 1, "{runtime:?}: {single:#?}");
        let f = &single.findings[0];
        assert_eq!(f.kind, FindingKind::MmapGrowth);
        assert_eq!(
            (f.function.as_str(), f.severity),
            ("main.growArena", Severity::Medium)
        );
        assert!(f.evidence.contains("during one"), "{}", f.evidence);
    }
}

#[test]
fn evidence_says_which_way_the_live_count_moved() {
    let site = |live| {
        TimerSite::new(
            "afterfunc",
            vec![frame("time.AfterFunc", SLEEP_GO, 176)],
            user("main.retry", 210),
        )
        .counts(live, 0, 0)
    };
    let runtime = RUNTIMES[0];
    for (counts, words) in [
        ([200, 150], "fell from 200 to 150"),
        ([150, 150], "stayed at 150"),
        ([150, 200], "rose from 150 to 200"),
    ] {
        let profiles: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(i, &live)| timer_profile(runtime, T0 + i as i64 * SECOND, &[site(live)]))
            .collect();
        let report = classify_profiles(&profiles);
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let evidence = &report.findings[0].evidence;
        assert!(evidence.contains(words), "{counts:?}: {evidence}");
    }
}

/// Three separate 3 s recordings, 1 s apart, of a process whose `main.growArena` maps
/// `kept_per_recording` bytes during each that stay mapped. Each recording sees only its own
/// mappings at `main.growArena`; the older ones are `[pre-existing]` in later recordings.
fn windowed_mmap_series(
    runtime: GoRuntime,
    kept_per_recording: i64,
    scratch: i64,
) -> Vec<pprof::Profile> {
    (0..3)
        .map(|i| {
            let sites = [
                MmapSite {
                    user: user("main.growArena", 120),
                    mapping_label: "anon",
                    mapped: kept_per_recording,
                    unmapped: 0,
                },
                MmapSite {
                    user: user("main.scratch", 125),
                    mapping_label: "anon",
                    mapped: scratch,
                    unmapped: scratch,
                },
            ];
            let pre_existing = (64 << 20) + i * kept_per_recording;
            windowed_mmap_profile(
                runtime,
                T0 + i * 4 * SECOND,
                3 * SECOND,
                pre_existing,
                &sites,
            )
        })
        .collect()
}

#[test]
fn mmap_growth_over_separate_recordings_names_the_mapping_call_not_pre_existing() {
    for runtime in RUNTIMES {
        // 6 MiB kept per 3 s recording: 2 MiB/s at the site.
        let report = classify_profiles(&windowed_mmap_series(runtime, 6 << 20, 32 << 20));
        assert_eq!(report.findings.len(), 1, "{runtime:?}: {report:#?}");
        let f = &report.findings[0];
        assert_eq!(f.kind, FindingKind::MmapGrowth);
        assert_eq!((f.function.as_str(), f.line), ("main.growArena", 120));
        assert_eq!(f.severity, Severity::High, "kept bytes in all 3 recordings");
        assert!(
            f.evidence.contains("6.0, 6.0, 6.0 MiB") && f.evidence.contains("2.0 MiB/s"),
            "{}",
            f.evidence
        );

        let balanced = classify_profiles(&windowed_mmap_series(runtime, 0, 32 << 20));
        assert!(balanced.findings.is_empty(), "{balanced:#?}");

        // Growth only before and between the recordings: no call site to name, said in a note.
        let mut between = windowed_mmap_series(runtime, 6 << 20, 0);
        for profile in &mut between {
            profile.sample.retain(|s| s.location_id.len() == 1);
        }
        let report = classify_profiles(&between);
        assert!(report.findings.is_empty(), "{report:#?}");
        assert!(
            report.notes.iter().any(|n| n.contains("before or between")),
            "{report:#?}"
        );
    }
}

/// Three contiguous 3 s intervals of one attachment (`timerscope watch`): sites keep what they
/// mapped since the attachment, and `[pre-existing]` stays as it was.
fn one_attachment_mmap_series(runtime: GoRuntime) -> Vec<pprof::Profile> {
    (0..3)
        .map(|i| {
            let sites = [
                MmapSite {
                    user: user("main.growArena", 120),
                    mapping_label: "anon",
                    mapped: (i + 1) * (6 << 20),
                    unmapped: 0,
                },
                // Mapped once, early, and kept: a fixed-size cache, not a leak.
                MmapSite {
                    user: user("main.cache", 130),
                    mapping_label: "anon",
                    mapped: 32 << 20,
                    unmapped: 0,
                },
            ];
            windowed_mmap_profile(runtime, T0 + i * 3 * SECOND, 3 * SECOND, 64 << 20, &sites)
        })
        .collect()
}

#[test]
fn mmap_growth_over_one_attachment_fits_the_sites_own_trend() {
    for runtime in RUNTIMES {
        let report = classify_profiles(&one_attachment_mmap_series(runtime));
        assert_eq!(report.findings.len(), 1, "{runtime:?}: {report:#?}");
        let f = &report.findings[0];
        assert_eq!((f.function.as_str(), f.line), ("main.growArena", 120));
        assert!(
            f.evidence.contains("from 6.0 MiB to 18.0 MiB") && f.evidence.contains("2.0 MiB/s"),
            "{}",
            f.evidence
        );
    }
}

#[test]
fn classify_cli_with_baseline_dir_and_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let site = TimerSite::new(
        "afterfunc",
        vec![frame("time.AfterFunc", SLEEP_GO, 176)],
        user("main.slowLeak", 200),
    )
    .counts(2, 0, 0);
    let runtime = RUNTIMES[2];
    // Baselines in the store: the newest of the same binary is at 2 s.
    for (name, i) in [("a.pb.gz", 1), ("b.pb.gz", 2)] {
        write_atomic(
            &store.join(name),
            &timer_profile(runtime, T0 + i * SECOND, &[site.scaled(i)]),
        )
        .unwrap();
    }
    let mut other_binary = timer_profile(runtime, T0 + 3 * SECOND, &[site.scaled(3)]);
    let build_id_index = other_binary.mapping[0].build_id as usize;
    other_binary.string_table[build_id_index] = "ffff".to_owned();
    write_atomic(&store.join("other.pb.gz"), &other_binary).unwrap();
    std::fs::write(store.join("README"), "not a profile").unwrap();

    let current = dir.path().join("now.pb.gz");
    let later = dir.path().join("later.pb.gz");
    write_atomic(
        &current,
        &timer_profile(runtime, T0 + 4 * SECOND, &[site.scaled(3)]),
    )
    .unwrap();
    write_atomic(
        &later,
        &timer_profile(runtime, T0 + 5 * SECOND, &[site.scaled(4)]),
    )
    .unwrap();

    let options = ClassifyOptions {
        profiles: vec![current.clone(), later.clone()],
        baseline: Some(store.clone()),
        limits: Default::default(),
    };
    let report = run_classify(&options).unwrap();
    // Points 4 (b.pb.gz), 6, 8: rising over three profiles. With a.pb.gz (2) or other (6)
    // chosen instead, the evidence would start elsewhere.
    assert_eq!(report.findings.len(), 1, "{report:#?}");
    assert!(
        report.findings[0].evidence.contains("from 4 to 8"),
        "{}",
        report.findings[0].evidence
    );
    assert_eq!(classify_exit_status(&report, Some(Severity::Medium)), 3);
    assert_eq!(classify_exit_status(&report, Some(Severity::High)), 0);
    assert_eq!(classify_exit_status(&report, None), 0);

    let without = run_classify(&ClassifyOptions {
        baseline: None,
        ..options.clone()
    })
    .unwrap();
    assert!(
        without.findings.is_empty(),
        "two points below the level thresholds: {without:#?}"
    );

    let file_baseline = run_classify(&ClassifyOptions {
        baseline: Some(store.join("a.pb.gz")),
        ..options.clone()
    })
    .unwrap();
    assert!(file_baseline.findings[0].evidence.contains("from 2 to 8"));

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = run_classify(&ClassifyOptions {
        baseline: Some(empty),
        ..options
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains(common::BUILD_ID), "{err:#}");
    assert_eq!(timerscope::exit::analysis_status(&err), 2);
}
