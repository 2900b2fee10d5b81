//! Reliability: the target survives a long recording under stress with exact counts, a target
//! that exits mid-recording still gets its profile, other processes of the same binary are never
//! counted, and with tiny kernel maps every lost event or stack is counted and reported.
//!
//! The soak runs for `TIMERSCOPE_SOAK_SECONDS` (default 60) with Go `TIMERSCOPE_SOAK_GO` (default
//! the reference toolchain); `cargo xtask soak` runs it for 10 minutes.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    io::BufReader,
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use common::{
    Fixture, count, cum, output_within, profile_counters, read_profile, reported_losses,
    start_recording, timerscope,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant, fixture_path, reference_go};

const SOAK: &str = "soak";
/// Where the soak fixture makes every timer call it counts.
const TIMER_OPS: &str = "main.timerOps";
/// Where it leaks timers with `-leak`.
const LEAK_TIMERS: &str = "main.leakTimers";
/// Frames a kernel user-stack unwind keeps (perf_event_max_stack).
const KERNEL_STACK_FRAMES: i64 = 127;

fn soak_seconds() -> u64 {
    match std::env::var("TIMERSCOPE_SOAK_SECONDS") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("TIMERSCOPE_SOAK_SECONDS={s:?} is not a whole number")),
        Err(_) => 60,
    }
}

fn soak_go() -> &'static GoVersion {
    match std::env::var("TIMERSCOPE_SOAK_GO") {
        Ok(v) => timerscope_tests::go_version(&v)
            .unwrap_or_else(|| panic!("TIMERSCOPE_SOAK_GO={v:?} is not a fixture Go version")),
        Err(_) => reference_go(),
    }
}

/// The fixture's JSON line with `"event": event` in `stdout`.
fn json_event(stdout: &[u8], event: &str) -> Value {
    let stdout = String::from_utf8_lossy(stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == event)
        .unwrap_or_else(|| panic!("no {event} line in {stdout}"))
}

/// Waits for a recorder, killing it and failing after `timeout`; returns its exit status and
/// the rest of its stderr.
fn finish_recording(
    mut recorder: Child,
    mut stderr: BufReader<std::process::ChildStderr>,
    timeout: Duration,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = recorder.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = recorder.kill();
            let _ = recorder.wait();
            panic!("timerscope still running after {timeout:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    (status, rest)
}

/// The soak: a Go program churning timers from many goroutines whose stacks grow and are
/// preempted all the time, probed from its first instruction for the whole run. It must exit
/// by itself with status 0, and every timer call it counted must be in the profile exactly once
/// at the function that made it, with no drop.
#[test]
fn soak_target_survives_with_exact_counts() {
    let go = soak_go();
    let seconds = soak_seconds();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("soak.pb.gz");
    let binary = fixture_path(SOAK, go, Variant::Normal).expect("fixture built");
    let started = Instant::now();
    let result = output_within(
        Command::new(timerscope())
            .args(["record", "-o"])
            .arg(&output)
            .arg("--")
            .arg(&binary)
            .args(["-duration", &format!("{seconds}s"), "-workers", "8"]),
        Duration::from_secs(seconds + 180),
    );
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&result.stderr);
    // The fixture's own exit status is passed through: 0 means it ran to its end.
    assert!(
        result.status.success(),
        "timerscope or the soak fixture failed ({}): {stderr}",
        result.status
    );
    for crash in [
        "fatal error",
        "panic:",
        "unexpected return pc",
        "SIGILL",
        "SIGTRAP",
        "SIGSEGV",
    ] {
        assert!(!stderr.contains(crash), "{crash:?} on stderr: {stderr}");
    }
    assert_eq!(
        reported_losses(&stderr),
        None,
        "no loss is reported: {stderr}"
    );
    let summary = json_event(&result.stdout, "summary");
    assert_eq!(summary["go"], go.runtime_version());
    // The stress really happened: many rounds, recursion past the kernel's unwind limit, GCs.
    assert!(count(&summary, "rounds") > 0, "{summary}");
    assert!(
        count(&summary, "max_frames") > KERNEL_STACK_FRAMES,
        "{summary}"
    );
    assert!(count(&summary, "num_gc") >= seconds as i64, "{summary}");

    let profile = read_profile(&output);
    let drops = profile_counters(&profile, "drops");
    assert!(drops.values().all(|&n| n == 0), "drops: {drops:?}");
    let created = cum(&profile, "timers_created", TIMER_OPS, None);
    let reset = cum(&profile, "timers_reset", TIMER_OPS, None);
    let stopped = cum(&profile, "timers_stopped", TIMER_OPS, None);
    let fired = cum(&profile, "timers_fired", TIMER_OPS, None);
    let live = cum(&profile, "timers_live", TIMER_OPS, None);
    println!(
        "soak: {go}, {seconds}s (recording {:.0}s): {} rounds in {} fresh goroutines up to {} \
         frames deep, {} GCs; fixture counted created={} reset={} stopped={} fired={}; profile \
         has created={created} reset={reset} stopped={stopped} fired={fired} live={live}; \
         drops {drops:?}",
        elapsed.as_secs_f64(),
        count(&summary, "rounds"),
        count(&summary, "rounds"),
        count(&summary, "max_frames"),
        count(&summary, "num_gc"),
        count(&summary, "created"),
        count(&summary, "reset"),
        count(&summary, "stopped"),
        count(&summary, "fired"),
    );
    assert_eq!(created, count(&summary, "created"));
    assert_eq!(reset, count(&summary, "reset"));
    assert_eq!(stopped, count(&summary, "stopped"));
    assert_eq!(fired, count(&summary, "fired"));
    assert_eq!(live, 0, "every timer was stopped or fired");
}

/// `record --pid` on a target that exits by itself: the recording ends there, the exit is
/// reported, and the profile holds everything the target did.
#[test]
fn target_exiting_mid_recording_still_gets_its_profile() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("exited.pb.gz");
    let mut fixture = Fixture::spawn(
        SOAK,
        go,
        Variant::Normal,
        &["-duration", "3s", "-workers", "2"],
    );
    let (recorder, stderr) = start_recording(fixture.pid(), &output, &[]);
    fixture.start_scenario();
    let summary = fixture.summary();
    let exit = fixture.child.wait().unwrap();
    assert!(exit.success(), "the fixture exits by itself: {exit}");
    let (status, stderr) = finish_recording(recorder, stderr, Duration::from_secs(60));
    assert!(status.success(), "timerscope exits 0: {status}: {stderr}");
    assert!(
        stderr.contains(&format!("target pid {} exited", fixture.pid())),
        "the exit is reported: {stderr}"
    );
    let profile = read_profile(&output);
    assert_eq!(profile.comment_value("stopped_by"), Some("TargetExited"));
    assert!(count(&summary, "created") > 0, "{summary}");
    assert_eq!(
        cum(&profile, "timers_created", TIMER_OPS, None),
        count(&summary, "created")
    );
    assert_eq!(
        cum(&profile, "timers_stopped", TIMER_OPS, None),
        count(&summary, "stopped")
    );
    assert_eq!(
        cum(&profile, "timers_fired", TIMER_OPS, None),
        count(&summary, "fired")
    );
}

/// Two processes of one binary work at the same time; only the recorded one is counted.
#[test]
fn a_second_process_of_the_same_binary_is_never_recorded() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("one.pb.gz");
    let mut recorded = Fixture::spawn(
        SOAK,
        go,
        Variant::Normal,
        &["-rounds", "300", "-workers", "2"],
    );
    let mut other = Fixture::spawn(
        SOAK,
        go,
        Variant::Normal,
        &["-rounds", "700", "-workers", "2"],
    );
    let (recorder, stderr) = start_recording(recorded.pid(), &output, &[]);
    other.start_scenario();
    recorded.start_scenario();
    let recorded_summary = recorded.summary();
    let other_summary = other.summary();
    kill(Pid::from_raw(recorder.id() as i32), Signal::SIGINT).unwrap();
    let (status, stderr) = finish_recording(recorder, stderr, Duration::from_secs(60));
    assert!(status.success(), "timerscope exits 0: {status}: {stderr}");

    let profile = read_profile(&output);
    for (sample_type, key) in [
        ("timers_created", "created"),
        ("timers_reset", "reset"),
        ("timers_stopped", "stopped"),
    ] {
        assert_ne!(
            count(&recorded_summary, key),
            count(&other_summary, key),
            "the two processes make different numbers of calls"
        );
        assert_eq!(
            cum(&profile, sample_type, TIMER_OPS, None),
            count(&recorded_summary, key),
            "{sample_type}: only pid {}'s calls (the other made {})",
            recorded.pid(),
            count(&other_summary, key)
        );
    }
}

/// With kernel maps far too small, events and stacks are lost, and every loss is counted: on
/// stderr, in the profile's comments, and enough to account for what the profile misses.
#[test]
fn tiny_maps_count_every_lost_event_and_stack() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("tiny.pb.gz");
    let binary = fixture_path(SOAK, go, Variant::Normal).expect("fixture built");
    let leaked = 400;
    let result = output_within(
        Command::new(timerscope())
            .args(["record", "--max-sites", "4", "--max-live", "16"])
            .args(["--max-stacks", "16", "-o"])
            .arg(&output)
            .arg("--")
            .arg(&binary)
            .args(["-rounds", "200", "-workers", "2"])
            .args(["-leak", &leaked.to_string()]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{}: {stderr}", result.status);
    let summary = json_event(&result.stdout, "summary");
    assert_eq!(count(&summary, "pending"), leaked);

    let profile = read_profile(&output);
    let drops = profile_counters(&profile, "drops");
    let total: u64 = drops.values().sum();
    assert!(total > 0, "drops: {drops:?}");
    assert_eq!(
        reported_losses(&stderr),
        Some(total),
        "stderr reports the profile's drops {drops:?}: {stderr}"
    );
    for reason in ["site_map_full", "live_map_full"] {
        assert!(drops[reason] > 0, "{reason}: {drops:?}");
    }
    let lost_stacks = drops["stack_map_full"];
    assert!(lost_stacks > 0, "{drops:?}");
    println!("tiny maps: fixture {summary}; drops {drops:?}");

    // Every pending timer is live in the profile or was counted as not tracked.
    let live_index = profile.sample_index(Some("timers_live")).unwrap();
    let live: i64 = profile.samples.iter().map(|s| s.values[live_index]).sum();
    assert!(
        live + drops["live_map_full"] as i64 >= count(&summary, "pending"),
        "live {live} + live_map_full {} < pending {}",
        drops["live_map_full"],
        count(&summary, "pending")
    );
    // Every creation is at the fixture's functions, or its stack or its count was lost.
    let created = cum(&profile, "timers_created", TIMER_OPS, None)
        + cum(&profile, "timers_created", LEAK_TIMERS, None);
    assert!(created <= count(&summary, "created"), "never over-counted");
    let unattributed = lost_stacks + drops["site_map_full"];
    assert!(
        created + unattributed as i64 >= count(&summary, "created"),
        "created {created} + lost stacks and sites {unattributed} < fixture's {}",
        count(&summary, "created")
    );
}

/// A full live-timer map loses only liveness, never counts: every creation and stop is still
/// counted exactly, and each pending timer is live in the profile or counted as untracked.
#[test]
fn a_full_live_map_loses_liveness_but_no_count() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("live.pb.gz");
    let binary = fixture_path(SOAK, go, Variant::Normal).expect("fixture built");
    let leaked = 300;
    let result = output_within(
        Command::new(timerscope())
            .args(["record", "--max-live", "16", "-o"])
            .arg(&output)
            .arg("--")
            .arg(&binary)
            .args(["-rounds", "100", "-workers", "2"])
            .args(["-leak", &leaked.to_string()]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{}: {stderr}", result.status);
    let summary = json_event(&result.stdout, "summary");
    let profile = read_profile(&output);
    let drops = profile_counters(&profile, "drops");
    assert!(drops["live_map_full"] > 0, "{drops:?}");
    assert_eq!(
        reported_losses(&stderr),
        Some(drops.values().sum()),
        "{stderr}"
    );
    let others: u64 = drops
        .iter()
        .filter(|(reason, _)| *reason != "live_map_full")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(others, 0, "only the live map overflows: {drops:?}");
    assert_eq!(
        cum(&profile, "timers_created", TIMER_OPS, None)
            + cum(&profile, "timers_created", LEAK_TIMERS, None),
        count(&summary, "created")
    );
    assert_eq!(
        cum(&profile, "timers_stopped", TIMER_OPS, None),
        count(&summary, "stopped")
    );
    let live = cum(&profile, "timers_live", LEAK_TIMERS, None);
    assert!(live < leaked, "the map holds fewer than {leaked}: {live}");
    assert!(
        live + drops["live_map_full"] as i64 >= leaked,
        "live {live} + live_map_full {} < pending {leaked}",
        drops["live_map_full"]
    );
}

/// The fuzz seeds, including the inputs that once crashed a parser (`regression-*`), through
/// the same calls as the fuzz targets in fuzz/: no panic, and the real samples parse.
#[test]
fn fuzz_seeds_and_past_crashes_parse_without_panic() {
    use gobinary::{BuildInfo, ElfInfo, GoBinary, Image, Pclntab, elf::Segment};

    let seeds = timerscope_tests::workspace_root().join("fuzz/seeds");
    let files = |target: &str| {
        let mut paths: Vec<_> = std::fs::read_dir(seeds.join(target))
            .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "fuzz/seeds/{target} is empty");
        paths
            .into_iter()
            .map(|p| (std::fs::read(&p).unwrap(), p))
            .collect::<Vec<_>>()
    };
    let is_regression = |path: &Path| {
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("regression-")
    };

    for (data, path) in files("pprof_decode") {
        let profile = pprof::decode(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let resolved = pprof::ResolvedProfile::new(&profile);
        assert!(!resolved.samples.is_empty(), "{}", path.display());
    }
    for (data, path) in files("buildinfo_parse") {
        let segment = Segment {
            vaddr: 0x40_0000,
            memsz: data.len() as u64,
            offset: 0,
            filesz: data.len() as u64,
            executable: false,
            writable: true,
        };
        let parsed = BuildInfo::parse(&data);
        let _ = BuildInfo::read(&data, None, &[segment], None);
        if !is_regression(&path) {
            let info = parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(info.version.major, 1, "{}", path.display());
        }
    }
    for (data, path) in files("elf_parse") {
        let elf = ElfInfo::parse(&data);
        if let Ok(elf) = &elf {
            let _ = GoBinary::from_image(Image::from_bytes(data.clone()));
            for symbol in elf.symbols.values() {
                let _ = elf.file_offset(symbol.address);
            }
        } else {
            assert!(is_regression(&path), "{}: not ELF", path.display());
        }
    }
    for (_, path) in files("pclntab_find") {
        let image = Image::open(&path).unwrap();
        let elf = ElfInfo::parse(&image).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let table =
            Pclntab::find(image, &elf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(table.function_count() > 1000, "{}", path.display());
        let main = table.function("main.main").expect("main.main");
        assert_eq!(table.frames(main.entry)[0].function, "main.main");
    }
}
