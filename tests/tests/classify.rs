//! `timerscope classify` on profiles recorded from real Go processes, for Go 1.19, 1.22, 1.23 and
//! 1.27: each finding kind at the function and line that the fixture source marks with
//! `// SITE: name`, following the timer semantics of the Go version (docs/go-runtime.md, "Channel mode"), and
//! no finding at all on healthy programs. Heap and goroutine growth, which come from Go's own
//! profiles rather than from `timerscope record`, are covered the same way in
//! timerscope/tests/go_profiles.rs.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use common::{Fixture, count, cum, cum_through, read_profile, record_launch, timerscope};
use pprof::ResolvedProfile;
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant, fixture_path, fixture_sources_root};

/// One `#[test]` per Go version of each timer design (1.19, 1.22, 1.23, 1.27), each calling
/// `$body(&GoVersion)`.
macro_rules! on_acceptance_go_versions {
    ($name:ident, $body:path) => {
        per_go_version!($name, $body, [
            go1_19 => "1.19", go1_22 => "1.22", go1_23 => "1.23", go1_27 => "1.27"
        ]);
    };
}

/// The 1-based line of `tests/fixtures/<fixture>/main.go` that ends in `// SITE: <marker>`.
fn site_line(fixture: &str, marker: &str) -> i64 {
    let path = fixture_sources_root().join(fixture).join("main.go");
    let source = fs::read_to_string(&path).unwrap();
    let tag = format!("// SITE: {marker}");
    let lines: Vec<usize> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with(&tag))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "exactly one {tag:?} in {}", path.display());
    lines[0] as i64
}

/// Where a finding must point: a function of a fixture and its `// SITE:` line.
struct Site {
    kind: &'static str,
    fixture: &'static str,
    function: &'static str,
    marker: &'static str,
}

/// `timerscope classify --json PROFILES...`: its findings and notes. Without `--fail-on` the
/// exit status is 0 whatever is found.
fn classify(profiles: &[PathBuf]) -> (Vec<Value>, Vec<Value>) {
    let output = Command::new(timerscope())
        .arg("classify")
        .arg("--json")
        .args(profiles)
        .output()
        .expect("timerscope runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "timerscope classify {profiles:?}: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("classify --json printed no JSON ({e}): {stdout}"));
    let list = |key: &str| {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} array in {report}"))
            .clone()
    };
    (list("findings"), list("notes"))
}

/// The findings are exactly one, of `expected.kind` at its function and `// SITE:` line.
fn assert_single_finding(findings: &[Value], expected: &Site, go: &GoVersion) -> Value {
    assert_eq!(
        findings.len(),
        1,
        "{go}: expected only {} at {}: {findings:#?}",
        expected.kind,
        expected.function
    );
    let finding = &findings[0];
    assert_eq!(finding["kind"], expected.kind, "{go}: {finding:#}");
    assert_eq!(finding["function"], expected.function, "{go}: {finding:#}");
    assert_eq!(
        finding["line"].as_i64(),
        Some(site_line(expected.fixture, expected.marker)),
        "{go}: {finding:#}"
    );
    let file = finding["file"].as_str().unwrap_or_default();
    assert!(
        file.ends_with(&format!("/{}/main.go", expected.fixture)),
        "{go}: file {file:?}"
    );
    finding.clone()
}

fn assert_no_findings(findings: &[Value], what: &str, go: &GoVersion) {
    assert!(
        findings.is_empty(),
        "{go}: {what} must give no finding (false positives are bugs): {findings:#?}"
    );
}

/// Whether unreferenced unstopped channel timers and tickers stay in the runtime: always before
/// Go 1.23, and on 1.23-1.26 with asynchronous timer channels (docs/go-runtime.md, "Channel mode").
fn channel_timers_retained(go: &GoVersion, async_timer_channels: bool) -> bool {
    go.minor() < 23 || async_timer_channels
}

/// The profile says which timer semantics it was recorded under, as the classifier reads them.
fn assert_timer_semantics(profile: &ResolvedProfile, go: &GoVersion, retained: bool) {
    assert_eq!(
        profile.comment_value("go_version"),
        Some(go.runtime_version().as_str())
    );
    assert_eq!(
        profile.comment_value("timer_family"),
        Some(if go.minor() < 23 { "A" } else { "B" }),
        "{go}"
    );
    assert_eq!(
        profile.comment_value("timer_channel_mode"),
        Some(if retained { "async" } else { "sync" }),
        "{go}"
    );
}

/// `timerscope record -o F -- FIXTURE ARGS` with extra environment for the fixture.
fn record_launch_with_env(
    dir: &Path,
    name: &str,
    go: &GoVersion,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Value, PathBuf, ResolvedProfile) {
    let binary = fixture_path(name, go, Variant::Normal).expect("fixture built");
    let output = dir.join(format!("{name}-{}-{}.pb.gz", go.version, args[0]));
    let result = Command::new(timerscope())
        .arg("record")
        .arg("-o")
        .arg(&output)
        .arg("--")
        .arg(&binary)
        .args(args)
        .env_remove("GODEBUG")
        .envs(env.iter().copied())
        .output()
        .expect("timerscope runs");
    assert!(
        result.status.success(),
        "timerscope record failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no fixture summary in {stdout}"));
    let profile = read_profile(&output);
    (summary, output, profile)
}

/// `timerscope record --pid PID --duration D -o OUTPUT` on a running process.
fn record_pid(pid: u32, duration: &str, output: &Path) {
    let result = Command::new(timerscope())
        .args(["record", "--pid", &pid.to_string(), "--duration", duration])
        .arg("-o")
        .arg(output)
        .output()
        .expect("timerscope runs");
    assert!(
        result.status.success(),
        "timerscope record --pid {pid}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Starts the fixture's scenario and records it `recordings` times in a row, `duration` each.
fn record_series(
    dir: &Path,
    fixture: &mut Fixture,
    label: &str,
    recordings: usize,
    duration: &str,
) -> Vec<PathBuf> {
    fixture.start_scenario();
    (1..=recordings)
        .map(|i| {
            let output = dir.join(format!("{label}-{i}.pb.gz"));
            record_pid(fixture.pid(), duration, &output);
            output
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Channel timers and tickers: leaks only where the runtime retains them.

/// A channel-timer leak scenario of the timers fixture, `n` timers at `site`.
struct ChannelTimerLeak {
    scenario: &'static str,
    n: usize,
    /// Label `kind` of the live timers in the profile.
    timer_kind: &'static str,
    site: Site,
}

const AFTER_IN_LOOP: ChannelTimerLeak = ChannelTimerLeak {
    scenario: "after-loop",
    n: 200,
    timer_kind: "timer",
    site: Site {
        kind: "timer-after-in-loop",
        fixture: "timers",
        function: "main.pollWithAfter",
        marker: "after-loop",
    },
};

const UNSTOPPED_TICKERS: ChannelTimerLeak = ChannelTimerLeak {
    scenario: "ticker",
    n: 200,
    timer_kind: "ticker",
    site: Site {
        kind: "ticker-not-stopped",
        fixture: "timers",
        function: "main.startTickers",
        marker: "ticker",
    },
};

const REFERENCED_UNSTOPPED_TIMERS: ChannelTimerLeak = ChannelTimerLeak {
    scenario: "timer-leak",
    n: 200,
    timer_kind: "timer",
    site: Site {
        kind: "timer-not-stopped",
        fixture: "timers",
        function: "main.openSessions",
        marker: "timer-leak",
    },
};

/// Records the leak scenario and checks `classify`: the finding where channel timers are
/// retained, none where they are not (Go 1.23+ with synchronous channels collects unreferenced
/// ones without any hook seeing it, so live counts prove nothing there), while the profile shows
/// the same live timers on every version.
fn check_channel_timer_leak(leak: &ChannelTimerLeak, go: &GoVersion, async_timer_channels: bool) {
    let dir = tempfile::tempdir().unwrap();
    let n = leak.n.to_string();
    let env: &[(&str, &str)] = if async_timer_channels {
        &[("GODEBUG", "asynctimerchan=1")]
    } else {
        &[]
    };
    let (summary, path, profile) =
        record_launch_with_env(dir.path(), "timers", go, &[leak.scenario, "-n", &n], env);
    let retained = channel_timers_retained(go, async_timer_channels);
    assert_timer_semantics(&profile, go, retained);
    // The same timers are live in the profile on every version: only the verdict differs.
    assert_eq!(
        cum(
            &profile,
            "timers_live",
            leak.site.function,
            Some(leak.timer_kind)
        ),
        count(&summary, "pending"),
        "{go}: {summary}"
    );
    let (findings, _) = classify(&[path]);
    if retained {
        assert_single_finding(&findings, &leak.site, go);
    } else {
        assert_no_findings(&findings, "channel timers the runtime does not retain", go);
    }
}

fn time_after_in_a_loop(go: &GoVersion) {
    check_channel_timer_leak(&AFTER_IN_LOOP, go, false);
}
on_acceptance_go_versions!(time_after_in_a_loop, super::time_after_in_a_loop);

fn unstopped_tickers(go: &GoVersion) {
    check_channel_timer_leak(&UNSTOPPED_TICKERS, go, false);
}
on_acceptance_go_versions!(unstopped_tickers, super::unstopped_tickers);

fn referenced_timers_never_stopped(go: &GoVersion) {
    check_channel_timer_leak(&REFERENCED_UNSTOPPED_TIMERS, go, false);
}
on_acceptance_go_versions!(
    referenced_timers_never_stopped,
    super::referenced_timers_never_stopped
);

/// Go 1.23 with GODEBUG=asynctimerchan=1 keeps the pre-1.23 semantics, so the same programs leak.
/// (1.19 and 1.22 are always asynchronous; 1.27 refuses the setting at startup.)
#[test]
fn go1_23_with_async_timer_channels_leaks_like_go1_22() {
    let go = timerscope_tests::go_version("1.23").unwrap();
    for leak in [
        AFTER_IN_LOOP,
        UNSTOPPED_TICKERS,
        REFERENCED_UNSTOPPED_TIMERS,
    ] {
        check_channel_timer_leak(&leak, go, true);
    }
}

// ---------------------------------------------------------------------------------------------
// AfterFunc and context timers: leaks on every version.

fn afterfunc_timers_pending(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, path, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["afterfunc-leak", "-n", "200"],
    );
    assert_eq!(
        cum(
            &profile,
            "timers_live",
            "main.leakAfterFuncs",
            Some("afterfunc")
        ),
        count(&summary, "pending")
    );
    let (findings, _) = classify(&[path]);
    let finding = assert_single_finding(
        &findings,
        &Site {
            kind: "afterfunc-pending",
            fixture: "timers",
            function: "main.leakAfterFuncs",
            marker: "afterfunc-leak",
        },
        go,
    );
    let evidence = finding["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("{} live AfterFunc", count(&summary, "pending"))),
        "{go}: {evidence}"
    );
}
on_acceptance_go_versions!(afterfunc_timers_pending, super::afterfunc_timers_pending);

fn context_with_timeout_never_cancelled(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, path, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["context-leak", "-n", "200"],
    );
    assert_eq!(
        cum(
            &profile,
            "timers_live",
            "main.handleWithTimeouts",
            Some("afterfunc")
        ),
        count(&summary, "pending")
    );
    let (findings, _) = classify(&[path]);
    let finding = assert_single_finding(
        &findings,
        &Site {
            kind: "afterfunc-pending",
            fixture: "timers",
            function: "main.handleWithTimeouts",
            marker: "context-leak",
        },
        go,
    );
    // Recognised as a context deadline timer: the fix is to call cancel, not to Stop a timer.
    let evidence = finding["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("context deadline timers"),
        "{go}: {evidence}"
    );
    let suggestion = finding["suggestion"].as_str().unwrap();
    assert!(suggestion.contains("cancel"), "{go}: {suggestion}");
}
on_acceptance_go_versions!(
    context_with_timeout_never_cancelled,
    super::context_with_timeout_never_cancelled
);

// ---------------------------------------------------------------------------------------------
// Timers firing late.

fn timers_fire_late_when_the_only_p_is_busy(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    // Two rounds of 50 one-millisecond timers, each behind 300 ms of non-preemptible work: a mean
    // delay far above the classifier's 20 ms.
    let (summary, path, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["starve", "-n", "50", "-rounds", "2", "-duration", "300ms"],
    );
    let fired = count(&summary, "fired");
    assert_eq!(fired, count(&summary, "created"), "{summary}");
    assert_eq!(
        cum(
            &profile,
            "timers_fired",
            "main.starveTimers",
            Some("afterfunc")
        ),
        fired
    );
    let (findings, _) = classify(&[path]);
    let finding = assert_single_finding(
        &findings,
        &Site {
            kind: "timer-fire-delay",
            fixture: "timers",
            function: "main.starveTimers",
            marker: "starve",
        },
        go,
    );
    let evidence = finding["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("fired {fired} times")),
        "{go}: {evidence}"
    );
}
on_acceptance_go_versions!(
    timers_fire_late_when_the_only_p_is_busy,
    super::timers_fire_late_when_the_only_p_is_busy
);

// ---------------------------------------------------------------------------------------------
// Mapped memory growing over several recordings.

/// The mmap fixture's leak: 1 MiB every 250 ms (4 MiB/s) for 25 s, longer than three
/// recordings.
fn mmap_leak(go: &GoVersion) -> Fixture {
    Fixture::spawn(
        "mmap",
        go,
        Variant::Normal,
        &["leak", "-n", "100", "-every", "250ms", "-hold", "60s"],
    )
}

fn mmap_leak_over_three_recordings(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = mmap_leak(go);
    let profiles = record_series(dir.path(), &mut fixture, "mmap-leak", 3, "3s");
    // Each recording attributes what was mapped during it to the mapping call.
    for path in &profiles {
        let kept = cum(
            &read_profile(path),
            "mmap_live_bytes",
            "main.leakMappings",
            None,
        );
        assert!(kept >= 4 << 20, "{go}: {} kept {kept} B", path.display());
    }
    let (findings, _) = classify(&profiles);
    let finding = assert_single_finding(
        &findings,
        &Site {
            kind: "mmap-growth",
            fixture: "mmap",
            function: "main.leakMappings",
            marker: "mmap-leak",
        },
        go,
    );
    assert_eq!(
        finding["severity"], "high",
        "{go}: bytes kept in all three recordings: {finding:#}"
    );
    assert_mmap_growth_in_one_recording(&profiles[0], go);
}
on_acceptance_go_versions!(
    mmap_leak_over_three_recordings,
    super::mmap_leak_over_three_recordings
);

/// One recording is a window of its own: what was mapped during it and is still mapped at its
/// end, per second recorded. One window is no trend, so it is medium.
fn assert_mmap_growth_in_one_recording(profile: &Path, go: &GoVersion) {
    let (findings, _) = classify(&[profile.to_path_buf()]);
    let finding = assert_single_finding(
        &findings,
        &Site {
            kind: "mmap-growth",
            fixture: "mmap",
            function: "main.leakMappings",
            marker: "mmap-leak",
        },
        go,
    );
    assert_eq!(finding["severity"], "medium", "{go}: {finding:#}");
    let evidence = finding["evidence"].as_str().unwrap();
    assert!(evidence.contains("during one "), "{go}: {evidence}");
}

/// The single-recording finding on the versions the three-recording test leaves out, so every
/// toolchain is covered.
fn mmap_leak_in_one_recording(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = mmap_leak(go);
    let profiles = record_series(dir.path(), &mut fixture, "mmap-leak", 1, "3s");
    assert_mmap_growth_in_one_recording(&profiles[0], go);
}
per_go_version!(mmap_leak_in_one_recording, super::mmap_leak_in_one_recording, [
    go1_21 => "1.21", go1_24 => "1.24", go1_25 => "1.25", go1_26 => "1.26"
]);

// ---------------------------------------------------------------------------------------------
// Healthy programs: no finding at all.

fn healthy_programs_recorded_from_launch(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, path, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["healthy", "-n", "50"],
    );
    assert_eq!(count(&summary, "pending"), 0, "{summary}");
    // The profile is full of timer activity, none of it left behind.
    assert!(
        cum(&profile, "timers_created", "main.healthyTimers", None) >= count(&summary, "created"),
        "{go}"
    );
    assert!(
        cum(&profile, "timers_fired", "main.healthyTimers", None) >= count(&summary, "fired"),
        "{go}"
    );
    assert_eq!(
        cum(&profile, "timers_live", "main.healthyTimers", None),
        0,
        "{go}"
    );
    let (findings, _) = classify(&[path]);
    assert_no_findings(&findings, "timers healthy", go);

    let (summary, path, profile) = record_launch(
        dir.path(),
        "mmap",
        go,
        Variant::Normal,
        &["balanced", "-n", "20"],
    );
    assert_eq!(
        cum_through(
            &profile,
            "mmap_bytes",
            &["main.balancedMappings", "syscall.mmap"]
        ),
        count(&summary, "bytes_mapped")
    );
    let (findings, _) = classify(&[path]);
    assert_no_findings(&findings, "mmap balanced", go);
}
on_acceptance_go_versions!(
    healthy_programs_recorded_from_launch,
    super::healthy_programs_recorded_from_launch
);

/// Timer workloads recorded three times each by `--pid` while they run: the paced `healthy`
/// rounds, and `churn`, a hot loop of NewTimer, Reset, Stop, AfterFunc, Stop (a busy server's
/// per-request timeouts).
fn healthy_timers_over_three_recordings(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    for (label, function, args) in [
        (
            "healthy",
            "main.healthyTimers",
            ["healthy", "-n", "20", "-duration", "60s"],
        ),
        (
            "churn",
            "main.churn",
            ["churn", "-n", "0", "-duration", "60s"],
        ),
    ] {
        let mut fixture = Fixture::spawn("timers", go, Variant::Normal, &args);
        let profiles = record_series(dir.path(), &mut fixture, label, 3, "2s");
        for path in &profiles {
            let created = cum(&read_profile(path), "timers_created", function, None);
            assert!(created > 0, "{go}: {} saw no timers", path.display());
        }
        let (findings, _) = classify(&profiles);
        assert_no_findings(
            &findings,
            &format!("timers {label} over three recordings"),
            go,
        );
    }
}
on_acceptance_go_versions!(
    healthy_timers_over_three_recordings,
    super::healthy_timers_over_three_recordings
);

fn balanced_mmaps_over_three_recordings(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::spawn(
        "mmap",
        go,
        Variant::Normal,
        &["balanced", "-n", "1000", "-every", "50ms"],
    );
    let profiles = record_series(dir.path(), &mut fixture, "mmap-balanced", 3, "2s");
    for path in &profiles {
        let mapped = cum(
            &read_profile(path),
            "mmap_bytes",
            "main.balancedMappings",
            None,
        );
        assert!(mapped > 0, "{go}: {} saw no mappings", path.display());
    }
    let (findings, _) = classify(&profiles);
    assert_no_findings(&findings, "mmap balanced over three recordings", go);
}
on_acceptance_go_versions!(
    balanced_mmaps_over_three_recordings,
    super::balanced_mmaps_over_three_recordings
);

// ---------------------------------------------------------------------------------------------
// A real server under load: Debian's caddy (built by Go 1.19) serving a file to wrk on loopback.
// Every request re-arms connection deadlines and starts goroutines; none of that is a leak.

/// Kills and reaps a child when the test ends, passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_server_under_load_gives_no_finding() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("index.html"), "hello\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let caddy = Reaped(
        Command::new("caddy")
            .args(["file-server", "--listen", &address, "--root"])
            .arg(dir.path())
            // caddy keeps its autosaved config and state under HOME.
            .env("HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("caddy is installed by `cargo xtask setup`"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "caddy never listened on {address}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _load = Reaped(
        Command::new("wrk")
            .args(["-t1", "-c32", "-d30s", &format!("http://{address}/")])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("wrk is installed by `cargo xtask setup`"),
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let output = dir.path().join("caddy.pb.gz");
    record_pid(caddy.0.id(), "6s", &output);
    let profile = read_profile(&output);
    // The recording saw the load: deadline re-arms of every request.
    let resets = profile
        .column(pprof::vocabulary::SampleType::TimersReset)
        .map_or(0, |i| profile.total(i));
    assert!(
        resets > 1000,
        "caddy under wrk re-armed only {resets} timers"
    );
    let (findings, _) = classify(&[output]);
    assert!(
        findings.is_empty(),
        "caddy under load must give no finding (false positives are bugs): {findings:#?}"
    );
}
