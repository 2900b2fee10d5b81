//! Goroutines and memory statistics read from a live fixture's memory agree with what the
//! fixture's own runtime reports (runtime.Stack, runtime.ReadMemStats) in the same moment, on
//! every Go version; the goroutine and memstats tables equal each release's DWARF.

#![allow(unused_crate_dependencies)]

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::Fixture;
use gobinary::{
    GoBinary,
    layout::{GoroutineLayout, LayoutSource, MemStatsLayout},
    runtime::{RuntimeImage, goroutines},
};
use timerscope_tests::{GoVersion, Variant, fixture_path};

/// `"CREATED_BY|STATE" -> count` as the fixture's `sitesOf` counts them, from memory.
fn sites_from_memory(binary: &GoBinary, pid: u32) -> BTreeMap<String, i64> {
    let image = RuntimeImage::attach(binary, pid).expect("attach");
    let layout = GoroutineLayout::of_binary(binary).expect("layout");
    let read = goroutines::read(&image, &layout).expect("goroutines read");
    let pclntab = binary.pclntab.as_ref().expect("pclntab");
    let mut sites = BTreeMap::new();
    for g in &read.goroutines {
        let start = image.function_name(g.startpc).unwrap_or_default();
        if goroutines::is_system(&start) {
            continue;
        }
        let pc = image.link_address(g.gopc).wrapping_sub(1);
        let creator = pclntab.function_containing(pc).map(|f| f.name.to_owned());
        let created_by = match (creator, pclntab.frames(pc).first()) {
            (Some(function), Some(frame)) if goroutines::shows_creator(g.goid, &function) => {
                let file = Path::new(frame.file).file_name().unwrap().to_string_lossy();
                format!("{function} ({file}:{})", frame.line)
            }
            _ => String::new(),
        };
        *sites
            .entry(format!("{created_by}|{}", g.state))
            .or_insert(0) += 1;
    }
    sites
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
        let binary = GoBinary::open(&fixture_path("goroutines", go, variant).unwrap()).unwrap();
        let mut fixture = Fixture::spawn("goroutines", go, variant, &["leak", "-rate", "40"]);
        fixture.start_scenario_with_requests();
        let summary = fixture.summary();
        assert_eq!(summary["event"], "summary");
        std::thread::sleep(Duration::from_millis(1500));
        let before = sites_of(&fixture.request("snapshot"));
        let ours = sites_from_memory(&binary, fixture.pid());
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
