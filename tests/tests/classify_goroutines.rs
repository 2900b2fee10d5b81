//! `timerscope classify` on recordings of real Go processes whose goroutines or memory outside
//! the Go heap grow, on every Go version: `goroutine-leak` at the function the goroutines are
//! blocked in, naming the `go` statement that created them, and nothing on a healthy worker pool;
//! `rss-outside-heap` for C heap growth recorded without the C heap probes (or `mmap-growth` at
//! the Go function calling into C, when glibc maps a new arena during the recording),
//! `c-heap-growth` at the Go function instead when the probes attribute it.

#![allow(unused_crate_dependencies)]

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::{Fixture, PidRecording, fixture_site, run_timerscope, timerscope};
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant};

fn classify(profiles: &[PathBuf]) -> Vec<Value> {
    let output = Command::new(timerscope())
        .args(["classify", "--json"])
        .args(profiles)
        .output()
        .expect("timerscope runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "classify: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    report["findings"].as_array().expect("findings").clone()
}

/// Three one-second recordings of a running goroutines fixture in `scenario`.
fn three_recordings(go: &GoVersion, scenario: &str, dir: &std::path::Path) -> Vec<PathBuf> {
    let mut fixture = Fixture::spawn(
        "goroutines",
        go,
        Variant::Normal,
        &[scenario, "-rate", "100"],
    );
    fixture.start_scenario_with_requests();
    fixture.summary();
    (0..3)
        .map(|i| {
            let output = dir.join(format!("{scenario}-{i}.pb.gz"));
            let pid = fixture.pid().to_string();
            let result = run_timerscope(&[
                "record",
                "--pid",
                &pid,
                "--duration",
                "1s",
                "-o",
                output.to_str().unwrap(),
            ]);
            assert!(
                result.status.success(),
                "{go}: record: {}",
                String::from_utf8_lossy(&result.stderr)
            );
            output
        })
        .collect()
}

fn goroutine_leak_at_the_blocked_function(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let mut findings = classify(&three_recordings(go, "leak", dir.path()));
    // The leaking goroutines' stacks come from the heap, so a heap arena mapped during a
    // recording is mapped at their `go` statement: that is the same leak, seen as mappings.
    let (creator, spawn_line) = fixture_site("goroutines", "leak-spawn");
    findings.retain(|f| {
        !(f["kind"] == "mmap-growth"
            && f["function"] == creator.as_str()
            && f["line"].as_i64() == Some(spawn_line))
    });
    assert_eq!(findings.len(), 1, "{go}: {findings:#?}");
    let finding = &findings[0];
    let (blocked, line) = fixture_site("goroutines", "leak-block");
    assert_eq!(finding["kind"], "goroutine-leak", "{go}: {finding:#}");
    assert_eq!(finding["function"], blocked.as_str(), "{go}: {finding:#}");
    assert_eq!(finding["line"].as_i64(), Some(line), "{go}: {finding:#}");
    let evidence = finding["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("{creator} (main.go:{spawn_line})")),
        "{go}: the creating site in {evidence:?}"
    );

    let healthy = classify(&three_recordings(go, "healthy", dir.path()));
    assert!(healthy.is_empty(), "{go}: healthy pool: {healthy:#?}");
}
per_go_version!(
    goroutine_leak_at_the_blocked_function,
    super::goroutine_leak_at_the_blocked_function
);

/// One recording of the cgo fixture keeping 512-byte C blocks (about 60 MiB of glibc arena).
fn record_cgo_leak(go: &GoVersion, extra: &[&str], dir: &std::path::Path) -> PathBuf {
    let output = dir.join(format!("cgomalloc{}.pb.gz", extra.len()));
    let mut fixture = Fixture::spawn(
        "cgomalloc",
        go,
        Variant::Normal,
        &["cheap", "-n", "40000", "-size", "512", "-hold", "30s"],
    );
    let mut args = vec!["--duration", "3s"];
    args.extend_from_slice(extra);
    let recording = PidRecording::start(fixture.pid(), &output, &args);
    std::thread::sleep(Duration::from_millis(200));
    fixture.start_scenario();
    assert!(recording.wait().success(), "{go}: record");
    output
}

fn rss_outside_heap_without_c_heap_probes(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let unattributed = classify(&[record_cgo_leak(go, &["--no-c-heap"], dir.path())]);
    assert_eq!(unattributed.len(), 1, "{go}: {unattributed:#?}");
    // A cgo call that lands on a thread with no glibc arena yet maps one (64 MiB, seen by the
    // mmap probes at the Go function that called into C): then that site is the answer.
    let c_callers: Vec<String> = [
        "c-heap-leak",
        "c-heap-freed",
        "c-heap-realloc",
        "c-heap-aligned",
    ]
    .into_iter()
    .map(|site| fixture_site("cgomalloc", site).0)
    .collect();
    let finding = &unattributed[0];
    let function = finding["function"].as_str().unwrap_or_default();
    assert!(
        (finding["kind"] == "rss-outside-heap" && function == "[process]")
            || (finding["kind"] == "mmap-growth" && c_callers.iter().any(|f| f == function)),
        "{go}: {finding:#}"
    );

    let attributed = classify(&[record_cgo_leak(go, &[], dir.path())]);
    assert!(
        attributed.iter().all(|f| f["kind"] != "rss-outside-heap"),
        "{go}: {attributed:#?}"
    );
    let (leak, _) = fixture_site("cgomalloc", "c-heap-leak");
    assert!(
        attributed
            .iter()
            .any(|f| f["kind"] == "c-heap-growth" && f["function"] == leak.as_str()),
        "{go}: c-heap-growth at {leak}: {attributed:#?}"
    );
}
per_go_version!(
    rss_outside_heap_without_c_heap_probes,
    super::rss_outside_heap_without_c_heap_probes
);
