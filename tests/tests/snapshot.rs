//! The snapshot tier: the pending timers read from the runtime's heaps in a live process's
//! memory equal what the `pending` fixture knows it left pending, by kind and by AfterFunc
//! callback, on every Go toolchain and build variant (stripped binaries find `runtime.allp`
//! through their code, PIE ones through the load bias).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    collections::BTreeMap,
    io::BufReader,
    path::Path,
    process::{Command, Stdio},
};

use common::read_json_line;
use gobinary::{GoBinary, runtime::timers};
use pprof::vocabulary::TimerKind;
use timerscope_tests::{GoVersion, Variant, fixture_path};

fn pending_timers_match_the_fixture(go: &GoVersion) {
    for variant in Variant::ALL {
        // Without -wait-stdin it makes its timers at once; they stay pending until its stdin
        // (held open here) closes.
        let mut fixture =
            Command::new(fixture_path("pending", go, variant).expect("fixture built"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
        let _stdin = fixture.stdin.take();
        let summary = read_json_line(&mut BufReader::new(fixture.stdout.take().unwrap()));
        assert_eq!(summary["event"], "summary", "{summary}");
        let pid = fixture.id();
        let binary = GoBinary::open(Path::new(&format!("/proc/{pid}/exe"))).unwrap();
        let snapshot = timers::snapshot(&binary, pid)
            .unwrap_or_else(|e| panic!("{go} {variant}: snapshot failed: {e}"));
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut callbacks: BTreeMap<String, u64> = BTreeMap::new();
        for timer in &snapshot.timers {
            let kind = TimerKind::of_callback(Some(&timer.callback), timer.period > 0);
            *kinds.entry(kind.to_string()).or_default() += 1;
            if let Some(function) = &timer.function {
                *callbacks.entry(function.clone()).or_default() += 1;
            }
        }
        let count = |key: &str| summary[key].as_u64().unwrap();
        // Unwatched channel timers are in a heap only with asynchronous channels (Go <= 1.22).
        let unwatched = if go.minor() <= 22 {
            count("unwatched_timer")
        } else {
            0
        };
        let context = format!("{go} {variant}: {summary} vs {kinds:?} {callbacks:?}");
        assert_eq!(
            kinds.get("timer").copied().unwrap_or(0),
            count("timer") + unwatched,
            "{context}"
        );
        assert_eq!(
            kinds.get("ticker").copied().unwrap_or(0),
            count("ticker"),
            "{context}"
        );
        assert_eq!(
            kinds.get("sleep").copied().unwrap_or(0),
            count("sleep"),
            "{context}"
        );
        let afterfuncs = summary["afterfunc"].as_object().unwrap();
        for (function, n) in afterfuncs {
            assert_eq!(callbacks.get(function).copied(), n.as_u64(), "{context}");
        }
        let total: u64 = afterfuncs.values().filter_map(|n| n.as_u64()).sum();
        assert_eq!(
            kinds.get("afterfunc").copied().unwrap_or(0),
            total,
            "{context}"
        );
        assert_eq!(snapshot.inconsistent, 0, "{context}");
        assert!(snapshot.heaps >= 1, "{context}");
        // Every due time lies in the hour the fixture's timers were armed for.
        let due = |t: &&timers::PendingTimer| t.when - snapshot.now;
        assert!(
            snapshot
                .timers
                .iter()
                .filter(|t| t.callback != "runtime.(*scavengerState).init.func1")
                .all(|t| (0..=3_600_000_000_000).contains(&due(&t))),
            "{context}"
        );
        let _ = fixture.kill();
        let _ = fixture.wait();
    }
}

per_go_version!(pending_timers, super::pending_timers_match_the_fixture);
