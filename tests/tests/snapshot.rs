//! The snapshot tier: the pending timers read from the runtime's heaps in a live process's
//! memory equal what the `pending` fixture knows it left pending, by kind and by AfterFunc
//! callback, on every Go toolchain and build variant (stripped binaries find `runtime.allp`
//! through their code, PIE ones through the load bias).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Fixture, PidRecording, cum, read_json_line, read_profile, timerscope};
use gobinary::{GoBinary, runtime::timers};
use pprof::vocabulary::TimerKind;
use timerscope_tests::{GoVersion, Variant, fixture_path, go_version};

/// The pending fixture, started without -wait-stdin: it makes its timers at once, prints its
/// summary, and keeps them pending until its stdin (held here) closes. Killed on drop.
struct Pending {
    process: Child,
    _stdin: Option<ChildStdin>,
    summary: serde_json::Value,
    binary: GoBinary,
}

impl Pending {
    fn start(go: &GoVersion, variant: Variant, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut process =
            Command::new(fixture_path("pending", go, variant).expect("fixture built"))
                .args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
        let stdin = process.stdin.take();
        let summary = read_json_line(&mut BufReader::new(process.stdout.take().unwrap()));
        assert_eq!(summary["event"], "summary", "{summary}");
        let binary = GoBinary::open(Path::new(&format!("/proc/{}/exe", process.id()))).unwrap();
        Self {
            process,
            _stdin: stdin,
            summary,
            binary,
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn pending_timers_match_the_fixture(go: &GoVersion) {
    for variant in Variant::ALL {
        let fixture = Pending::start(go, variant, &[], &[]);
        let (binary, pid, summary) = (&fixture.binary, fixture.pid(), &fixture.summary);
        let snapshot = timers::snapshot(binary, pid)
            .unwrap_or_else(|e| panic!("{go} {variant}: snapshot failed: {e}"));
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut callbacks: BTreeMap<String, u64> = BTreeMap::new();
        for timer in &snapshot.timers {
            let kind = TimerKind::of_callback(Some(&timer.callback), timer.period > 0);
            *kinds.entry(kind.to_string()).or_default() += 1;
            if let Some(function) = &timer.function {
                *callbacks.entry(function.to_string()).or_default() += 1;
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
                .filter(|t| &*t.callback != "runtime.(*scavengerState).init.func1")
                .all(|t| (0..=3_600_000_000_000).contains(&due(&t))),
            "{context}"
        );
    }
}

per_go_version!(pending_timers, super::pending_timers_match_the_fixture);

/// A heap that changes under every read (the fixture's `-churn` goroutine makes and stops
/// AfterFuncs on the only P, where the 20,000 pending ones are) is kept as read and counted as
/// moving, not dropped: its pending timers are found, none twice.
fn a_moving_heap_is_kept_and_counted(go: &GoVersion) {
    const SESSIONS: u64 = 20_000;
    let count = SESSIONS.to_string();
    let fixture = Pending::start(
        go,
        Variant::Normal,
        &["-afterfuncs", &count, "-churn"],
        &[("GOMAXPROCS", "1")],
    );
    let (binary, pid) = (&fixture.binary, fixture.pid());
    // At least 5 snapshots, and more until one caught the heap moving: on a loaded machine the
    // churning goroutine may not run during the first reads.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut moving = 0;
    for read in 1.. {
        let snapshot =
            timers::snapshot(binary, pid).unwrap_or_else(|e| panic!("{go}: snapshot failed: {e}"));
        moving += snapshot.moving;
        let sessions = snapshot
            .timers
            .iter()
            .filter(|t| t.function.as_deref() == Some("main.expireSession"))
            .count() as u64;
        // A timer the runtime moves within the heap while its array is copied can be missed
        // (the set is not one moment's), never counted twice.
        assert!(
            (SESSIONS * 99 / 100..=SESSIONS).contains(&sessions),
            "{go}: {sessions} of {SESSIONS} pending AfterFuncs found, {} heaps moving, {} inconsistent",
            snapshot.moving,
            snapshot.inconsistent
        );
        if read >= 5 && moving > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{go}: the churning heap never changed during {read} reads"
        );
    }
}

per_go_version!(moving_heap, super::a_moving_heap_is_kept_and_counted);

/// A copy of `binary` in `dir` with the one occurrence of `from` replaced by `to` (same length).
fn patched_copy(binary: &Path, dir: &Path, from: &[u8], to: &[u8]) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = fs::read(binary).unwrap();
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "{} occurrences in {}",
        at.len(),
        binary.display()
    );
    bytes[at[0]..at[0] + to.len()].copy_from_slice(to);
    let copy = dir.join(binary.file_name().unwrap());
    fs::write(&copy, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// A stripped binary finds `runtime.allp` only by decoding `runtime.procresize`: with that
/// function's name damaged in its pclntab (the program runs as before, the runtime never looks
/// functions up by name) the snapshot cannot locate the heaps. `record` says so once, on stderr
/// and in the profile's `snapshot` comment, and the probes carry on: the timers the fixture makes
/// while recorded are live at their creating function.
fn damaged_pclntab_refuses_the_snapshot(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture_path("pending", go, Variant::Stripped).expect("fixture built");
    let damaged = patched_copy(
        &original,
        dir.path(),
        b"\0runtime.procresize\0",
        b"\0runtime.procresizX\0",
    );
    let mut command = Command::new(&damaged);
    command.arg("-wait-stdin");
    let mut fixture = Fixture::from_command(command);
    let pid = fixture.pid();

    let binary = GoBinary::open(Path::new(&format!("/proc/{pid}/exe"))).unwrap();
    let error = timers::snapshot(&binary, pid).unwrap_err();
    assert!(error.is_refusal(), "{go}: {error}");
    assert!(error.to_string().contains("runtime.allp"), "{error}");

    let output = dir.path().join("damaged.pb.gz");
    let mut recorder = Command::new(timerscope())
        .args([
            "record",
            "--pid",
            &pid.to_string(),
            "--duration",
            "3s",
            "-o",
        ])
        .arg(&output)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(recorder.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("recording pid"), "timerscope said: {first}");
    fixture.start_scenario_with_requests();
    let summary = fixture.summary();
    let rest: Vec<String> = stderr.lines().map_while(Result::ok).collect();
    assert!(recorder.wait().unwrap().success(), "{rest:?}");
    let refusals: Vec<&String> = rest.iter().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusals.len(), 1, "{go}: one line: {rest:?}");
    assert!(
        refusals[0].contains("runtime.allp") && refusals[0].contains("probes alone"),
        "{refusals:?}"
    );

    let profile = read_profile(&output);
    let comment = profile.comment_value("snapshot").unwrap_or_default();
    assert!(
        comment.starts_with("refused (probes only):") && comment.contains("runtime.allp"),
        "{go}: {comment}"
    );
    assert_eq!(cum(&profile, "timers_pending", "main.armSessions", None), 0);
    let sessions = summary["afterfunc"]["main.expireSession"].as_i64().unwrap();
    assert!(sessions > 0, "{summary}");
    assert_eq!(
        cum(&profile, "timers_live", "main.armSessions", None),
        sessions,
        "{go}: {summary}"
    );
}

#[test]
fn damaged_pclntab_go1_22_refuses_the_snapshot() {
    damaged_pclntab_refuses_the_snapshot(go_version("1.22").unwrap());
}

#[test]
fn damaged_pclntab_go1_25_refuses_the_snapshot() {
    damaged_pclntab_refuses_the_snapshot(go_version("1.25").unwrap());
}

/// With creation probes attached before the fixture makes its timers (`record --events create`,
/// the tier `watch` runs by default), every pending timer the snapshot reads sits at the user
/// function that created it: the creation hooks and the heaps agree on each `*runtime.timer`.
fn pending_timers_land_at_their_creating_functions(go: &GoVersion) {
    for variant in [Variant::Normal, Variant::PieStripped] {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("pending.pb.gz");
        let mut fixture = Fixture::spawn("pending", go, variant, &[]);
        let recording = PidRecording::start(fixture.pid(), &output, &["--events", "create"]);
        // Stdin stays open: the timers stay pending until the fixture is killed.
        fixture.start_scenario_with_requests();
        let summary = fixture.summary();
        let status = recording.stop_with(nix::sys::signal::Signal::SIGINT);
        assert!(status.success(), "{go} {variant}: record exits 0: {status}");
        let profile = read_profile(&output);
        let context = format!("{go} {variant}: {summary}");
        assert!(
            profile
                .comment_value("snapshot")
                .is_some_and(|s| s.starts_with("ok ")),
            "{context}: {:?}",
            profile.comments
        );
        let pending =
            |function: &str, kind: &str| cum(&profile, "timers_pending", function, Some(kind));
        let count = |key: &str| summary[key].as_i64().unwrap();
        let afterfuncs = &summary["afterfunc"];
        let afterfunc = |function: &str| afterfuncs[function].as_i64().unwrap();
        assert_eq!(
            pending("main.armSessions", "afterfunc"),
            afterfunc("main.expireSession"),
            "{context}"
        );
        assert_eq!(
            pending("main.armRetries", "afterfunc"),
            afterfunc("main.armRetries.func1"),
            "{context}"
        );
        assert_eq!(
            pending("main.watchTickers", "ticker"),
            count("ticker"),
            "{context}"
        );
        assert_eq!(
            pending("main.watchTimers", "timer"),
            count("timer"),
            "{context}"
        );
        // Unwatched channel timers are in a heap only with asynchronous channels (Go <= 1.22).
        let unwatched = if go.minor() <= 22 {
            count("unwatched_timer")
        } else {
            0
        };
        assert_eq!(
            pending("main.armUnwatched", "timer"),
            unwatched,
            "{context}"
        );
        assert_eq!(
            cum(&profile, "timers_pending", "main.armStopped", None),
            0,
            "{context}"
        );
        // Every one of them came from the snapshot, and none is counted as made before the attach.
        let index = profile.sample_index(Some("timers_pending")).unwrap();
        let at_creation: i64 = profile
            .samples
            .iter()
            .filter(|s| {
                s.values[index] > 0
                    && profile.stack(s).any(|f| {
                        f.function.starts_with("main.arm") || f.function.starts_with("main.watch")
                    })
            })
            .inspect(|s| assert_eq!(s.str_label("source"), Some("snapshot"), "{context}"))
            .map(|s| s.values[index])
            .sum();
        assert_eq!(
            at_creation,
            afterfunc("main.expireSession")
                + afterfunc("main.armRetries.func1")
                + count("ticker")
                + count("timer")
                + unwatched,
            "{context}"
        );
        // Sleep arms its timer without a creation hook: it keeps its callback's attribution.
        assert_eq!(
            cum(
                &profile,
                "timers_pending",
                "[timer created before attach]",
                Some("sleep")
            ),
            count("sleep"),
            "{context}"
        );
        drop(fixture);
    }
}

per_go_version!(
    pending_timers_at_creation,
    super::pending_timers_land_at_their_creating_functions
);

/// Above 10,000 pending timers the profile stops keeping a sample per timer: the AfterFuncs of
/// one creating function, callback and period are one sample counting them all (comment
/// `timers_pending_grouped`), with no per-timer labels, and the counts stay exact.
fn many_pending_timers_are_grouped_by_site(go: &GoVersion) {
    const AFTERFUNCS: &str = "12000";
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("pending.pb.gz");
    let mut fixture = Fixture::spawn("pending", go, Variant::Normal, &["-afterfuncs", AFTERFUNCS]);
    let recording = PidRecording::start(fixture.pid(), &output, &["--events", "create"]);
    fixture.start_scenario_with_requests();
    let summary = fixture.summary();
    let status = recording.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{go}: record exits 0: {status}");
    let profile = read_profile(&output);
    let context = format!("{go}: {summary}");
    let read = profile
        .comments
        .iter()
        .find_map(|c| pprof::vocabulary::parse_snapshot_ok(c))
        .unwrap_or_else(|| panic!("{context}: {:?}", profile.comments))
        .timers;
    assert!(read > 12_000, "{context}: {read} timers read");
    assert_eq!(
        profile.comment_value("timers_pending_grouped"),
        Some(read.to_string().as_str()),
        "{context}"
    );
    let expire = summary["afterfunc"]["main.expireSession"].as_i64().unwrap();
    assert_eq!(expire, 12_000, "{context}");
    assert_eq!(
        cum(
            &profile,
            "timers_pending",
            "main.armSessions",
            Some("afterfunc")
        ),
        expire,
        "{context}"
    );
    let index = profile.sample_index(Some("timers_pending")).unwrap();
    let samples: Vec<_> = profile
        .samples
        .iter()
        .filter(|s| s.values[index] > 0)
        .collect();
    let total: i64 = samples.iter().map(|s| s.values[index]).sum();
    assert_eq!(total, read as i64, "{context}");
    // One sample per site, kind, callback and period: a handful, not one per timer.
    assert!(samples.len() < 20, "{context}: {} samples", samples.len());
    for sample in samples {
        assert!(
            !sample.labels.iter().any(|l| matches!(
                l,
                pprof::SampleLabel::Num { key, .. } if key == "timer" || key == "due_in"
            )),
            "{context}: {:?}",
            sample.labels
        );
    }
    let sessions = profile
        .samples
        .iter()
        .find(|s| s.values[index] == expire)
        .unwrap_or_else(|| panic!("{context}: no sample of all {expire} AfterFuncs"));
    assert_eq!(
        sessions.str_label("callback"),
        Some("main.expireSession"),
        "{context}"
    );
    assert_eq!(sessions.str_label("source"), Some("snapshot"), "{context}");
}

#[test]
fn many_pending_timers_are_grouped_go1_19() {
    many_pending_timers_are_grouped_by_site(go_version("1.19").unwrap());
}

#[test]
fn many_pending_timers_are_grouped_go1_25() {
    many_pending_timers_are_grouped_by_site(go_version("1.25").unwrap());
}

/// A creation map smaller than the timers created forgets the oldest creations and says how
/// many (comment `creations_evicted`): the forgotten timers still count, under their callback
/// as made before the attach, and no more of them sit at their creating function than the map
/// holds.
#[test]
fn a_full_creation_map_counts_what_it_forgot() {
    const MAX_CREATIONS: i64 = 64;
    let go = go_version("1.25").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("pending.pb.gz");
    let mut fixture = Fixture::spawn("pending", go, Variant::Normal, &["-afterfuncs", "500"]);
    let recording = PidRecording::start(
        fixture.pid(),
        &output,
        &[
            "--events",
            "create",
            "--max-creations",
            &MAX_CREATIONS.to_string(),
        ],
    );
    fixture.start_scenario_with_requests();
    let summary = fixture.summary();
    let status = recording.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "record exits 0: {status}");
    let profile = read_profile(&output);
    let context = format!("{summary}: {:?}", profile.comments);
    let expire = summary["afterfunc"]["main.expireSession"].as_i64().unwrap();
    let at_creation = cum(
        &profile,
        "timers_pending",
        "main.armSessions",
        Some("afterfunc"),
    );
    let forgotten = cum(
        &profile,
        "timers_pending",
        "[timer created before attach]",
        Some("afterfunc"),
    );
    assert!(at_creation <= MAX_CREATIONS, "{context}: {at_creation}");
    assert!(
        forgotten >= expire - MAX_CREATIONS,
        "{context}: {forgotten}"
    );
    let evicted: i64 = profile
        .comment_value("creations_evicted")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{context}"));
    // The fixture creates other timers too, all through the same hook.
    assert!(
        evicted >= expire - MAX_CREATIONS,
        "{context}: {evicted} evicted"
    );
}
