//! Goroutines in `record` profiles (sample type `goroutines` at each goroutine's current stack)
//! agree with Go's own goroutine profile of the same moment, and the runtime's memory figures read
//! from memory agree with the fixture's `runtime.ReadMemStats`, on every Go version and variant.

#![allow(unused_crate_dependencies)]

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::{Fixture, PidRecording, read_profile};
use gobinary::{
    GoBinary,
    layout::MemStatsLayout,
    runtime::{RuntimeImage, memstats},
};
use nix::sys::signal::Signal;
use pprof::{
    ResolvedProfile,
    vocabulary::{CommentKey, MemoryNumbers},
};
use timerscope_tests::{GoVersion, Variant, fixture_path};

/// The fixture's functions whose goroutines stay put while it runs (the leak's grow, by a few).
const STEADY: [&str; 7] = [
    "main.blockForever",
    "main.sleeper",
    "main.mutexWaiter",
    "main.chanWaiter",
    "main.condWaiter",
    "main.groupWaiter",
    "main.spawnLeaks",
];

/// Goroutines by stack (function names, leaf first) in `sample_type`, for stacks through one of
/// [`STEADY`].
fn stacks(profile: &ResolvedProfile, sample_type: &str) -> BTreeMap<Vec<String>, i64> {
    let index = profile
        .sample_index(Some(sample_type))
        .unwrap_or_else(|| panic!("no {sample_type} in the profile"));
    let mut stacks = BTreeMap::new();
    for sample in &profile.samples {
        if sample.values[index] == 0 {
            continue;
        }
        let functions: Vec<String> = profile.stack(sample).map(|f| f.function.clone()).collect();
        if functions.iter().any(|f| STEADY.contains(&f.as_str())) {
            *stacks.entry(functions).or_insert(0) += sample.values[index];
        }
    }
    stacks
}

fn snapshot(fixture: &mut Fixture, path: &Path) -> serde_json::Value {
    let reply = fixture.request(&format!("snapshot {}", path.display()));
    assert_eq!(reply["event"], "snapshot", "{reply}");
    reply
}

/// The `goroutines` samples of a recording equal Go's goroutine profile taken just before and just
/// after the recording read them, stack by stack.
fn goroutines_in_profiles_match_gos_own(go: &GoVersion) {
    for variant in Variant::ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut fixture = Fixture::spawn("goroutines", go, variant, &["leak", "-rate", "5"]);
        fixture.start_scenario_with_requests();
        fixture.summary();
        std::thread::sleep(Duration::from_millis(600));
        let output = dir.path().join("record.pb.gz");
        let recording =
            PidRecording::start(fixture.pid(), &output, &["--events", "none", "--no-c-heap"]);
        // record reads its end figures the moment it is stopped: give the leak (5 a second)
        // time to add goroutines after the start figures were read.
        std::thread::sleep(Duration::from_secs(1));
        let before_path = dir.path().join("before.pb.gz");
        let before_reply = snapshot(&mut fixture, &before_path);
        assert!(recording.stop_with(Signal::SIGINT).success());
        let after_path = dir.path().join("after.pb.gz");
        let after_reply = snapshot(&mut fixture, &after_path);
        let ours_profile = read_profile(&output);
        let comment = |key: CommentKey| {
            ours_profile
                .comment_value(key)
                .unwrap_or_else(|| {
                    panic!("{go} {variant}: no {key} in {:?}", ours_profile.comments)
                })
                .to_owned()
        };
        let read = comment(CommentKey::GoroutineSnapshot);
        if variant.stripped() {
            // No `.symtab`: the runtime's globals cannot be found, and the profile says so.
            assert!(read.starts_with("refused: "), "{go} {variant}: {read}");
            continue;
        }
        assert!(read.starts_with("ok "), "{go} {variant}: {read}");
        assert!(read.contains(" torn=0 "), "{go} {variant}: {read}");
        let ours = stacks(&ours_profile, "goroutines");
        let before = stacks(&read_profile(&before_path), "goroutine");
        let after = stacks(&read_profile(&after_path), "goroutine");
        assert!(!before.is_empty(), "{go} {variant}: Go's profile has none");
        for (stack, &low) in &before {
            let high = after.get(stack).copied().unwrap_or(0);
            let got = ours.get(stack).copied().unwrap_or(0);
            assert!(
                low.min(high) - 2 <= got && got <= low.max(high) + 2,
                "{go} {variant}: {got} goroutines at {stack:?}, Go saw {low} then {high}; ours: \
                 {ours:#?}"
            );
        }
        for (stack, &got) in &ours {
            assert!(
                before.contains_key(stack) || after.contains_key(stack) || got <= 2,
                "{go} {variant}: {got} goroutines at {stack:?}, which Go does not show: {before:#?}"
            );
        }
        // The leak's goroutines carry their wait reason and creating site.
        let leak = ours_profile
            .samples
            .iter()
            .find(|s| {
                ours_profile
                    .stack(s)
                    .any(|f| f.function == "main.blockForever")
            })
            .expect("leaked goroutines");
        assert_eq!(
            leak.str_label("wait_reason"),
            Some("select"),
            "{go} {variant}"
        );
        let (_, line) = common::fixture_site("goroutines", "leak-spawn");
        assert_eq!(
            leak.str_label("created_by"),
            Some(format!("main.spawnLeaks (main.go:{line})").as_str()),
            "{go} {variant}"
        );
        // The memory figures at the end, against the fixture's own a moment before.
        let end = MemoryNumbers::parse(&comment(CommentKey::MemoryEnd));
        let start = MemoryNumbers::parse(&comment(CommentKey::MemoryStart));
        let go_stats = &before_reply["memstats"];
        let theirs = |key: &str| go_stats[key].as_u64().unwrap();
        let near = |ours: Option<u64>, theirs: u64, slack: u64| {
            let ours = ours.unwrap_or_else(|| panic!("{go} {variant}: figure missing"));
            assert!(
                ours.abs_diff(theirs) <= slack,
                "{go} {variant}: {ours} read, fixture said {theirs}"
            );
        };
        near(end.heap_sys, theirs("heap_sys"), theirs("heap_sys") / 10);
        near(end.sys, theirs("sys"), theirs("sys") / 10);
        assert!(end.rss.unwrap() > 1 << 20 && start.rss.unwrap() > 1 << 20);
        // Read at the end of the recording, between the fixture's two counts (the leak goes on
        // meanwhile: how long stopping takes is not the point).
        let count = |reply: &serde_json::Value| reply["goroutines"].as_u64().unwrap();
        let (low, high) = (count(&before_reply), count(&after_reply));
        let ours = end.goroutines.expect("goroutine count at the end");
        assert!(
            low.saturating_sub(3) <= ours && ours <= high + 3,
            "{go} {variant}: {ours} goroutines read, the fixture counted {low} then {high}"
        );
        assert!(start.goroutines.unwrap() < end.goroutines.unwrap());
    }
}
per_go_version!(
    goroutines_in_profiles_match_gos_own,
    super::goroutines_in_profiles_match_gos_own
);

/// The figures read from memory are those the fixture's `runtime.ReadMemStats` gives in the same
/// moment: the footprint exactly up to what changes between the two reads, `HeapAlloc` up to what
/// the per-P caches have not flushed.
fn memstats_match_read_mem_stats(go: &GoVersion) {
    let path = fixture_path("goroutines", go, Variant::Normal).unwrap();
    let binary = GoBinary::open(&path).unwrap();
    let layout = MemStatsLayout::of_binary(&binary).unwrap();
    let mut fixture = Fixture::spawn(
        "goroutines",
        go,
        Variant::Normal,
        &["healthy", "-rate", "200"],
    );
    fixture.start_scenario_with_requests();
    fixture.summary();
    std::thread::sleep(Duration::from_millis(500));
    let image = RuntimeImage::attach(&binary, fixture.pid()).unwrap();
    // A figure that moved by more than its slack between the two ReadMemStats calls may have
    // moved both ways (heap_released rises as the scavenger works and falls as released pages
    // are reused): a read outside that bracket is retried, up to 20 times. A figure that held
    // still must match.
    let (mut matched, mut moved) = (0, Vec::new());
    while matched < 3 {
        assert!(moved.len() < 20, "{go}: figures kept moving: {moved:?}");
        let before = fixture.request("snapshot")["memstats"].clone();
        let ours = memstats::read(&image, &layout).unwrap();
        let after = fixture.request("snapshot")["memstats"].clone();
        let mut outside = None;
        let mut check = |name: &'static str, value: u64, slack: u64| {
            let (low, high) = (
                before[name].as_u64().unwrap(),
                after[name].as_u64().unwrap(),
            );
            if low.min(high).saturating_sub(slack) <= value && value <= low.max(high) + slack {
                return;
            }
            let message = format!("{go}: {name} {value} read, ReadMemStats said {low} then {high}");
            assert!(low.abs_diff(high) > slack, "{message}");
            outside.get_or_insert(message);
        };
        check("heap_inuse", ours.heap_inuse, 256 << 10);
        check("heap_sys", ours.heap_sys, 256 << 10);
        check("heap_released", ours.heap_released, 256 << 10);
        check("stack_inuse", ours.stack_inuse, 64 << 10);
        check("sys", ours.sys, 512 << 10);
        // Unflushed per-P caches: up to a span per size class in use per P.
        check("heap_alloc", ours.heap_alloc, 1 << 20);
        assert!(ours.heap_alloc > 0 && ours.heap_alloc <= ours.heap_inuse);
        assert!(ours.heap_inuse + ours.heap_released <= ours.heap_sys);
        match outside {
            Some(message) => moved.push(message),
            None => matched += 1,
        }
    }
}
per_go_version!(
    memstats_match_read_mem_stats,
    super::memstats_match_read_mem_stats
);

/// Each `watch` interval carries the goroutines at its end and the memory figures at both ends,
/// one interval's end being the next one's start.
#[test]
fn watch_intervals_carry_goroutines_and_memory_figures() {
    let go = timerscope_tests::reference_go();
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::spawn("goroutines", go, Variant::Normal, &["leak", "-rate", "50"]);
    fixture.start_scenario_with_requests();
    fixture.summary();
    let mut watch = std::process::Command::new(common::timerscope())
        .args([
            "watch",
            "--pid",
            &fixture.pid().to_string(),
            "--interval",
            "1s",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Intervals start once the probes are attached.
    let mut stderr = std::io::BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("watching pid") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "watch ended"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    std::thread::sleep(Duration::from_millis(3500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.id() as i32),
        Signal::SIGINT,
    )
    .unwrap();
    assert!(watch.wait().unwrap().success());
    let mut paths: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "{paths:?}");
    let mut previous_end: Option<String> = None;
    let mut leaked = Vec::new();
    for path in &paths {
        let profile = read_profile(path);
        let start = profile
            .comment_value(CommentKey::MemoryStart)
            .unwrap()
            .to_owned();
        let end = profile
            .comment_value(CommentKey::MemoryEnd)
            .unwrap()
            .to_owned();
        if let Some(previous) = &previous_end {
            assert_eq!(&start, previous, "{}", path.display());
        }
        assert!(MemoryNumbers::parse(&end).sys.unwrap() > 1 << 20);
        previous_end = Some(end);
        leaked.push(
            stacks(&profile, "goroutines")
                .iter()
                .filter(|(stack, _)| stack.iter().any(|f| f == "main.blockForever"))
                .map(|(_, n)| n)
                .sum::<i64>(),
        );
    }
    // The leak grows from interval to interval (50 a second).
    assert!(
        leaked.windows(2).all(|w| w[1] > w[0] + 20),
        "blocked goroutines by interval: {leaked:?}"
    );
}
