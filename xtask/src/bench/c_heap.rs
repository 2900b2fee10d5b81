//! Row 8: what the C heap probes add to each malloc+free pair, against BCC `memleak` semantics in
//! bpftrace (`uprobe:libc:malloc` with `ustack`, a uretprobe for the block, `free` deleting it,
//! only the target pid), in the same run.
//!
//! The `cgomalloc pairs` fixture runs malloc+free pairs in C (10,000 per call from Go, so cgo's
//! own probes hardly count) for a while and reports its own rate. Each run starts it with
//! `-wait-stdin`, attaches nothing, `timerscope record --pid` (C heap on, the default) or
//! bpftrace, then lets it run. From the medians: µs added per pair = 1/probed − 1/unprobed rate.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use timerscope_tests::{Variant, fixture_path, reference_go};

use super::Bench;
use super::hooks::{BPFTRACE_READY, TIMERSCOPE_READY, start_bpftrace};
use super::measure::{Lines, Running, Spread, rotated};
use super::report::{Check, Row, Section, rate};

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The function that runs the pairs, and the block size.
const PAIRS_FUNCTION: &str = "main.churnCPairs";
const BLOCK_BYTES: u64 = 512;
/// Target: this many times cheaper per pair than the bpftrace baseline.
const MIN_CHEAPER_THAN_BPFTRACE: f64 = 2.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Probing {
    Unprobed,
    Timerscope,
    Bpftrace,
}

impl Probing {
    const ALL: [Probing; 3] = [Probing::Unprobed, Probing::Timerscope, Probing::Bpftrace];
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
struct PairsSummary {
    pairs: u64,
    seconds: f64,
    pairs_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct PairsRun {
    probing: Probing,
    run: usize,
    summary: PairsSummary,
    /// timerscope: `c_heap_alloc_bytes` at the pairs' function, and the profile's drops.
    allocated_at_pairs: Option<u64>,
    drops: Option<u64>,
    /// timerscope: the `c_heap_probes` comment (where each probe sits).
    probes: Option<String>,
}

pub fn run(bench: &Bench) -> Result<Section> {
    let go = reference_go();
    let binary = fixture_path("cgomalloc", go, Variant::Normal)?;
    let mut runs = Vec::new();
    for run in 0..bench.runs {
        for probing in rotated(&Probing::ALL, run) {
            let result = pairs(bench, &binary, probing, run)
                .with_context(|| format!("bench: C heap pairs {probing:?}, run {run}"))?;
            println!(
                "bench: C heap run {}/{}: {probing:?} {} pairs",
                run + 1,
                bench.runs,
                rate(result.summary.pairs_per_sec)
            );
            runs.push(result);
        }
    }
    Ok(section(&runs))
}

/// The libc the running fixture has mapped.
fn libc_of(pid: u32) -> Result<PathBuf> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))
        })
        .map(PathBuf::from)
        .context("bench: the fixture maps no libc.so")
}

/// BCC memleak's malloc/free tracking, in bpftrace: the allocating stack and size at malloc's
/// entry, the block at its return, deleted at free.
fn bpftrace_script(libc: &Path) -> String {
    let libc = libc.display();
    format!(
        "BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} \
         uprobe:{libc}:malloc {{ @bytes[ustack] = sum(arg0); @size[tid] = arg0; }} \
         uretprobe:{libc}:malloc /@size[tid]/ {{ @live[retval] = @size[tid]; delete(@size[tid]); }} \
         uprobe:{libc}:free /@live[arg0]/ {{ delete(@live[arg0]); }} \
         END {{ clear(@live); clear(@size); clear(@bytes); }}"
    )
}

fn pairs(bench: &Bench, binary: &Path, probing: Probing, run: usize) -> Result<PairsRun> {
    let duration = format!("{}ms", bench.churn.as_millis());
    let mut fixture = Running::spawn(
        Command::new(binary)
            .args(["pairs", "-duration", &duration, "-size"])
            .arg(BLOCK_BYTES.to_string())
            .arg("-wait-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let mut fixture_out = Lines::new("cgomalloc pairs", fixture.child.stdout.take().unwrap());
    fixture_out.wait_for("\"ready\"", STEP_TIMEOUT)?;
    let pid = fixture.pid();
    let profile_path = bench.out_dir.join(format!("c-heap-run{run}.pb.gz"));
    let mut attached = match probing {
        Probing::Unprobed => None,
        Probing::Timerscope => {
            let _ = fs::remove_file(&profile_path);
            let mut recorder = Running::spawn(
                Command::new(&bench.tools.timerscope)
                    .args(["record", "--pid", &pid.to_string(), "--output"])
                    .arg(&profile_path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )?;
            let mut stderr = Lines::new("timerscope record", recorder.child.stderr.take().unwrap());
            stderr.wait_for(TIMERSCOPE_READY, STEP_TIMEOUT)?;
            Some((recorder, stderr))
        }
        Probing::Bpftrace => {
            let log = bench.out_dir.join("bpftrace-c-heap.log");
            let tracer = start_bpftrace(pid, &bpftrace_script(&libc_of(pid)?), &log)?;
            Some((tracer.running, tracer.stdout))
        }
    };
    let mut stdin = fixture.child.stdin.take().unwrap();
    stdin.write_all(b"go\n")?;
    drop(stdin);
    let (summary, _) = fixture_out.wait_for("\"summary\"", bench.churn + STEP_TIMEOUT)?;
    fixture.wait_success(STEP_TIMEOUT)?;
    let summary: PairsSummary = serde_json::from_str(&summary)
        .with_context(|| format!("bench: reading the fixture's summary {summary:?}"))?;
    let mut result = PairsRun {
        probing,
        run,
        summary,
        allocated_at_pairs: None,
        drops: None,
        probes: None,
    };
    match (&mut attached, probing) {
        (Some((recorder, stderr)), Probing::Timerscope) => {
            recorder
                .wait_success(STEP_TIMEOUT)
                .with_context(|| format!("timerscope said:\n{}", stderr.seen()))?;
            let profile = pprof::ResolvedProfile::new(&pprof::read_file(&profile_path)?);
            let index = profile
                .sample_index(Some("c_heap_alloc_bytes"))
                .context("bench: no c_heap_alloc_bytes in the profile")?;
            let allocated = profile
                .samples
                .iter()
                .filter(|s| profile.stack(s).any(|f| f.function == PAIRS_FUNCTION))
                .map(|s| u64::try_from(s.values[index]).unwrap_or(0))
                .sum();
            result.allocated_at_pairs = Some(allocated);
            let drops = profile
                .comments
                .iter()
                .find_map(|c| pprof::vocabulary::parse_drops_comment(c))
                .unwrap_or_default();
            result.drops = Some(drops.iter().map(|(_, n)| n).sum());
            result.probes = profile.comment_value("c_heap_probes").map(str::to_owned);
        }
        (Some((tracer, _)), _) => {
            tracer.interrupt_until_exit(STEP_TIMEOUT)?;
        }
        (None, _) => {}
    }
    Ok(result)
}

fn section(runs: &[PairsRun]) -> Section {
    let rates = |probing| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|r| r.probing == probing)
            .map(|r| r.summary.pairs_per_sec)
            .collect();
        Spread::of(&rates)
    };
    let (unprobed, timerscope, bpftrace) = (
        rates(Probing::Unprobed),
        rates(Probing::Timerscope),
        rates(Probing::Bpftrace),
    );
    let micros = |per_second: f64| 1e6 / per_second;
    let added_timerscope = micros(timerscope.median) - micros(unprobed.median);
    let added_bpftrace = micros(bpftrace.median) - micros(unprobed.median);
    let cheaper = added_bpftrace / added_timerscope;
    let range = |s: Spread| format!("{} – {}", rate(s.min), rate(s.max));
    let recorded: Vec<&PairsRun> = runs
        .iter()
        .filter(|r| r.probing == Probing::Timerscope)
        .collect();
    let exact = recorded
        .iter()
        .filter(|r| r.allocated_at_pairs == Some(r.summary.pairs * BLOCK_BYTES))
        .count();
    let drops: u64 = recorded.iter().filter_map(|r| r.drops).sum();
    let probes = recorded
        .iter()
        .find_map(|r| r.probes.clone())
        .unwrap_or_default();
    let rows = vec![
        Row {
            what: "malloc+free pairs in C, unprobed".into(),
            median: rate(unprobed.median),
            range: range(unprobed),
            peak_memory: String::new(),
            comparison: format!("{:.0} ns per pair", micros(unprobed.median) * 1e3),
        },
        Row {
            what: "under `timerscope record` (C heap probes on)".into(),
            median: rate(timerscope.median),
            range: range(timerscope),
            peak_memory: String::new(),
            comparison: format!(
                "+{added_timerscope:.2} µs per pair; c_heap_alloc_bytes at {PAIRS_FUNCTION} \
                 exact in {exact} of {} runs, {drops} drops",
                recorded.len()
            ),
        },
        Row {
            what: "under bpftrace memleak-style (malloc + ustack, uretprobe, free)".into(),
            median: rate(bpftrace.median),
            range: range(bpftrace),
            peak_memory: String::new(),
            comparison: format!(
                "+{added_bpftrace:.2} µs per pair; {cheaper:.2}x timerscope's added cost"
            ),
        },
    ];
    let checks = vec![
        Check {
            target: format!(
                "≥ {MIN_CHEAPER_THAN_BPFTRACE}x cheaper per malloc+free pair than bpftrace"
            ),
            measured: format!("{cheaper:.2}x"),
            met: cheaper >= MIN_CHEAPER_THAN_BPFTRACE,
        },
        Check {
            target: "every allocation counted at the Go caller, no drops".into(),
            measured: format!("exact in {exact} of {} runs, {drops} drops", recorded.len()),
            met: exact == recorded.len() && drops == 0,
        },
    ];
    Section {
        title: "8. C heap probes: malloc+free pairs in a cgo program, go1.25".into(),
        rows,
        checks,
        notes: vec![format!("Probe points (`c_heap_probes`): {probes}.")],
        data: serde_json::json!({
            "pairs_per_sec": { "unprobed": unprobed, "timerscope": timerscope, "bpftrace": bpftrace },
            "added_micros_per_pair": { "timerscope": added_timerscope, "bpftrace": added_bpftrace },
            "timerscope_cheaper": cheaper,
            "runs": runs,
        }),
    }
}
