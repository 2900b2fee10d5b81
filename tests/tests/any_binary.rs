//! Any Go binary records alike: for every Go version, the normal, stripped, PIE and
//! PIE+stripped builds of a program give the same user-code frames and counts; a cgo program
//! linked by the C linker records and symbolizes; and a process in its own mount and pid
//! namespace, whose binary exists only there, is recorded by its host pid.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{collections::BTreeMap, fs, process::Command};

use common::{Fixture, PidRecording, count, cum, read_profile, record_launch};
use pprof::{ResolvedProfile, SampleLabel};
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant, fixture_path, reference_go};

/// The lifecycle counts; `timer_fire_delay` is timing, not a count.
const COUNTS: [&str; 5] = [
    "timers_created",
    "timers_reset",
    "timers_stopped",
    "timers_fired",
    "timers_live",
];

/// What a profile says about the program's own code: per count, user-code frames (function,
/// file, line, leaf first) and string labels, summed. Runtime-internal timers, whose number
/// depends on timing, are left out.
type UserCode = BTreeMap<(&'static str, Vec<(String, String, i64)>, Vec<String>), i64>;

fn user_code(profile: &ResolvedProfile) -> UserCode {
    let mut totals = UserCode::new();
    for sample_type in COUNTS {
        let index = profile
            .sample_index(Some(sample_type))
            .expect("sample type");
        for sample in profile.samples.iter().filter(|s| s.values[index] != 0) {
            let frames: Vec<_> = sample
                .stack
                .iter()
                .map(|&f| &profile.frames[f as usize])
                .filter(|f| f.function.starts_with("main."))
                .map(|f| (f.function.clone(), f.file.clone(), f.line))
                .collect();
            if frames.is_empty() {
                continue;
            }
            let labels = sample
                .labels
                .iter()
                .filter_map(|label| match label {
                    SampleLabel::Str { key, value } => Some(format!("{key}={value}")),
                    _ => None,
                })
                .collect();
            *totals.entry((sample_type, frames, labels)).or_default() += sample.values[index];
        }
    }
    totals
}

/// Records `name ARGS` in every variant; checks each with `check` (summary, profile) and that
/// all four agree on the user code.
fn records_alike(
    go: &GoVersion,
    name: &str,
    args: &[&str],
    check: impl Fn(&Value, &ResolvedProfile, Variant),
) {
    let dir = tempfile::tempdir().unwrap();
    let mut reference: Option<(Variant, UserCode)> = None;
    for variant in Variant::ALL {
        let (summary, _, profile) = record_launch(dir.path(), name, go, variant, args);
        assert_eq!(
            profile.comment_value("symbols"),
            Some("pclntab"),
            "{name} {go} {variant}"
        );
        let expected_offsets = if variant.stripped() { "table" } else { "dwarf" };
        assert_eq!(
            profile.comment_value("struct_offsets"),
            Some(expected_offsets)
        );
        check(&summary, &profile, variant);
        let frames = user_code(&profile);
        match &reference {
            None => reference = Some((variant, frames)),
            Some((first, expected)) => assert_eq!(
                &frames, expected,
                "{name} {go}: {variant} and {first} differ in user code"
            ),
        }
    }
}

fn timers_record_alike_in_every_variant(go: &GoVersion) {
    records_alike(
        go,
        "timers",
        &["afterfunc-leak", "-n", "100"],
        |summary, profile, variant| {
            let context = format!("timers {go} {variant}");
            let leaked = cum(
                profile,
                "timers_created",
                "main.leakAfterFuncs",
                Some("afterfunc"),
            );
            assert_eq!(leaked, count(summary, "created"), "{context}");
            assert_eq!(
                cum(profile, "timers_stopped", "main.stopSome", None),
                count(summary, "stopped"),
                "{context}"
            );
            assert_eq!(
                cum(profile, "timers_live", "main.leakAfterFuncs", None),
                count(summary, "pending"),
                "{context}"
            );
        },
    );
}
per_go_version!(
    timers_record_alike_in_every_variant,
    super::timers_record_alike_in_every_variant
);

/// cgo, linked externally (`-linkmode=external`): timers made in Go between calls into C, and
/// in Go called back from C.
fn cgo_records_alike_in_every_variant(go: &GoVersion) {
    records_alike(
        go,
        "cgotimers",
        &["-n", "100"],
        |summary, profile, variant| {
            let context = format!("cgotimers {go} {variant}");
            assert_eq!(
                cum(
                    profile,
                    "timers_created",
                    "main.leakAfterFuncs",
                    Some("afterfunc")
                ),
                count(summary, "created_in_go"),
                "{context}"
            );
            assert_eq!(
                cum(
                    profile,
                    "timers_created",
                    "main.goAfterFuncs",
                    Some("afterfunc")
                ),
                count(summary, "created_from_c"),
                "{context}"
            );
            assert_eq!(
                cum(profile, "timers_stopped", "main.stopSome", None),
                count(summary, "stopped"),
                "{context}"
            );
            let live = cum(profile, "timers_live", "main.leakAfterFuncs", None)
                + cum(profile, "timers_live", "main.goAfterFuncs", None);
            assert_eq!(live, count(summary, "pending"), "{context}");
            let callbacks: Vec<_> = profile
                .samples
                .iter()
                .filter_map(|s| s.str_label("callback"))
                .collect();
            assert!(
                callbacks.contains(&"main.leakAfterFuncs.func1")
                    && callbacks.contains(&"main.goAfterFuncs.func1"),
                "{context}: callbacks {callbacks:?}"
            );
        },
    );
}
per_go_version!(
    cgo_records_alike_in_every_variant,
    super::cgo_records_alike_in_every_variant
);

/// The host pid of the one child of `parent` (unshare's forked child, which exec'd the fixture).
fn only_child(parent: u32) -> u32 {
    let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
    let children: Vec<u32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 1, "children of {parent}: {children:?}");
    children[0]
}

#[test]
fn records_a_process_in_its_own_mount_and_pid_namespace() {
    let binary = fixture_path("timers", reference_go(), Variant::PieStripped).unwrap();
    // Exists on the host, but the binary is copied into a tmpfs mounted over it only inside
    // the new mount namespace.
    let mount_point = tempfile::tempdir().unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(["sh", "-c"])
        .arg(
            r#"mount -t tmpfs none "$1" && cp "$2" "$1/app" && exec "$1/app" afterfunc-leak -n 60 -hold 60s -wait-stdin"#,
        )
        .arg("sh")
        .arg(mount_point.path())
        .arg(&binary);
    let mut fixture = Fixture::from_command(command);
    let pid = only_child(fixture.pid());
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let namespaced_pids = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap();
    assert_eq!(
        namespaced_pids.split_whitespace().collect::<Vec<_>>(),
        [pid.to_string().as_str(), "1"],
        "pid 1 of its own namespace"
    );
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.starts_with(mount_point.path()) && !exe.exists(),
        "{} exists only in the target's mount namespace",
        exe.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("namespaced.pb.gz");
    let recorder = PidRecording::start(pid, &output, &[]);
    fixture.start_scenario();
    let summary = fixture.summary();
    assert!(
        recorder
            .stop_with(nix::sys::signal::Signal::SIGINT)
            .success()
    );
    let profile = read_profile(&output);
    assert_eq!(
        cum(
            &profile,
            "timers_created",
            "main.leakAfterFuncs",
            Some("afterfunc")
        ),
        count(&summary, "created")
    );
    assert_eq!(
        cum(&profile, "timers_live", "main.leakAfterFuncs", None),
        count(&summary, "pending")
    );
    assert_eq!(
        cum(&profile, "timers_stopped", "main.stopSome", None),
        count(&summary, "stopped")
    );
}
