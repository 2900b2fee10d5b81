//! `timerscope record` on cgo programs that allocate in C: libc's malloc, calloc, realloc, free
//! and posix_memalign are probed, and C heap bytes still live at the end sit at the Go function
//! that called into C, within 5% of what the fixture says it kept.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use common::{
    Fixture, PidRecording, count, cum, fixture_site, go_tool_pprof, read_profile, record_launch,
    run_timerscope,
};
use pprof::ResolvedProfile;
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant, fixture_path, reference_go};

const LIVE: &str = "c_heap_live_bytes";
const ALLOC: &str = "c_heap_alloc_bytes";
/// The fixture's `cheap` scenario: this many 512-byte blocks per kind.
const CHEAP_ARGS: [&str; 5] = ["cheap", "-n", "2000", "-size", "512"];

fn assert_within_5_percent(what: &str, actual: i64, expected: i64) {
    let error = (actual - expected).abs() as f64 / expected as f64;
    assert!(
        expected > 0 && error <= 0.05,
        "{what}: {actual} bytes, expected {expected} ({:.1}% apart)",
        error * 100.0
    );
}

/// Every check of the `cheap` scenario's profile against its summary.
fn check_cheap_profile(profile: &ResolvedProfile, summary: &Value, label: &str) {
    assert_eq!(profile.comment_value("c_heap"), Some("on"), "{label}");
    let site = |marker| fixture_site("cgomalloc", marker).0;
    let (leak, freed, grown, aligned) = (
        site("c-heap-leak"),
        site("c-heap-freed"),
        site("c-heap-realloc"),
        site("c-heap-aligned"),
    );
    assert_within_5_percent(
        &format!("{label}: live at {leak}"),
        cum(profile, LIVE, &leak, None),
        count(summary, "bytes_leaked"),
    );
    assert_within_5_percent(
        &format!("{label}: allocated at {leak}"),
        cum(profile, ALLOC, &leak, None),
        count(summary, "bytes_leaked"),
    );
    // Freed blocks are allocated, and not live.
    assert_eq!(
        cum(profile, LIVE, &freed, None),
        0,
        "{label}: live at {freed}"
    );
    assert_within_5_percent(
        &format!("{label}: allocated at {freed}"),
        cum(profile, ALLOC, &freed, None),
        count(summary, "bytes_freed"),
    );
    // realloc moves a block: the grown block is live, the one it replaced is not.
    assert_within_5_percent(
        &format!("{label}: live at {grown}"),
        cum(profile, LIVE, &grown, None),
        count(summary, "bytes_grown"),
    );
    assert_within_5_percent(
        &format!("{label}: allocated at {grown}"),
        cum(profile, ALLOC, &grown, None),
        count(summary, "bytes_grown") + count(summary, "bytes_grown_from"),
    );
    assert_within_5_percent(
        &format!("{label}: live at {aligned}"),
        cum(profile, LIVE, &aligned, None),
        count(summary, "bytes_aligned"),
    );
}

/// The cum column `go tool pprof -top -cum` shows for `function`, in bytes.
fn pprof_cum_bytes(path: &std::path::Path, sample_type: &str, function: &str) -> i64 {
    let top = go_tool_pprof(&[
        "-top",
        "-cum",
        "-unit=B",
        &format!("-sample_index={sample_type}"),
        path.to_str().unwrap(),
    ]);
    let row = top
        .lines()
        .find(|line| line.split_whitespace().last() == Some(function))
        .unwrap_or_else(|| panic!("no {function} in go tool pprof -top:\n{top}"));
    let cum = row.split_whitespace().nth(3).unwrap();
    cum.trim_end_matches('B')
        .parse()
        .unwrap_or_else(|e| panic!("cum {cum:?} in {row:?}: {e}"))
}

fn c_heap_is_live_at_the_go_function_that_called_c(go: &GoVersion) {
    for variant in Variant::ALL {
        let dir = tempfile::tempdir().unwrap();
        let (summary, path, profile) =
            record_launch(dir.path(), "cgomalloc", go, variant, &CHEAP_ARGS);
        let label = format!("{go} {variant}");
        check_cheap_profile(&profile, &summary, &label);
        let (leak, _) = fixture_site("cgomalloc", "c-heap-leak");
        assert_within_5_percent(
            &format!("{label}: go tool pprof, live at {leak}"),
            pprof_cum_bytes(&path, LIVE, &leak),
            count(&summary, "bytes_leaked"),
        );
        let (freed, _) = fixture_site("cgomalloc", "c-heap-freed");
        let top = go_tool_pprof(&[
            "-top",
            &format!("-sample_index={LIVE}"),
            path.to_str().unwrap(),
        ]);
        assert!(
            !top.lines()
                .any(|l| l.split_whitespace().last() == Some(&freed)),
            "{label}: freed blocks show as live:\n{top}"
        );
    }
}
per_go_version!(
    c_heap_is_live_at_the_go_function_that_called_c,
    super::c_heap_is_live_at_the_go_function_that_called_c
);

/// Attached to a running process, the libc it has mapped is probed.
#[test]
fn c_heap_of_a_running_process() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("cheap-pid.pb.gz");
    let mut args = CHEAP_ARGS.to_vec();
    args.extend(["-hold", "1s"]);
    let mut fixture = Fixture::spawn("cgomalloc", go, Variant::Normal, &args);
    let recorder = PidRecording::start(fixture.pid(), &output, &[]);
    fixture.start_scenario();
    let summary = fixture.summary();
    assert!(recorder.wait().success());
    let profile = read_profile(&output);
    check_cheap_profile(&profile, &summary, "--pid");
    let probes = profile.comment_value("c_heap_probes").unwrap_or_default();
    for function in ["malloc", "calloc", "realloc", "free", "posix_memalign"] {
        assert!(
            probes.contains(&format!("{function}+")),
            "{function} not in c_heap_probes={probes}"
        );
    }
}

/// `--no-c-heap` leaves the C heap out, and says so.
#[test]
fn no_c_heap_records_none() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("no-c-heap.pb.gz");
    let binary = fixture_path("cgomalloc", go, Variant::Normal).unwrap();
    let mut args = vec![
        "record",
        "--no-c-heap",
        "-o",
        output.to_str().unwrap(),
        "--",
    ];
    args.push(binary.to_str().unwrap());
    args.extend(CHEAP_ARGS);
    let result = run_timerscope(&args);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let profile = read_profile(&output);
    assert_eq!(profile.comment_value("c_heap"), Some("off"));
    for sample_type in [LIVE, ALLOC] {
        let index = profile.sample_index(Some(sample_type)).unwrap();
        let total: i64 = profile.samples.iter().map(|s| s.values[index]).sum();
        assert_eq!(total, 0, "{sample_type} with --no-c-heap");
    }
}

/// A static Go binary links no libc: nothing to probe, and the profile says why.
#[test]
fn a_static_binary_has_no_c_heap() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, profile) = record_launch(
        dir.path(),
        "timers",
        reference_go(),
        Variant::Normal,
        &["afterfunc-leak", "-n", "3"],
    );
    assert_eq!(profile.comment_value("c_heap"), Some("no-libc"));
}
