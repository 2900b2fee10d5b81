//! `timerscope record` counts goroutines created and exited by the stack of their `go`
//! statement (`goroutines_created`, `goroutines_exited`): exactly what the fixture started and
//! let exit, at that statement, on every Go version and build variant; exits of goroutines
//! created before the attach count at their `go` statement under a frame that says so.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use common::{
    Fixture, PidRecording, count, cum, fixture_site, go_tool_pprof, profile_counters, read_profile,
    record_launch, run_timerscope,
};
use pprof::ResolvedProfile;
use timerscope_tests::{GoVersion, Variant, fixture_path, reference_go};

const CREATED: &str = "goroutines_created";
const EXITED: &str = "goroutines_exited";
/// Two rounds of 300 goroutines at one `go` statement, 120 of each round exiting.
const CHURN_ARGS: [&str; 9] = [
    "churn",
    "-n",
    "300",
    "-exit",
    "120",
    "-repeat",
    "2",
    "-duration",
    "1ms",
];

/// The sum of `sample_type` over samples whose leaf frame is `function` at `line`.
fn at_leaf(profile: &ResolvedProfile, sample_type: &str, function: &str, line: i64) -> i64 {
    let index = profile
        .sample_index(Some(sample_type))
        .expect("sample type");
    profile
        .samples
        .iter()
        .filter(|s| {
            profile
                .stack(s)
                .next()
                .is_some_and(|f| f.function == function && f.line == line)
        })
        .map(|s| s.values[index])
        .sum()
}

/// The flat column `go tool pprof -top` shows for `function`.
fn pprof_flat(path: &std::path::Path, sample_type: &str, function: &str) -> i64 {
    let top = go_tool_pprof(&[
        "-top",
        &format!("-sample_index={sample_type}"),
        path.to_str().unwrap(),
    ]);
    let row = top
        .lines()
        .find(|line| line.split_whitespace().last() == Some(function))
        .unwrap_or_else(|| panic!("no {function} in go tool pprof -top:\n{top}"));
    let flat = row.split_whitespace().next().unwrap();
    flat.parse()
        .unwrap_or_else(|e| panic!("flat {flat:?} in {row:?}: {e}"))
}

fn created_and_exited_at_the_go_statement(go: &GoVersion) {
    let (function, line) = fixture_site("goroutines", "churn-spawn");
    for variant in Variant::ALL {
        let label = format!("{go} {variant}");
        let dir = tempfile::tempdir().unwrap();
        let (summary, path, profile) =
            record_launch(dir.path(), "goroutines", go, variant, &CHURN_ARGS);
        assert_eq!(
            profile.comment_value("goroutine_probes"),
            Some("on"),
            "{label}"
        );
        let hooks = profile.comment_value("goroutine_hooks").unwrap_or_default();
        assert!(
            hooks.starts_with("runtime.newproc.func1+") && hooks.contains(",runtime.goexit1+"),
            "{label}: goroutine_hooks={hooks}"
        );
        let (created, exited) = (count(&summary, "created"), count(&summary, "exited"));
        assert_eq!((created, exited), (600, 240), "{label}: {summary}");
        // Exactly, at the `go` statement itself: the runtime's creation frames are left out.
        assert_eq!(
            at_leaf(&profile, CREATED, &function, line),
            created,
            "{label}: {CREATED} at {function}:{line}"
        );
        assert_eq!(
            at_leaf(&profile, EXITED, &function, line),
            exited,
            "{label}: {EXITED} at {function}:{line}"
        );
        // Nothing else is counted under it (the goroutines' own frames are not creation sites).
        assert_eq!(cum(&profile, CREATED, &function, None), created, "{label}");
        assert_eq!(cum(&profile, EXITED, &function, None), exited, "{label}");
        let drops = profile_counters(&profile, "drops");
        assert_eq!(drops.get("goroutine_map_full"), Some(&0), "{label}");
        if variant == Variant::Normal {
            assert_eq!(pprof_flat(&path, CREATED, &function), created, "{label}");
            assert_eq!(pprof_flat(&path, EXITED, &function), exited, "{label}");
        }
    }
}
per_go_version!(
    created_and_exited_at_the_go_statement,
    super::created_and_exited_at_the_go_statement
);

/// Goroutines started before `record --pid` attached that exit while it records: counted at
/// their `go` statement under `[goroutine created before attach]`, none as created.
#[test]
fn exits_of_goroutines_created_before_the_attach() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("before-attach.pb.gz");
    // 4 workers at healthy-spawn, which exit when the scenario stops after -duration: long
    // enough for the attach (about a second, several on a loaded machine) to come first.
    let mut fixture = Fixture::spawn(
        "goroutines",
        go,
        Variant::Normal,
        &[
            "healthy",
            "-rate",
            "20",
            "-duration",
            "10s",
            "-hold",
            "300ms",
        ],
    );
    fixture.start_scenario();
    let started = std::time::Instant::now();
    fixture.summary();
    let recorder = PidRecording::start(fixture.pid(), &output, &[]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "attaching took longer than the scenario"
    );
    assert!(recorder.wait().success());
    let profile = read_profile(&output);
    let (function, line) = fixture_site("goroutines", "healthy-spawn");
    let index = profile.sample_index(Some(EXITED)).unwrap();
    let before_attach: i64 = profile
        .samples
        .iter()
        .filter(|s| {
            let frames: Vec<_> = profile.stack(s).collect();
            matches!(frames.as_slice(), [creator, root]
                if creator.function == function && creator.line == line
                    && root.function == "[goroutine created before attach]")
        })
        .map(|s| s.values[index])
        .sum();
    assert_eq!(before_attach, 4, "{:?}", profile.comments);
    assert_eq!(cum(&profile, CREATED, &function, None), 0);
}

/// `--no-goroutine-probes` leaves them out, and says so.
#[test]
fn no_goroutine_probes_records_none() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("no-goroutine-probes.pb.gz");
    let binary = fixture_path("goroutines", reference_go(), Variant::Normal).unwrap();
    let mut args = vec![
        "record",
        "--no-goroutine-probes",
        "-o",
        output.to_str().unwrap(),
        "--",
        binary.to_str().unwrap(),
    ];
    args.extend(CHURN_ARGS);
    let result = run_timerscope(&args);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let profile = read_profile(&output);
    assert_eq!(profile.comment_value("goroutine_probes"), Some("off"));
    assert_eq!(profile.comment_value("goroutine_hooks"), None);
    for sample_type in [CREATED, EXITED] {
        let index = profile.sample_index(Some(sample_type)).unwrap();
        let total: i64 = profile.samples.iter().map(|s| s.values[index]).sum();
        assert_eq!(total, 0, "{sample_type} with --no-goroutine-probes");
    }
}
