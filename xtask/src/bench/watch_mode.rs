//! Row 5: what `timerscope watch` costs on a host, with a Go program doing 10,000 timer
//! operations per second (`tests/fixtures/bench/paced`): the agent's CPU and peak resident
//! memory, and the target's own CPU (which includes the in-kernel probe cost, since uprobes run
//! in the target's context). Against the same program unprobed, and under bpftrace running
//! `@[ustack] = count()` on the same functions. The runs of the three interleave; each measures
//! CPU time over a fixed window after attaching.
//!
//! [`growth`] measures the agent alone against the load it watches: a process with more and
//! more pending timers, and more and more processes of the paced program, all watched by one
//! `timerscope watch --exe`.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::Bench;
use super::hooks::{CountsAtExit, bpftrace_script, hooked_functions, start_bpftrace};
use super::measure::{Lines, Running, Spread, cpu_time, peak_rss_kib, rotated};
use super::plot::Plot;
use super::report::{Growth, Row, Section, linearity, mebibytes, thousands};
use super::servers::WATCH_READY;

const OPS_PER_SECOND: u32 = 10_000;
/// Timer operations per second of each process of the growth row: low enough that 50 of them
/// leave the two cores of the bench machine room for the agent.
const GROWTH_OPS_PER_SECOND: u32 = 1_000;
/// Pending timers of the growth row's single process (24 h AfterFunc timers).
const PENDING_TIMERS: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Processes of the growth row, watched by one agent; each has the fewest pending timers.
const WATCHED_PROCESSES: [usize; 3] = [1, 10, 50];
/// Short enough that each measured window includes writing a profile.
const WATCH_INTERVAL: &str = "2s";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Between attaching and the measured window: start-up work is not steady-state cost.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Agent {
    Unprobed,
    Watch,
    Bpftrace,
}

impl Agent {
    const ALL: [Agent; 3] = [Agent::Unprobed, Agent::Watch, Agent::Bpftrace];
}

/// The paced program's summary line.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
struct PacedSummary {
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
}

/// What the agent watches: `processes` copies of the paced program, each doing `ops_per_sec`
/// timer operations a second with `pending` timers pending.
#[derive(Debug, Clone, Copy, Serialize)]
struct Load {
    processes: usize,
    pending: usize,
    ops_per_sec: u32,
}

#[derive(Debug, Serialize)]
struct WatchRun {
    agent: Agent,
    run: usize,
    load: Load,
    /// Percent of one core over the window, all target processes together.
    target_cpu: f64,
    agent_cpu: Option<f64>,
    /// The agent's peak resident memory (VmHWM) at the end of the window.
    agent_peak_rss_kib: Option<u64>,
    /// The first target process's summary.
    summary: PacedSummary,
}

pub fn run(bench: &Bench, paced: &Path) -> Result<Section> {
    let hooks = hook_functions(bench, paced)?;
    let load = Load {
        processes: 1,
        pending: 0,
        ops_per_sec: OPS_PER_SECOND,
    };
    let mut runs = Vec::new();
    for run in 0..bench.slow_runs {
        for agent in rotated(&Agent::ALL, run) {
            let result = measure(bench, paced, &hooks, agent, load, bench.watch_window, run)
                .with_context(|| format!("bench: watch mode, {agent:?}, run {run}"))?;
            println!(
                "bench: watch run {}/{}: {agent:?} target {:.1}% agent {:.1}%",
                run + 1,
                bench.slow_runs,
                result.target_cpu,
                result.agent_cpu.unwrap_or(0.0)
            );
            runs.push(result);
        }
    }
    let spread = |agent: Agent, of: fn(&WatchRun) -> Option<f64>| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.agent == agent)
            .filter_map(of)
            .collect();
        Spread::of(&values)
    };
    let percent = |p: f64| format!("{p:.2}% of a core");
    let unprobed_target = spread(Agent::Unprobed, |r| Some(r.target_cpu));
    let mut rows = vec![Row {
        what: "unprobed: the target's CPU".into(),
        median: percent(unprobed_target.median),
        range: format!("{:.2} – {:.2}%", unprobed_target.min, unprobed_target.max),
        peak_memory: String::new(),
        comparison: String::new(),
    }];
    for (agent, what) in [
        (
            Agent::Watch,
            format!("`timerscope watch --interval {WATCH_INTERVAL}`: the agent's CPU"),
        ),
        (
            Agent::Bpftrace,
            "bpftrace `@[ustack] = count()`, same functions: the agent's CPU".to_owned(),
        ),
    ] {
        let agent_cpu = spread(agent, |r| r.agent_cpu);
        let target_cpu = spread(agent, |r| Some(r.target_cpu));
        let rss = spread(agent, |r| r.agent_peak_rss_kib.map(|k| k as f64));
        rows.push(Row {
            what,
            median: percent(agent_cpu.median),
            range: format!("{:.2} – {:.2}%", agent_cpu.min, agent_cpu.max),
            peak_memory: mebibytes(rss.median as u64),
            comparison: format!(
                "target's CPU {} ({:+.1} points)",
                percent(target_cpu.median),
                target_cpu.median - unprobed_target.median
            ),
        });
    }
    let rate = spread(Agent::Unprobed, |r| Some(r.summary.ops_per_sec)).median;
    Ok(Section {
        title: format!(
            "5. Watch mode: {} timer operations per second",
            thousands(u64::from(OPS_PER_SECOND))
        ),
        rows,
        checks: Vec::new(),
        notes: vec![format!(
            "CPU over a {:.0} s window starting {:.0} s after attaching; the paced program \
             reached {} operations per second (median, unprobed) plus 100 ticker firings. \
             Hooked functions: {}.",
            bench.watch_window.as_secs_f64(),
            SETTLE.as_secs_f64(),
            thousands(rate as u64),
            hooks.join(", ")
        )],
        data: serde_json::json!({ "ops_per_second": OPS_PER_SECOND, "runs": runs }),
    })
}

/// The agent's CPU and memory against pending timers, then against watched processes: two
/// tables. The loads' runs interleave.
pub fn growth(bench: &Bench, paced: &Path) -> Result<Vec<Growth>> {
    let load = |processes, pending| Load {
        processes,
        pending,
        ops_per_sec: GROWTH_OPS_PER_SECOND,
    };
    let by_pending: Vec<Load> = PENDING_TIMERS.iter().map(|&n| load(1, n)).collect();
    let by_processes: Vec<Load> = WATCHED_PROCESSES
        .iter()
        .map(|&n| load(n, PENDING_TIMERS[0]))
        .collect();
    // One process with the fewest timers is the first point of both series: measured once.
    let mut loads = by_pending.clone();
    loads.extend(by_processes.iter().filter(|l| l.processes > 1));
    let mut runs = Vec::new();
    for run in 0..bench.slow_runs {
        for load in rotated(&loads, run) {
            let result = measure(
                bench,
                paced,
                &[],
                Agent::Watch,
                load,
                bench.growth_window,
                run,
            )
            .with_context(|| format!("bench: watch growth, {load:?}, run {run}"))?;
            println!(
                "bench: watch growth run {}/{}: {} processes, {} pending timers: agent {:.2}%, \
                 {}",
                run + 1,
                bench.slow_runs,
                load.processes,
                thousands(load.pending as u64),
                result.agent_cpu.unwrap_or(0.0),
                mebibytes(result.agent_peak_rss_kib.unwrap_or(0))
            );
            runs.push(result);
        }
    }
    let window = format!(
        "`timerscope watch --interval {WATCH_INTERVAL}` (default `--events create`), CPU over a \
         {:.0} s window starting {:.0} s after attaching; each process does {} timer \
         operations a second (the paced program).",
        bench.growth_window.as_secs_f64(),
        SETTLE.as_secs_f64(),
        thousands(u64::from(GROWTH_OPS_PER_SECOND))
    );
    let pending = series(
        &runs,
        &by_pending,
        |l| l.pending,
        |l| format!("1 process, {} pending timers", thousands(l.pending as u64)),
        ("timer", "timers"),
    );
    let processes = series(
        &runs,
        &by_processes,
        |l| l.processes,
        |l| {
            format!(
                "{} processes, {} pending timers each (`--exe`)",
                l.processes,
                thousands(l.pending as u64)
            )
        },
        ("process", "processes"),
    );
    Ok(vec![
        Growth {
            plot: Some(Plot {
                file: "watch-pending.svg".into(),
                title: "timerscope watch: agent CPU against pending timers".into(),
                x_label: "pending timers in the target".into(),
                y_label: "agent CPU, % of a core".into(),
                log_x: true,
                points: pending.points.clone(),
            }),
            section: Section {
                title: "`watch` against pending timers".into(),
                rows: pending.rows,
                checks: Vec::new(),
                notes: vec![window.clone(), pending.cpu_note, pending.memory_note],
                data: serde_json::json!({ "loads": by_pending, "runs": pending.runs }),
            },
        },
        Growth {
            plot: None,
            section: Section {
                title: "`watch` against watched processes".into(),
                rows: processes.rows,
                checks: Vec::new(),
                notes: vec![window, processes.cpu_note, processes.memory_note],
                data: serde_json::json!({ "loads": by_processes, "runs": processes.runs }),
            },
        },
    ])
}

/// A growth table of the agent's cost over `loads`.
struct Series<'a> {
    rows: Vec<Row>,
    /// (size, median agent CPU).
    points: Vec<(f64, f64)>,
    cpu_note: String,
    memory_note: String,
    runs: Vec<&'a WatchRun>,
}

fn series<'a>(
    runs: &'a [WatchRun],
    loads: &[Load],
    size: fn(&Load) -> usize,
    what: impl Fn(&Load) -> String,
    units: (&str, &str),
) -> Series<'a> {
    let of_load = |load: &Load| {
        runs.iter()
            .filter(|r| r.load.processes == load.processes && r.load.pending == load.pending)
            .collect::<Vec<_>>()
    };
    let (mut rows, mut points, mut memory, mut all) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for load in loads {
        let measured = of_load(load);
        let cpu = Spread::of(
            &measured
                .iter()
                .filter_map(|r| r.agent_cpu)
                .collect::<Vec<_>>(),
        );
        let rss = Spread::of(
            &measured
                .iter()
                .filter_map(|r| r.agent_peak_rss_kib.map(|k| k as f64))
                .collect::<Vec<_>>(),
        );
        let target = Spread::of(&measured.iter().map(|r| r.target_cpu).collect::<Vec<_>>());
        let (first_cpu, first_rss) = points
            .first()
            .zip(memory.first())
            .map_or((cpu.median, rss.median), |(&(_, c), &(_, m))| (c, m));
        rows.push(Row {
            what: what(load),
            median: format!("{:.2}% of a core", cpu.median),
            range: format!("{:.2} – {:.2}%", cpu.min, cpu.max),
            peak_memory: mebibytes(rss.median as u64),
            comparison: format!(
                "{:.1}x the first row's CPU, {:.1}x its memory; the targets' CPU {:.1}% of a core",
                cpu.median / first_cpu,
                rss.median / first_rss,
                target.median
            ),
        });
        let n = size(load) as f64;
        points.push((n, cpu.median));
        memory.push((n, rss.median));
        all.extend(measured);
    }
    Series {
        rows,
        cpu_note: linearity(&points, units, "The agent's CPU"),
        memory_note: linearity(&memory, units, "Its peak memory"),
        points,
        runs: all,
    }
}

/// The functions timerscope hooks in the paced program, from an unmeasured watch: every hook
/// any of its profiles names (the overhead budget may detach a hook after the first ones).
fn hook_functions(bench: &Bench, paced: &Path) -> Result<Vec<String>> {
    let dir = bench.out_dir.join("watch");
    let load = Load {
        processes: 1,
        pending: 0,
        ops_per_sec: OPS_PER_SECOND,
    };
    measure(bench, paced, &[], Agent::Watch, load, bench.watch_window, 0)
        .context("bench: warm-up watch")?;
    let mut profiles: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("bench: reading {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".pb.gz"))
        .collect();
    // Named by the time they were written.
    profiles.sort();
    let mut hooks: Vec<String> = Vec::new();
    for profile in &profiles {
        for hook in hooked_functions(profile)? {
            if !hooks.contains(&hook) {
                hooks.push(hook);
            }
        }
    }
    if hooks.is_empty() {
        bail!(
            "bench: timerscope watch wrote no profile naming a hook in {}",
            dir.display()
        );
    }
    Ok(hooks)
}

fn measure(
    bench: &Bench,
    paced: &Path,
    hooks: &[String],
    agent: Agent,
    load: Load,
    window: Duration,
    run: usize,
) -> Result<WatchRun> {
    let mut targets = Vec::new();
    for _ in 0..load.processes {
        let mut target = Running::spawn(
            Command::new(paced)
                .args(["-ops-per-sec", &load.ops_per_sec.to_string()])
                .args(["-pending", &load.pending.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )?;
        let out = Lines::new("paced", target.child.stdout.take().unwrap());
        targets.push((target, out));
    }
    for (_, out) in &mut targets {
        out.wait_for("\"ready\"", STEP_TIMEOUT)?;
    }
    let pids: Vec<u32> = targets.iter().map(|(t, _)| t.pid()).collect();
    let pid = pids[0];
    let dir = bench.out_dir.join("watch");
    let mut attached = match agent {
        Agent::Unprobed => None,
        Agent::Watch => {
            if dir.exists() {
                fs::remove_dir_all(&dir)
                    .with_context(|| format!("bench: removing {}", dir.display()))?;
            }
            let mut cmd = Command::new(&bench.tools.timerscope);
            cmd.arg("watch");
            // One process by pid, as a user would; several by their binary.
            if load.processes == 1 {
                cmd.args(["--pid", &pid.to_string()]);
            } else {
                cmd.arg("--exe").arg(paced);
            }
            let mut watch = Running::spawn(
                cmd.args(["--interval", WATCH_INTERVAL])
                    .arg("--dir")
                    .arg(&dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )?;
            let mut stderr = Lines::new("timerscope watch", watch.child.stderr.take().unwrap());
            for _ in 0..load.processes {
                stderr.wait_for(WATCH_READY, STEP_TIMEOUT)?;
            }
            Some((watch, stderr))
        }
        Agent::Bpftrace => {
            let script = bpftrace_script(paced, hooks, CountsAtExit::Discard)?;
            let tracer = start_bpftrace(pid, &script, &bench.out_dir.join("bpftrace-watch.log"))?;
            Some((tracer.running, tracer.stdout))
        }
    };
    thread::sleep(SETTLE);
    let agent_pid = attached.as_ref().map(|(running, _)| running.pid());
    let targets_cpu = || -> Result<Duration> { pids.iter().map(|&p| cpu_time(p)).sum() };
    let start = Instant::now();
    let target_start = targets_cpu()?;
    let agent_start = agent_pid.map(cpu_time).transpose()?;
    thread::sleep(window);
    let target_cpu = targets_cpu()? - target_start;
    let agent_cpu = match (agent_pid, agent_start) {
        (Some(agent_pid), Some(agent_start)) => Some(cpu_time(agent_pid)? - agent_start),
        _ => None,
    };
    let window = start.elapsed().as_secs_f64();
    let agent_peak_rss_kib = agent_pid
        .map(|pid| peak_rss_kib(pid).context("bench: the agent exited early"))
        .transpose()?;

    if let Some((running, lines)) = &mut attached {
        let status = match agent {
            Agent::Bpftrace => running.interrupt_until_exit(STEP_TIMEOUT),
            _ => {
                running.interrupt()?;
                running.wait(STEP_TIMEOUT)
            }
        }
        .with_context(|| format!("after printing:\n{}", lines.seen()))?;
        if !status.success() {
            bail!(
                "{agent:?} failed ({status}) after printing:\n{}",
                lines.seen()
            );
        }
    }
    let mut summaries = Vec::new();
    for (mut target, mut out) in targets {
        let mut stdin = target.child.stdin.take().unwrap();
        stdin.write_all(b"stop\n")?;
        drop(stdin);
        let (summary, _) = out.wait_for("\"summary\"", STEP_TIMEOUT)?;
        target.wait_success(STEP_TIMEOUT)?;
        let summary: PacedSummary = serde_json::from_str(&summary)
            .with_context(|| format!("bench: reading the paced program's summary {summary:?}"))?;
        summaries.push(summary);
    }
    let percent = |cpu: Duration| 100.0 * cpu.as_secs_f64() / window;
    Ok(WatchRun {
        agent,
        run,
        load,
        target_cpu: percent(target_cpu),
        agent_cpu: agent_cpu.map(percent),
        agent_peak_rss_kib,
        summary: summaries[0],
    })
}
