//! Goroutines and memory statistics read from a live fixture's memory agree with what the
//! fixture's own runtime reports (runtime.Stack, runtime.ReadMemStats) in the same moment, on
//! every Go version; the goroutine and memstats tables equal each release's DWARF.

#![allow(unused_crate_dependencies)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{Fixture, run_timerscope};
use gobinary::{
    GoBinary,
    layout::{GoroutineLayout, LayoutSource, MemStatsLayout},
};
use timerscope_tests::{GoVersion, Variant, fixture_path};

/// `"CREATED_BY|STATE" -> count` as the fixture's `sitesOf` counts them, from
/// `timerscope goroutines --json`.
fn sites_from_memory(pid: u32) -> BTreeMap<String, i64> {
    let output = run_timerscope(&["goroutines", "--pid", &pid.to_string(), "--json"]);
    assert!(
        output.status.success(),
        "timerscope goroutines: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["torn"], 0, "{report}");
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                format!(
                    "{}|{}",
                    g["created_by"].as_str().unwrap(),
                    g["state"].as_str().unwrap()
                ),
                g["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn sites_of(snapshot: &serde_json::Value) -> BTreeMap<String, i64> {
    snapshot["sites"]
        .as_object()
        .expect("sites")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect()
}

fn goroutines_match_the_fixtures_own_view(go: &GoVersion) {
    for variant in [Variant::Normal, Variant::Pie] {
        let mut fixture = Fixture::spawn("goroutines", go, variant, &["leak", "-rate", "40"]);
        fixture.start_scenario_with_requests();
        let summary = fixture.summary();
        assert_eq!(summary["event"], "summary");
        std::thread::sleep(Duration::from_millis(1500));
        let before = sites_of(&fixture.request("snapshot"));
        let ours = sites_from_memory(fixture.pid());
        let after = sites_of(&fixture.request("snapshot"));
        // The fixed goroutines (one per wait reason) are exactly the fixture's.
        for (key, &n) in before
            .iter()
            .filter(|(k, _)| k.starts_with("main.startBackground"))
        {
            assert_eq!(ours.get(key), Some(&n), "{go} {variant}: {key} in {ours:?}");
        }
        // The leak grows while it is read: between the two snapshots, a few apart at most.
        let leak_key = before
            .keys()
            .find(|k| k.starts_with("main.spawnLeaks") && k.ends_with("|select"))
            .unwrap_or_else(|| panic!("{go}: no leak site in {before:?}"))
            .clone();
        let (low, high, got) = (before[&leak_key], after[&leak_key], ours[&leak_key]);
        assert!(
            low - 2 <= got && got <= high + 2 && got > 20,
            "{go} {variant}: {got} leaked goroutines read, fixture saw {low} then {high}"
        );
    }
}
per_go_version!(
    goroutines_match_the_fixtures_own_view,
    super::goroutines_match_the_fixtures_own_view
);

/// The tables stripped binaries use give what each release's DWARF says.
fn goroutine_and_memstats_tables_match_dwarf(go: &GoVersion) {
    let binary = GoBinary::open(&fixture_path("goroutines", go, Variant::Normal).unwrap()).unwrap();
    let g = GoroutineLayout::of_binary(&binary).unwrap();
    assert_eq!(g.source, LayoutSource::Dwarf, "{go}");
    assert_eq!(
        GoroutineLayout {
            source: LayoutSource::Table,
            ..g
        },
        GoroutineLayout::of_version(binary.version()).unwrap(),
        "{go}"
    );
    let m = MemStatsLayout::of_binary(&binary).unwrap();
    assert_eq!(m.source, LayoutSource::Dwarf, "{go}");
    assert_eq!(
        MemStatsLayout {
            source: LayoutSource::Table,
            ..m
        },
        MemStatsLayout::of_version(binary.version()).unwrap(),
        "{go}"
    );
}
per_go_version!(
    goroutine_and_memstats_tables_match_dwarf,
    super::goroutine_and_memstats_tables_match_dwarf
);
