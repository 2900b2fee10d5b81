//! Rows 9 and 10, snapshots: what reading the runtime's own state from a live process's memory costs
//! (`process_vm_readv`, no probes, the target never stopped).
//! - Pending timers: the bench's net/http server with 100,000 one-hour AfterFuncs armed
//!   (`-pending`). The time to read every pending timer (the reader timerscope's snapshot tier
//!   uses, `gobinary::runtime::timers`), and the server's requests/s under `wrk` while
//!   `timerscope watch` with no timer or goroutine probes snapshots it once a second, against the
//!   same server not watched, interleaved run by run (fresh server each).
//! - Goroutines: the `goroutines many` fixture with 100,000 blocked goroutines. The time to read
//!   every `g` (`gobinary::runtime::goroutines`), and `timerscope goroutines --pid` end to end
//!   (binary opened, goroutines read and grouped by creating `go` statement).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gobinary::{
    GoBinary,
    layout::GoroutineLayout,
    runtime::{RuntimeImage, goroutines, timers::TimerReader},
};
use pprof::vocabulary::parse_snapshot_ok;
use serde::Serialize;
use timerscope_tests::{Variant, fixture_path, reference_go};

use super::measure::{Lines, Running, Spread, cpu_time, rotated, run_measured};
use super::report::{Check, Row, Section, mebibytes, rate, thousands};
use super::servers::{WATCH_READY, free_port, requests_per_sec};
use super::{Bench, go_programs};

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pending timers and goroutines in the targets.
const PENDING: u64 = 100_000;
const GOROUTINES: u64 = 100_000;
/// Reads timed per row (each one a full snapshot).
const READS: usize = 5;
/// Target: requests/s while snapshotted once a second, as a share of not snapshotted.
const MIN_THROUGHPUT: f64 = 0.99;

/// The build the library reads ran in (xtask's profile: `cargo xtask` runs a debug build).
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "xtask's debug build (`cargo run --release -p xtask -- bench` for optimized reads)"
    } else {
        "xtask's release build"
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A server of the bench's net/http program with [`PENDING`] AfterFuncs, once it serves.
fn pending_server(binary: &std::path::Path) -> Result<(Running, u16)> {
    let port = free_port()?;
    let mut server = Running::spawn(
        Command::new(binary)
            .args(["-addr", &format!("127.0.0.1:{port}")])
            .args(["-pending", &PENDING.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )?;
    let mut stdout = Lines::new("server", server.child.stdout.take().unwrap());
    stdout.wait_for("\"ready\"", STEP_TIMEOUT)?;
    Ok((server, port))
}

#[derive(Debug, Serialize)]
struct ThroughputRun {
    run: usize,
    snapshotted: bool,
    requests_per_sec: f64,
    /// Intervals `watch` wrote during the load (one snapshot each), and its CPU time then.
    snapshots: usize,
    agent_cpu_ms: Option<f64>,
}

/// `timerscope watch` of `pid` with no probes but the mmap tracepoints, writing a profile
/// (a snapshot) to `out` every second; returned once attached.
fn snapshot_watch(bench: &Bench, pid: u32, out: &Path) -> Result<(Running, Lines)> {
    let _ = fs::remove_dir_all(out);
    let mut watch = Running::spawn(
        Command::new(&bench.tools.timerscope)
            .args(["watch", "--pid", &pid.to_string()])
            .args([
                "--events",
                "none",
                "--no-goroutine-probes",
                "--interval",
                "1s",
            ])
            .arg("--dir")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let mut stderr = Lines::new("timerscope watch", watch.child.stderr.take().unwrap());
    stderr.wait_for(WATCH_READY, STEP_TIMEOUT)?;
    Ok((watch, stderr))
}

/// Profiles written to `dir` so far.
fn profiles_in(dir: &Path) -> Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    Ok(fs::read_dir(dir)
        .with_context(|| format!("bench: reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pb.gz"))
        .count())
}

/// How the interval snapshots of the watched runs went.
#[derive(Default)]
struct SnapshotCounts {
    /// Every heap read at one moment; each holds every one of the server's AfterFuncs, or the
    /// row timed less work than it says.
    whole: usize,
    /// A heap changed while it was read and was kept as read (`moving=N`).
    moving: usize,
    /// The fewest timers one of the moving snapshots held.
    moving_fewest: Option<u64>,
    /// A timer or heap left out (`inconsistent=N`).
    torn: usize,
}

impl SnapshotCounts {
    /// Adds the snapshots of the interval profiles in `dir`.
    fn add(&mut self, dir: &Path) -> Result<()> {
        for entry in
            fs::read_dir(dir).with_context(|| format!("bench: reading {}", dir.display()))?
        {
            let path = entry?.path();
            let profile = pprof::ResolvedProfile::new(
                &pprof::read_file(&path)
                    .with_context(|| format!("bench: reading {}", path.display()))?,
            );
            let snapshot = profile.comments.iter().find_map(|c| parse_snapshot_ok(c));
            match snapshot {
                Some(s) if s.inconsistent > 0 => self.torn += 1,
                Some(s) if s.moving > 0 => {
                    self.moving += 1;
                    self.moving_fewest =
                        Some(self.moving_fewest.map_or(s.timers, |t| t.min(s.timers)));
                }
                Some(s) if s.timers >= PENDING => self.whole += 1,
                other => bail!(
                    "bench: {} has a snapshot of {:?} timers, not the server's {PENDING}",
                    path.display(),
                    other.map(|s| s.timers)
                ),
            }
        }
        Ok(())
    }
}

pub fn timers(bench: &Bench) -> Result<Section> {
    let go = reference_go();
    let binary_path = go_programs::server(go)?;
    let binary = GoBinary::open(&binary_path)
        .with_context(|| format!("bench: {}", binary_path.display()))?;
    let reader = TimerReader::new(&binary).context("bench: the server's timer heaps")?;

    // Read time: every pending timer of one server, READS times.
    let (server, _) = pending_server(&binary_path)?;
    let image = RuntimeImage::attach(&binary, server.pid())?;
    let mut read_ms = Vec::new();
    let (mut found, mut idle, mut inconsistent) = (0, 0, 0);
    for _ in 0..READS {
        let start = Instant::now();
        let snapshot = reader.read(&image)?;
        read_ms.push(millis(start.elapsed()));
        found = snapshot.timers.len();
        idle = snapshot
            .timers
            .iter()
            .filter(|t| t.function.as_deref() == Some("main.idle"))
            .count() as u64;
        inconsistent = snapshot.inconsistent;
    }
    drop(server);
    if idle != PENDING {
        bail!("bench: the snapshot found {idle} of the server's {PENDING} AfterFuncs");
    }
    let read = Spread::of(&read_ms);
    println!(
        "bench: snapshot: {found} pending timers read in {:.1} ms (median of {READS})",
        read.median
    );

    // Throughput, interleaved: fresh server, wrk, with or without `timerscope watch` reading
    // it every second (release build; no timer or goroutine probes, so the snapshots alone).
    let load = Duration::from_secs(if bench.runs <= 2 { 4 } else { 8 });
    let out = bench.out_dir.join("snapshot-watch");
    let mut runs = Vec::new();
    let mut snapshots = SnapshotCounts::default();
    for run in 0..bench.runs {
        for snapshotted in rotated(&[false, true], run) {
            let (mut server, port) = pending_server(&binary_path)?;
            let watch = snapshotted
                .then(|| snapshot_watch(bench, server.pid(), &out))
                .transpose()?;
            thread::sleep(Duration::from_secs(1));
            let agent_before = watch.as_ref().map(|(w, _)| cpu_time(w.pid())).transpose()?;
            let intervals_before = profiles_in(&out)?;
            let wrk = crate::util::output(Command::new("wrk").args([
                "-t1",
                "-c32",
                "-d",
                &format!("{}s", load.as_secs()),
                &format!("http://127.0.0.1:{port}/"),
            ]))
            .context("bench: wrk")?;
            let (mut agent_cpu, mut intervals) = (None, 0);
            if let (Some((mut watch, _stderr)), Some(before)) = (watch, agent_before) {
                agent_cpu = Some(cpu_time(watch.pid())? - before);
                intervals = profiles_in(&out)? - intervals_before;
                watch.interrupt_until_exit(STEP_TIMEOUT)?;
                snapshots.add(&out)?;
            }
            server.interrupt_until_exit(STEP_TIMEOUT)?;
            let rps = requests_per_sec(&String::from_utf8_lossy(&wrk.stdout))?;
            println!(
                "bench: snapshot run {run}, {}: {rps:.0} requests/s{}",
                if snapshotted {
                    "watched (snapshots every second)"
                } else {
                    "not watched"
                },
                agent_cpu.map_or(String::new(), |cpu| format!(
                    ", {intervals} intervals, agent {:.0} ms of CPU",
                    millis(cpu)
                ))
            );
            runs.push(ThroughputRun {
                run,
                snapshotted,
                requests_per_sec: rps,
                snapshots: intervals,
                agent_cpu_ms: agent_cpu.map(millis),
            });
        }
    }
    let spread = |snapshotted: bool| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|r| r.snapshotted == snapshotted)
            .map(|r| r.requests_per_sec)
            .collect();
        Spread::of(&rates)
    };
    let (plain, read_each_second) = (spread(false), spread(true));
    let ratio = read_each_second.median / plain.median;
    let watched: Vec<&ThroughputRun> = runs.iter().filter(|r| r.snapshotted).collect();
    let agent_ms: f64 = watched.iter().filter_map(|r| r.agent_cpu_ms).sum();
    let intervals: usize = watched.iter().map(|r| r.snapshots).sum();
    let agent_share = agent_ms / (watched.len().max(1) as f64 * millis(load));
    let range = |s: Spread| format!("{} – {}", rate(s.min), rate(s.max));
    let rows = vec![
        Row {
            what: format!(
                "read every pending timer ({} AfterFuncs + the server's own)",
                thousands(PENDING)
            ),
            median: format!("{:.1} ms", read.median),
            range: format!("{:.1} – {:.1} ms", read.min, read.max),
            peak_memory: String::new(),
            comparison: format!(
                "{found} timers, {inconsistent} inconsistent; {:.2} µs per timer",
                read.median * 1e3 / found.max(1) as f64
            ),
        },
        Row {
            what: "server under wrk, not watched".into(),
            median: rate(plain.median),
            range: range(plain),
            peak_memory: String::new(),
            comparison: "baseline".into(),
        },
        Row {
            what: "server under wrk, `timerscope watch --events none --no-goroutine-probes \
                   --interval 1s`"
                .into(),
            median: rate(read_each_second.median),
            range: range(read_each_second),
            peak_memory: String::new(),
            comparison: format!(
                "{ratio:.3} of not watched; agent {:.1}% of a core, {:.0} ms of CPU per \
                 interval under load; snapshots: {} whole, {} with a heap read while it moved \
                 (kept; the fewest timers in one {}), {} torn (a timer or heap left out, counted)",
                agent_share * 100.0,
                agent_ms / intervals.max(1) as f64,
                snapshots.whole,
                snapshots.moving,
                snapshots.moving_fewest.map_or("-".to_owned(), thousands),
                snapshots.torn,
            ),
        },
    ];
    let checks = vec![Check {
        target: format!("watched, snapshots once a second, >= {MIN_THROUGHPUT} of not watched"),
        measured: format!("{ratio:.3}"),
        met: ratio >= MIN_THROUGHPUT,
    }];
    Ok(Section {
        title: format!(
            "10. Snapshot of {} pending timers from memory, {go}",
            thousands(PENDING)
        ),
        rows,
        checks,
        notes: vec![format!(
            "The read time: timerscope's snapshot reader called from the bench process, in {}. \
             Under load: the release `timerscope watch`, a snapshot of the timer heaps, \
             goroutines, memstats and /proc/PID/maps and a profile written every second. wrk -t1 -c32 for {} s per measurement on loopback; server, wrk and \
             agent share the machine's cores. A fresh server per measurement, the two modes \
             interleaved in a rotated order; medians of {} runs.",
            build_profile(),
            load.as_secs(),
            bench.runs
        )],
        data: serde_json::json!({
            "read_ms": read_ms,
            "timers": found,
            "runs": runs,
            "snapshots_whole": snapshots.whole,
            "snapshots_moving": snapshots.moving,
            "snapshots_moving_fewest_timers": snapshots.moving_fewest,
            "snapshots_torn": snapshots.torn,
        }),
    })
}

pub fn goroutines(bench: &Bench) -> Result<Section> {
    let go = reference_go();
    let fixture = fixture_path("goroutines", go, Variant::Normal)?;
    let mut target = Running::spawn(
        Command::new(&fixture)
            .args(["many", "-n", &GOROUTINES.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )?;
    let mut stdout = Lines::new("goroutines many", target.child.stdout.take().unwrap());
    stdout.wait_for("\"summary\"", STEP_TIMEOUT)?;
    let pid = target.pid();
    let binary = GoBinary::open(&fixture)?;
    let layout = GoroutineLayout::of_binary(&binary)?;
    let image = RuntimeImage::attach(&binary, pid)?;
    let mut read_ms = Vec::new();
    let mut read = goroutines::Goroutines::default();
    for _ in 0..READS {
        let start = Instant::now();
        read = goroutines::read(&image, &layout)?;
        read_ms.push(millis(start.elapsed()));
    }
    let count = read.goroutines.len() as u64;
    if count < GOROUTINES {
        bail!("bench: read {count} goroutines of at least {GOROUTINES}");
    }
    let mut command_seconds = Vec::new();
    let mut peak_kib = 0;
    let mut reported = 0;
    for _ in 0..bench.runs.max(2) {
        let (usage, out) = run_measured(
            Command::new(&bench.tools.timerscope).args([
                "goroutines",
                "--pid",
                &pid.to_string(),
                "--json",
            ]),
            None,
        )?;
        command_seconds.push(usage.seconds * 1e3);
        peak_kib = peak_kib.max(usage.max_rss_kib);
        let report: serde_json::Value = serde_json::from_slice(&out)?;
        reported = report["total"].as_u64().unwrap_or(0);
    }
    target.interrupt_until_exit(STEP_TIMEOUT)?;
    let (read_spread, command) = (Spread::of(&read_ms), Spread::of(&command_seconds));
    let rows = vec![
        Row {
            what: format!("read every goroutine ({} blocked)", thousands(GOROUTINES)),
            median: format!("{:.1} ms", read_spread.median),
            range: format!("{:.1} – {:.1} ms", read_spread.min, read_spread.max),
            peak_memory: String::new(),
            comparison: format!(
                "{count} g's, {} torn, {} unreadable; {:.2} µs per goroutine",
                read.torn,
                read.unreadable,
                read_spread.median * 1e3 / count as f64
            ),
        },
        Row {
            what: "`timerscope goroutines --pid --json`, end to end".into(),
            median: format!("{:.0} ms", command.median),
            range: format!("{:.0} – {:.0} ms", command.min, command.max),
            peak_memory: mebibytes(peak_kib),
            comparison: format!("{reported} goroutines reported (the runtime's own left out)"),
        },
    ];
    let checks = vec![Check {
        target: format!("every one of the {} goroutines read", thousands(GOROUTINES)),
        measured: format!("{reported} reported, {} torn", read.torn),
        met: reported >= GOROUTINES,
    }];
    Ok(Section {
        title: format!(
            "11. Goroutine snapshot of {} goroutines from memory, {go}",
            thousands(GOROUTINES)
        ),
        rows,
        checks,
        notes: vec![format!(
            "The `goroutines many` fixture; {READS} reads by the library in {}, {} runs of the \
             command (release).",
            build_profile(),
            bench.runs.max(2)
        )],
        data: serde_json::json!({ "read_ms": read_ms, "command_ms": command_seconds, "goroutines": count }),
    })
}
