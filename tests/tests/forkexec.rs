//! Targets that fork and exec: copies of the target started by it (same binary, other pids) are
//! never counted under its pid, and a target that execs another program ends its recording
//! there, with what it did before written out (the forkexec fixture).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Fixture, count, cum, fixture_site, output_within, read_profile, start_recording, timerscope,
};
use timerscope_tests::{Variant, fixture_path, reference_go};

const FIXTURE: &str = "forkexec";

/// `record -- forkexec fork`: four children run the same binary (through /proc/self/exe) and
/// make their own timers while the parent makes its; the profile has exactly the parent's.
#[test]
fn children_running_the_same_binary_are_not_counted_under_the_parent() {
    let go = reference_go();
    let binary = fixture_path(FIXTURE, go, Variant::Normal).expect("fixture built");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("fork.pb.gz");
    let result = output_within(
        Command::new(timerscope())
            .arg("record")
            .arg("-o")
            .arg(&output)
            .arg("--")
            .arg(&binary)
            .args(["fork", "-n", "300", "-children", "4"]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "record failed: {stderr}");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let profile = read_profile(&output);
    let (parent, _) = fixture_site(FIXTURE, "parent");
    let (child, _) = fixture_site(FIXTURE, "child");
    assert_eq!(
        cum(&profile, "timers_created", &parent, None),
        count(&summary, "parent_timers"),
        "the parent's own timers, exactly"
    );
    assert_eq!(count(&summary, "child_timers"), 1200, "{summary}");
    assert_eq!(
        cum(&profile, "timers_created", &child, None),
        0,
        "the children's timers are not the parent's"
    );
}

/// `record --pid` on a target that replaces itself with /bin/sleep: the recording ends by
/// itself soon after the exec (not when sleep ends), says so, and the profile written then has
/// every timer made before the exec.
#[test]
fn exec_of_another_program_ends_the_recording_with_what_was_collected() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("exec.pb.gz");
    let mut fixture = Fixture::spawn(
        FIXTURE,
        go,
        Variant::Normal,
        &[
            "exec",
            "-n",
            "300",
            "-exec",
            "/bin/sleep",
            "-exec-arg",
            "60",
        ],
    );
    let (mut recorder, mut stderr) = start_recording(fixture.pid(), &output, &[]);
    fixture.start_scenario();
    let summary = fixture.summary();
    let execed_at = Instant::now();
    let deadline = execed_at + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = recorder.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = recorder.kill();
            panic!("timerscope still recording 30 s after the target exec'd sleep 60");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "timerscope exits 0: {status}: {rest}");
    assert!(
        rest.contains(&format!("target pid {} exec'd /", fixture.pid())) && rest.contains("sleep"),
        "the exec is reported: {rest}"
    );
    // Still sleeping: the recording did not wait for the new program.
    assert!(
        fixture.child.try_wait().unwrap().is_none(),
        "sleep 60 still runs under the fixture's pid"
    );
    let profile = read_profile(&output);
    assert!(
        profile
            .comment_value("stopped_by")
            .is_some_and(|s| s.starts_with("TargetExeced")),
        "{:?}",
        profile.comments
    );
    let (before, _) = fixture_site(FIXTURE, "before-exec");
    assert_eq!(
        cum(&profile, "timers_created", &before, None),
        count(&summary, "timers")
    );
    assert_eq!(
        cum(&profile, "timers_stopped", &before, None),
        count(&summary, "timers")
    );
}

/// The arguments of a forkexec `vanish` run: `n` goroutines, gone after `after` by `how`.
fn vanish_args(how: &'static str, after: &str) -> Vec<String> {
    ["vanish", "-n", "2000", "-how", how, "-after", after]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-exec".into(),
            "/bin/sleep".into(),
            "-exec-arg".into(),
            "5".into(),
        ])
        .collect()
}

/// `timerscope goroutines --pid` on a target that exits or execs at a moment that moves across
/// the read, many times: every run ends within seconds with a census or one line saying what
/// happened, never a panic or a hang.
#[test]
fn goroutines_of_a_target_that_exits_or_execs_mid_read_end_cleanly() {
    let go = reference_go();
    let (mut censuses, mut refusals) = (0, 0);
    for i in 0..24u32 {
        let how = if i % 2 == 0 { "exit" } else { "exec" };
        let args = vanish_args(how, &format!("{}ms", (i * 37) % 450));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut fixture = Fixture::spawn(FIXTURE, go, Variant::Normal, &args);
        fixture.start_scenario();
        let pid = fixture.pid().to_string();
        let result = output_within(
            Command::new(timerscope()).args(["goroutines", "--pid", &pid, "--json"]),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&result.stderr);
        let case = format!("run {i} ({how})");
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        if result.status.success() {
            let census: serde_json::Value =
                serde_json::from_slice(&result.stdout).expect("one JSON object");
            assert!(census["total"].as_u64().is_some(), "{case}: {census}");
            censuses += 1;
        } else {
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{case}: one line: {stderr}");
            assert!(lines[0].contains(&pid), "{case}: names the pid: {stderr}");
            refusals += 1;
        }
    }
    eprintln!("goroutines mid-exit/exec: {censuses} censuses, {refusals} clean refusals");
}

/// `watch --pid` on a target that exits or execs: the watch ends by itself, exits 0, and every
/// interval file it wrote (the last one with the timer snapshot taken as the target went) is a
/// profile that decodes.
#[test]
fn watch_of_a_target_that_exits_or_execs_ends_with_decodable_intervals() {
    let go = reference_go();
    for (i, how) in ["exit", "exec", "exit", "exec"].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let args = vanish_args(how, &format!("{}ms", 1200 + 300 * i));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut fixture = Fixture::spawn(FIXTURE, go, Variant::Normal, &args);
        let pid = fixture.pid().to_string();
        let mut watch = Command::new(timerscope())
            .args(["watch", "--pid", &pid, "--interval", "1s", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(watch.stderr.take().unwrap());
        let mut stderr = String::new();
        // Started once the watch has attached, so the vanishing lands mid-run.
        while !stderr.contains("watching pid") {
            assert!(
                lines.read_line(&mut stderr).unwrap() > 0,
                "watch said: {stderr}"
            );
        }
        fixture.start_scenario();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = watch.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = watch.kill();
                panic!("watch still running 60 s after its target went: {stderr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        std::io::Read::read_to_string(&mut lines, &mut stderr).unwrap();
        let case = format!("run {i} ({how})");
        assert!(status.success(), "{case}: {stderr}");
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        let said = if how == "exit" { "exited" } else { "exec'd" };
        assert!(
            stderr.contains(&format!("pid {pid} {said}")),
            "{case}: says so: {stderr}"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
            .collect();
        assert!(!files.is_empty(), "{case}: intervals written");
        for file in &files {
            pprof::read_file(file).unwrap_or_else(|e| panic!("{case}: {}: {e}", file.display()));
        }
    }
}
