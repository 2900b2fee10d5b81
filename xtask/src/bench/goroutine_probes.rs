//! Row 9: what the goroutine probes add to each goroutine's creation and exit.
//!
//! The `goroutines churn` fixture starts rounds of 100 goroutines that exit at once, waits for
//! them, and reports its own rate. Each run starts it with `-wait-stdin`, attaches nothing,
//! `timerscope record --pid --no-goroutine-probes` (the timer probes alone, which this program
//! hardly hits) or `timerscope record --pid` (goroutine probes on, the default), then lets it
//! run. From the medians: µs added per goroutine = 1/probed − 1/unprobed rate.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use timerscope_tests::{Variant, fixture_path, reference_go};

use super::Bench;
use super::hooks::TIMERSCOPE_READY;
use super::measure::{Lines, Running, Spread, rotated};
use super::report::{Check, Row, Section, rate};

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The function with the `go` statement, and the goroutines per round.
const SPAWN_FUNCTION: &str = "main.spawnChurn";
const PER_ROUND: u64 = 100;
/// Rounds per second of `Bench::churn` (about a second of unprobed churn per 10 s).
const ROUNDS_PER_SECOND: u64 = 1_000;
/// Target: the goroutine probes add at most this much to a goroutine's life.
const MAX_ADDED_MICROS: f64 = 10.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Probing {
    Unprobed,
    TimerProbesOnly,
    GoroutineProbes,
}

impl Probing {
    const ALL: [Probing; 3] = [
        Probing::Unprobed,
        Probing::TimerProbesOnly,
        Probing::GoroutineProbes,
    ];
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
struct ChurnSummary {
    created: u64,
    exited: u64,
    seconds: f64,
    per_sec: f64,
}

#[derive(Debug, Serialize)]
struct ChurnRun {
    probing: Probing,
    run: usize,
    summary: ChurnSummary,
    /// With the goroutine probes: `goroutines_created` and `goroutines_exited` at the spawning
    /// function, and the profile's drops.
    created_at_spawn: Option<u64>,
    exited_at_spawn: Option<u64>,
    drops: Option<u64>,
}

pub fn run(bench: &Bench) -> Result<Section> {
    let binary = fixture_path("goroutines", reference_go(), Variant::Normal)?;
    let rounds = (bench.churn.as_secs_f64() * ROUNDS_PER_SECOND as f64).max(1.0) as u64;
    let mut runs = Vec::new();
    for run in 0..bench.runs {
        for probing in rotated(&Probing::ALL, run) {
            let result = churn(bench, &binary, probing, run, rounds)
                .with_context(|| format!("bench: goroutine churn {probing:?}, run {run}"))?;
            println!(
                "bench: goroutine run {}/{}: {probing:?} {} goroutines",
                run + 1,
                bench.runs,
                rate(result.summary.per_sec)
            );
            runs.push(result);
        }
    }
    Ok(section(&runs))
}

fn churn(
    bench: &Bench,
    binary: &Path,
    probing: Probing,
    run: usize,
    rounds: u64,
) -> Result<ChurnRun> {
    let mut fixture = Running::spawn(
        Command::new(binary)
            .args(["churn", "-n", &PER_ROUND.to_string(), "-exit"])
            .arg(PER_ROUND.to_string())
            .args(["-repeat", &rounds.to_string(), "-duration", "1ms"])
            .arg("-wait-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let mut fixture_out = Lines::new("goroutines churn", fixture.child.stdout.take().unwrap());
    fixture_out.wait_for("\"ready\"", STEP_TIMEOUT)?;
    let pid = fixture.pid();
    let profile_path = bench.out_dir.join(format!("goroutines-run{run}.pb.gz"));
    let recorder = match probing {
        Probing::Unprobed => None,
        Probing::TimerProbesOnly | Probing::GoroutineProbes => {
            let _ = fs::remove_file(&profile_path);
            let mut command = Command::new(&bench.tools.timerscope);
            command
                .args(["record", "--pid", &pid.to_string(), "--output"])
                .arg(&profile_path);
            if probing == Probing::TimerProbesOnly {
                command.arg("--no-goroutine-probes");
            }
            let mut recorder =
                Running::spawn(command.stdout(Stdio::null()).stderr(Stdio::piped()))?;
            let mut stderr = Lines::new("timerscope record", recorder.child.stderr.take().unwrap());
            stderr.wait_for(TIMERSCOPE_READY, STEP_TIMEOUT)?;
            Some((recorder, stderr))
        }
    };
    let mut stdin = fixture.child.stdin.take().unwrap();
    stdin.write_all(b"go\n")?;
    drop(stdin);
    let (summary, _) = fixture_out.wait_for("\"summary\"", STEP_TIMEOUT * 5)?;
    fixture.wait_success(STEP_TIMEOUT)?;
    let summary: ChurnSummary = serde_json::from_str(&summary)
        .with_context(|| format!("bench: reading the fixture's summary {summary:?}"))?;
    let mut result = ChurnRun {
        probing,
        run,
        summary,
        created_at_spawn: None,
        exited_at_spawn: None,
        drops: None,
    };
    if let Some((mut recorder, stderr)) = recorder {
        // The recording ends with the target.
        recorder
            .wait_success(STEP_TIMEOUT)
            .with_context(|| format!("timerscope said:\n{}", stderr.seen()))?;
        if probing == Probing::GoroutineProbes {
            let profile = pprof::ResolvedProfile::new(&pprof::read_file(&profile_path)?);
            let at_spawn = |sample_type: &str| -> Result<u64> {
                let index = profile
                    .sample_index(Some(sample_type))
                    .with_context(|| format!("bench: no {sample_type} in the profile"))?;
                Ok(profile
                    .samples
                    .iter()
                    // Created by its go statement: the leaf frame. The GC's mark workers, started
                    // by an allocation under it, have it deeper in their stacks.
                    .filter(|s| {
                        profile
                            .stack(s)
                            .next()
                            .is_some_and(|f| f.function == SPAWN_FUNCTION)
                    })
                    .map(|s| u64::try_from(s.values[index]).unwrap_or(0))
                    .sum())
            };
            result.created_at_spawn = Some(at_spawn("goroutines_created")?);
            result.exited_at_spawn = Some(at_spawn("goroutines_exited")?);
            let drops = profile
                .comments
                .iter()
                .find_map(|c| pprof::vocabulary::parse_drops_comment(c))
                .unwrap_or_default();
            result.drops = Some(drops.iter().map(|(_, n)| n).sum());
        }
    }
    Ok(result)
}

fn section(runs: &[ChurnRun]) -> Section {
    let rates = |probing| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|r| r.probing == probing)
            .map(|r| r.summary.per_sec)
            .collect();
        Spread::of(&rates)
    };
    let (unprobed, timers_only, goroutines) = (
        rates(Probing::Unprobed),
        rates(Probing::TimerProbesOnly),
        rates(Probing::GoroutineProbes),
    );
    let micros = |per_second: f64| 1e6 / per_second;
    let added = micros(goroutines.median) - micros(unprobed.median);
    let added_timers_only = micros(timers_only.median) - micros(unprobed.median);
    let range = |s: Spread| format!("{} – {}", rate(s.min), rate(s.max));
    let recorded: Vec<&ChurnRun> = runs
        .iter()
        .filter(|r| r.probing == Probing::GoroutineProbes)
        .collect();
    let exact = recorded
        .iter()
        .filter(|r| {
            r.created_at_spawn == Some(r.summary.created)
                && r.exited_at_spawn == Some(r.summary.exited)
        })
        .count();
    let drops: u64 = recorded.iter().filter_map(|r| r.drops).sum();
    let rows = vec![
        Row {
            what: "goroutine create+exit (rounds of 100), unprobed".into(),
            median: rate(unprobed.median),
            range: range(unprobed),
            peak_memory: String::new(),
            comparison: format!("{:.0} ns per goroutine", micros(unprobed.median) * 1e3),
        },
        Row {
            what: "under `timerscope record --no-goroutine-probes`".into(),
            median: rate(timers_only.median),
            range: range(timers_only),
            peak_memory: String::new(),
            comparison: format!("{added_timers_only:+.2} µs per goroutine"),
        },
        Row {
            what: "under `timerscope record` (goroutine probes on)".into(),
            median: rate(goroutines.median),
            range: range(goroutines),
            peak_memory: String::new(),
            comparison: format!(
                "+{added:.2} µs per goroutine; created and exited at {SPAWN_FUNCTION} exact in \
                 {exact} of {} runs, {drops} drops",
                recorded.len()
            ),
        },
    ];
    let checks = vec![
        Check {
            target: format!("≤ {MAX_ADDED_MICROS} µs added per goroutine create+exit"),
            measured: format!("{added:.2} µs"),
            met: added <= MAX_ADDED_MICROS,
        },
        Check {
            target: "every creation and exit counted at the go statement, no drops".into(),
            measured: format!("exact in {exact} of {} runs, {drops} drops", recorded.len()),
            met: exact == recorded.len() && drops == 0,
        },
    ];
    Section {
        title: "9. Goroutine probes: goroutine create+exit in a Go program, go1.25".into(),
        rows,
        checks,
        notes: vec![
            "Two uprobe hits per goroutine: newproc's closure at its call of runqput (with a \
             stack walk), and goexit1 (a map lookup). In watch they obey --max-overhead."
                .into(),
        ],
        data: serde_json::json!({
            "goroutines_per_sec": {
                "unprobed": unprobed,
                "timer_probes_only": timers_only,
                "goroutine_probes": goroutines,
            },
            "added_micros_per_goroutine": added,
            "runs": runs,
        }),
    }
}
