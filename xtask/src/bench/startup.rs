//! Row 6: how long `timerscope record --pid` takes, from its start until its probes are attached
//! (the `timerscope: recording pid` line), on the large Go binary; against bpftrace attaching
//! uprobes to the same functions (until its `BEGIN` probe prints, which runs after attaching).
//! Both read the binary's symbols; timerscope also its build info, DWARF type info and the
//! prologues of the hooked functions.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Bench;
use super::hooks::{
    CountsAtExit, TIMERSCOPE_READY, bpftrace_script, hooked_functions, start_bpftrace,
};
use super::measure::{Lines, Running, Spread, rotated};
use super::report::{Row, Section, file_size, seconds};

const STEP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Tool {
    Timerscope,
    Bpftrace,
}

impl Tool {
    const ALL: [Tool; 2] = [Tool::Timerscope, Tool::Bpftrace];
}

#[derive(Debug, Serialize)]
struct StartupRun {
    tool: Tool,
    run: usize,
    seconds: f64,
}

pub fn run(bench: &Bench, binary: &Path) -> Result<Section> {
    let mut target = Running::spawn(
        Command::new(binary)
            .arg("-wait-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let mut target_out = Lines::new("large", target.child.stdout.take().unwrap());
    target_out.wait_for("\"ready\"", STEP_TIMEOUT)?;
    let pid = target.pid();

    // Unmeasured first runs: the binary in the page cache, and the hook list for bpftrace.
    let hooks = hook_functions(bench, pid)?;
    attach(bench, Tool::Bpftrace, pid, binary, &hooks)?;
    let mut runs = Vec::new();
    for run in 0..bench.runs {
        for tool in rotated(&Tool::ALL, run) {
            let seconds = attach(bench, tool, pid, binary, &hooks)
                .with_context(|| format!("bench: start-up of {tool:?}, run {run}"))?;
            println!(
                "bench: start-up run {}/{}: {tool:?} {}",
                run + 1,
                bench.runs,
                super::report::seconds(seconds)
            );
            runs.push(StartupRun { tool, run, seconds });
        }
    }
    let mut stdin = target.child.stdin.take().unwrap();
    stdin.write_all(b"done\n")?;
    drop(stdin);
    target.wait_success(STEP_TIMEOUT)?;

    let spread = |tool: Tool| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.tool == tool)
            .map(|r| r.seconds)
            .collect();
        Spread::of(&values)
    };
    let timerscope = spread(Tool::Timerscope);
    let bpftrace = spread(Tool::Bpftrace);
    let row = |what: &str, spread: Spread, comparison: String| Row {
        what: what.into(),
        median: seconds(spread.median),
        range: format!("{} – {}", seconds(spread.min), seconds(spread.max)),
        peak_memory: String::new(),
        comparison,
    };
    Ok(Section {
        title: format!(
            "6. Start-up: attaching to a running {} Go 1.25 binary",
            file_size(binary)
        ),
        rows: vec![
            row(
                "`timerscope record --pid`, start to `recording pid` line",
                timerscope,
                String::new(),
            ),
            row(
                "bpftrace, same functions, start to `BEGIN` output",
                bpftrace,
                format!(
                    "{:.2}x timerscope's time",
                    bpftrace.median / timerscope.median
                ),
            ),
        ],
        checks: Vec::new(),
        notes: vec![format!(
            "Until the probes are attached, not until the first event: the binary runs a 10 ms \
             ticker, so the first event follows within 10 ms. Hooked functions: {}.",
            hooks.join(", ")
        )],
        data: serde_json::json!({ "binary": binary, "hooks": hooks, "runs": runs }),
    })
}

/// Starts `tool` on `pid`, waits until its probes are attached, stops it; returns the time from
/// its start until attached.
fn attach(bench: &Bench, tool: Tool, pid: u32, binary: &Path, hooks: &[String]) -> Result<f64> {
    let (mut running, lines, start, attached) = match tool {
        Tool::Timerscope => {
            let start = Instant::now();
            let mut running = Running::spawn(
                Command::new(&bench.tools.timerscope)
                    .args(["record", "--pid", &pid.to_string(), "--output"])
                    .arg(bench.out_dir.join("startup.pb.gz"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )?;
            let mut lines = Lines::new("timerscope record", running.child.stderr.take().unwrap());
            let (_, attached) = lines.wait_for(TIMERSCOPE_READY, STEP_TIMEOUT)?;
            (running, lines, start, attached)
        }
        Tool::Bpftrace => {
            let script = bpftrace_script(binary, hooks, CountsAtExit::Discard)?;
            let tracer = start_bpftrace(pid, &script, &bench.out_dir.join("bpftrace-startup.log"))?;
            (
                tracer.running,
                tracer.stdout,
                tracer.started,
                tracer.attached,
            )
        }
    };
    let status = match tool {
        Tool::Timerscope => {
            running.interrupt()?;
            running.wait(STEP_TIMEOUT)
        }
        Tool::Bpftrace => running.interrupt_until_exit(STEP_TIMEOUT),
    };
    let status = status.with_context(|| format!("after printing:\n{}", lines.seen()))?;
    if !status.success() {
        bail!(
            "{tool:?} failed ({status}) after printing:\n{}",
            lines.seen()
        );
    }
    Ok(attached.duration_since(start).as_secs_f64())
}

/// The functions timerscope hooks in the running binary, from a first, unmeasured recording.
fn hook_functions(bench: &Bench, pid: u32) -> Result<Vec<String>> {
    attach(bench, Tool::Timerscope, pid, Path::new(""), &[])?;
    hooked_functions(&bench.out_dir.join("startup.pb.gz"))
}
