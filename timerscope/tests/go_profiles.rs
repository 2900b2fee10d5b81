//! Go's own heap and goroutine profiles, written by tests/go/profdump under each Go version the
//! issue names, and `diff` checked against `go tool pprof -diff_base -top` (Go 1.25.5, the
//! reference pprof). Needs the cached toolchains; fails with a clear message without them.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use analyzer::classify::{ClassifyReport, FindingKind, classify};
use common::*;
use pprof::ResolvedProfile;
use timerscope::commands::diff::{DiffOptions, run_diff};
use timerscope::render::to_json;

/// Go 1.19 (Debian), 1.22, 1.23 and 1.27, as the acceptance criteria ask.
const VERSIONS: [&str; 4] = ["1.19", "1.22.10", "1.23.9", "1.27.3"];
const REFERENCE_PPROF: &str = "1.25.5";

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/profdump")
}

/// The line of the `// SITE marker` comment in profdump's main.go.
fn site_line(marker: &str) -> i64 {
    let source = std::fs::read_to_string(source_dir().join("main.go")).unwrap();
    let tag = format!("// SITE {marker}");
    let index = source
        .lines()
        .position(|l| l.trim_end().ends_with(&tag))
        .unwrap_or_else(|| panic!("no {tag} in main.go"));
    index as i64 + 1
}

/// Builds profdump with Go `version` and runs it in `mode`, returning its profiles in order.
fn dump(version: &str, mode: &str, steps: usize, dir: &Path) -> Vec<PathBuf> {
    let binary = dir.join(format!("profdump-{version}"));
    run_ok(
        go_command(version)
            .current_dir(source_dir())
            .args(["build", "-o"])
            .arg(&binary)
            .arg("."),
    );
    let out = dir.join(mode);
    std::fs::create_dir_all(&out).unwrap();
    run_ok(
        std::process::Command::new(&binary)
            .arg(mode)
            .arg(&out)
            .arg(steps.to_string()),
    );
    let kind = mode.split('-').next().unwrap();
    (1..=steps)
        .map(|i| out.join(format!("{kind}-{i}.pb.gz")))
        .collect()
}

fn classify_files(paths: &[PathBuf]) -> ClassifyReport {
    let profiles: Vec<ResolvedProfile> = paths
        .iter()
        .map(|p| ResolvedProfile::new(&pprof::read_file(p).unwrap()))
        .collect();
    let report = classify(&profiles);
    assert_matches_schema(&to_json(&report));
    report
}

fn assert_single_finding_at(
    report: &ClassifyReport,
    kind: FindingKind,
    function: &str,
    marker: &str,
    version: &str,
) {
    assert_eq!(report.findings.len(), 1, "Go {version}: {report:#?}");
    let f = &report.findings[0];
    assert_eq!(f.kind, kind, "Go {version}");
    assert_eq!(f.function, function, "Go {version}");
    assert!(
        f.file.ends_with("profdump/main.go"),
        "Go {version}: {}",
        f.file
    );
    assert_eq!(f.line, site_line(marker), "Go {version}: {f:#?}");
}

#[test]
fn heap_growth_found_at_the_leaking_allocation_on_each_go_version() {
    for version in VERSIONS {
        let dir = tempfile::tempdir().unwrap();
        let leak = classify_files(&dump(version, "heap-leak", 4, dir.path()));
        assert_single_finding_at(
            &leak,
            FindingKind::HeapGrowth,
            "main.leak",
            "heap-leak",
            version,
        );
        assert!(
            leak.findings[0].evidence.contains("MiB/s"),
            "{}",
            leak.findings[0].evidence
        );
        let healthy = classify_files(&dump(version, "heap-healthy", 4, dir.path()));
        assert!(healthy.findings.is_empty(), "Go {version}: {healthy:#?}");
    }
}

#[test]
fn goroutine_growth_found_at_the_blocking_site_on_each_go_version() {
    for version in VERSIONS {
        let dir = tempfile::tempdir().unwrap();
        let leak = classify_files(&dump(version, "goroutine-leak", 4, dir.path()));
        assert_single_finding_at(
            &leak,
            FindingKind::GoroutineGrowth,
            "main.blocked",
            "goroutine-leak",
            version,
        );
        let healthy = classify_files(&dump(version, "goroutine-healthy", 4, dir.path()));
        assert!(healthy.findings.is_empty(), "Go {version}: {healthy:#?}");
    }
}

/// Flat values per function from `go tool pprof -diff_base BASE -top NEW`, exact (bytes in B).
fn pprof_top_flat(
    base: &Path,
    new: &Path,
    sample_index: &str,
    unit: Option<&str>,
) -> HashMap<String, i64> {
    let mut cmd = go_command(REFERENCE_PPROF);
    cmd.args([
        "tool",
        "pprof",
        "-top",
        "-nodecount=1000000",
        "-nodefraction=0",
        "-edgefraction=0",
    ])
    .arg(format!("-sample_index={sample_index}"))
    .arg(format!("-diff_base={}", base.display()));
    if let Some(unit) = unit {
        cmd.arg(format!("-unit={unit}"));
    }
    let out = run_ok(cmd.arg(new));
    let mut flat = HashMap::new();
    let mut in_table = false;
    for line in out.lines() {
        if line.trim_start().starts_with("flat") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "unexpected pprof row: {line:?}");
        let value = fields[0].trim_end_matches('B');
        let value: i64 = value
            .parse()
            .unwrap_or_else(|_| panic!("unparsable flat {:?} in {line:?}", fields[0]));
        let name = fields[5..].join(" ");
        let name = name.trim_end_matches(" (inline)").to_owned();
        *flat.entry(name).or_insert(0) += value;
    }
    assert!(!flat.is_empty(), "no rows in pprof output:\n{out}");
    flat
}

fn assert_diff_agrees(base: &Path, new: &Path, sample_index: &str, unit: Option<&str>) {
    let expected = pprof_top_flat(base, new, sample_index, unit);
    let report = run_diff(&DiffOptions {
        base: base.to_owned(),
        new: new.to_owned(),
        sample_index: Some(sample_index.to_owned()),
        top: 0,
        threshold_pp: 15.0,
        output: None,
        limits: Default::default(),
    })
    .unwrap();
    let ours: HashMap<&str, i64> = report
        .rows
        .iter()
        .map(|r| (r.function.as_str(), r.flat_delta))
        .collect();
    for (function, &flat) in &expected {
        assert_eq!(
            ours.get(function.as_str()).copied().unwrap_or(0),
            flat,
            "{sample_index}: flat of {function}"
        );
    }
    for row in &report.rows {
        if row.flat_delta != 0 {
            assert!(
                expected.contains_key(&row.function),
                "{sample_index}: {} only in ours",
                row.function
            );
        }
    }
    assert!(
        expected.values().any(|&v| v != 0),
        "the comparison must cover a real change"
    );
}

#[test]
fn diff_agrees_with_go_tool_pprof_on_flat_values() {
    for version in ["1.19", REFERENCE_PPROF] {
        let dir = tempfile::tempdir().unwrap();
        let heap = dump(version, "heap-leak", 3, dir.path());
        for (index, unit) in [
            ("inuse_space", Some("B")),
            ("alloc_objects", None),
            ("inuse_objects", None),
        ] {
            assert_diff_agrees(&heap[0], &heap[2], index, unit);
        }
        let goroutines = dump(version, "goroutine-leak", 3, dir.path());
        assert_diff_agrees(&goroutines[0], &goroutines[2], "goroutine", None);
    }
}

#[test]
fn saved_diff_profile_reads_back_in_go_tool_pprof() {
    let dir = tempfile::tempdir().unwrap();
    let heap = dump(REFERENCE_PPROF, "heap-leak", 3, dir.path());
    let output = dir.path().join("diff.pb.gz");
    let report = run_diff(&DiffOptions {
        base: heap[0].clone(),
        new: heap[2].clone(),
        sample_index: Some("inuse_space".to_owned()),
        top: 0,
        threshold_pp: 15.0,
        output: Some(output.clone()),
        limits: Default::default(),
    })
    .unwrap();
    // Plain -top of the saved diff shows new − base, like -diff_base does.
    let out = run_ok(
        go_command(REFERENCE_PPROF)
            .args([
                "tool",
                "pprof",
                "-top",
                "-sample_index=inuse_space",
                "-unit=B",
                "-nodefraction=0",
            ])
            .arg(&output),
    );
    let leak = report
        .rows
        .iter()
        .find(|r| r.function == "main.leak")
        .unwrap();
    let row = out
        .lines()
        .find(|l| l.trim_end().ends_with(" main.leak"))
        .unwrap_or_else(|| panic!("main.leak missing:\n{out}"));
    assert_eq!(
        row.split_whitespace().next().unwrap(),
        format!("{}B", leak.flat_delta),
        "{out}"
    );
    // Base samples are marked the way pprof marks them.
    let tags = run_ok(
        go_command(REFERENCE_PPROF)
            .args(["tool", "pprof", "-tags"])
            .arg(&output),
    );
    assert!(tags.contains("pprof::base"), "{tags}");
}
