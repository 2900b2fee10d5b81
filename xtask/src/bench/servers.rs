//! Row 7, servers: real Go HTTP servers saturated by `wrk` on loopback, requests per second
//! unprobed, under `timerscope watch` (its default: creation probes, 1% overhead budget), under
//! `timerscope record` (every timer event) and under the bpftrace script of the probe-cost row
//! (the same functions `record` hooks, `@[ustack] = count()`), and under count-only uprobes at
//! `record`'s hook addresses with no BPF (`uprobe_floor`: what every-event uprobes cost however
//! cheap the capture's own work); and `watch` paired with the same
//! server unprobed before and after it. The servers: the bench's net/http
//! server with read/write/idle timeouts (every request re-arms its connection's deadlines) built
//! by Go 1.19 and Go 1.25, and Debian's caddy. Agents interleave, in a rotated order each run;
//! every measurement starts a fresh server.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Bench;
use super::go_programs;
use super::hooks::{
    CountsAtExit, HookPoints, TIMERSCOPE_READY, bpftrace_script, hook_points, start_bpftrace,
};
use super::measure::{Lines, Running, Spread, rotated};
use super::report::{Check, Row, Section, rate};
use super::uprobe_floor::UprobeFloor;

pub(super) const WATCH_READY: &str = "timerscope: watching pid";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// After attaching, before the load starts.
const SETTLE: Duration = Duration::from_secs(1);
/// A fresh server's first load in a paired measurement, not counted.
const PAIRED_WARM_UP: Duration = Duration::from_secs(2);
/// wrk: one thread (the server and wrk share the two cores), this many connections.
const CONNECTIONS: &str = "32";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
enum Agent {
    Unprobed,
    Watch,
    Record,
    Bpftrace,
    UprobeFloor,
}

impl Agent {
    const ALL: [Agent; 5] = [
        Agent::Unprobed,
        Agent::Watch,
        Agent::Record,
        Agent::Bpftrace,
        Agent::UprobeFloor,
    ];

    fn label(self) -> &'static str {
        match self {
            Agent::Unprobed => "unprobed",
            Agent::Watch => "timerscope watch (default: --events create)",
            Agent::Record => "timerscope record (all events)",
            Agent::Bpftrace => "bpftrace, same functions as record",
            Agent::UprobeFloor => "count-only uprobes at record's hooks (perf stat, no BPF)",
        }
    }
}

/// One server under test.
struct Server {
    name: String,
    binary: PathBuf,
    /// Starts it listening on the port.
    command: Box<dyn Fn(u16) -> Command>,
}

#[derive(Debug, Serialize)]
struct PairedRun {
    server: String,
    run: usize,
    before: f64,
    watched: f64,
    after: f64,
}

#[derive(Debug, Serialize)]
struct ServerRun {
    server: String,
    agent: Agent,
    run: usize,
    requests_per_sec: f64,
    /// Uprobe hits per request, counted by the count-only uprobes.
    hits_per_request: Option<f64>,
}

pub fn run(bench: &Bench) -> Result<Section> {
    let mut servers = Vec::new();
    for version in ["1.19.8", "1.25.5"] {
        let go = timerscope_tests::go_version(version)
            .with_context(|| format!("bench: Go {version} is not a toolchain of the tests"))?;
        let binary = go_programs::server(go)?;
        let path = binary.clone();
        servers.push(Server {
            name: format!("net/http with deadlines, Go {version}"),
            binary,
            command: Box::new(move |port| {
                let mut cmd = Command::new(&path);
                cmd.args(["-addr", &format!("127.0.0.1:{port}")]);
                cmd
            }),
        });
    }
    let caddy = which("caddy").context(
        "bench: caddy is missing; run `cargo xtask setup` (it installs Debian's caddy and wrk)",
    )?;
    which("wrk").context("bench: wrk is missing; run `cargo xtask setup`")?;
    let dir = bench.out_dir.join("servers");
    fs::create_dir_all(&dir).with_context(|| format!("bench: creating {}", dir.display()))?;
    // `caddy file-server` serves a directory without a config file (no admin endpoint, no
    // HTTPS); HOME is a directory of ours, where caddy keeps its state.
    let root = dir.join("caddy-root");
    fs::create_dir_all(&root).with_context(|| format!("bench: creating {}", root.display()))?;
    fs::write(root.join("index.html"), "ok\n")
        .with_context(|| format!("bench: writing {}", root.display()))?;
    let home = dir.join("caddy-home");
    fs::create_dir_all(&home).with_context(|| format!("bench: creating {}", home.display()))?;
    let caddy_binary = caddy.clone();
    servers.push(Server {
        name: "caddy (Debian)".to_owned(),
        binary: caddy,
        command: Box::new(move |port| {
            let mut cmd = Command::new(&caddy_binary);
            cmd.args([
                "file-server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--root",
            ])
            .arg(&root)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", &home)
            .env("XDG_CONFIG_HOME", &home);
            cmd
        }),
    });

    let load = Duration::from_secs(if bench.runs <= 2 { 3 } else { 6 });
    let mut runs = Vec::new();
    let mut paired_runs = Vec::new();
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    let mut floor_notes = Vec::new();
    for server in &servers {
        let hooks = record_hooks(bench, server, &dir)?;
        let mut floor_hits = Vec::new();
        let mut by_agent: Vec<(Agent, Vec<f64>)> =
            Agent::ALL.iter().map(|&a| (a, Vec::new())).collect();
        for run in 0..bench.runs {
            for agent in rotated(&Agent::ALL, run) {
                let (rps, hits) = measure(bench, server, &hooks, agent, load, &dir)
                    .with_context(|| format!("bench: {} under {agent:?}", server.name))?;
                let hits_per_request = hits.map(|hits| hits as f64 / (rps * load.as_secs_f64()));
                println!(
                    "bench: servers: {} run {run}, {}: {rps:.0} requests/s{}",
                    server.name,
                    agent.label(),
                    hits_per_request
                        .map(|h| format!(", {h:.1} uprobe hits a request"))
                        .unwrap_or_default()
                );
                if let Some(h) = hits_per_request {
                    floor_hits.push(h);
                }
                by_agent
                    .iter_mut()
                    .find(|(a, _)| *a == agent)
                    .unwrap()
                    .1
                    .push(rps);
                runs.push(ServerRun {
                    server: server.name.clone(),
                    agent,
                    run,
                    requests_per_sec: rps,
                    hits_per_request,
                });
            }
        }
        let mut paired = Vec::new();
        for run in 0..bench.runs {
            let (ratio, [before, watched, after]) = measure_paired(bench, server, load, &dir)
                .with_context(|| format!("bench: {} paired with watch", server.name))?;
            println!(
                "bench: servers: {} paired run {run}: {before:.0} unprobed, {watched:.0} under \
                 watch, {after:.0} unprobed again: {ratio:.3}",
                server.name
            );
            paired.push(ratio);
            paired_runs.push(PairedRun {
                server: server.name.clone(),
                run,
                before,
                watched,
                after,
            });
        }
        let paired = Spread::of(&paired);
        let median =
            |agent: Agent| Spread::of(&by_agent.iter().find(|(a, _)| *a == agent).unwrap().1);
        let unprobed = median(Agent::Unprobed).median;
        for &agent in &Agent::ALL {
            let spread = median(agent);
            let ratio = spread.median / unprobed;
            rows.push(Row {
                what: format!("{}: {}", server.name, agent.label()),
                median: format!("{} requests/s", rate(spread.median)),
                range: format!("{} – {}", rate(spread.min), rate(spread.max)),
                peak_memory: String::new(),
                comparison: if agent == Agent::Unprobed {
                    "baseline".to_owned()
                } else {
                    format!("{ratio:.3} of unprobed")
                },
            });
        }
        rows.push(Row {
            what: format!(
                "{}: watch against the same server unprobed before and after",
                server.name
            ),
            median: format!("{:.3}", paired.median),
            range: format!("{:.3} – {:.3}", paired.min, paired.max),
            peak_memory: String::new(),
            comparison: "watch / mean(before, after)".to_owned(),
        });
        let ratio = |agent| median(agent).median / unprobed;
        let (watch, record, bpftrace, floor) = (
            ratio(Agent::Watch),
            ratio(Agent::Record),
            ratio(Agent::Bpftrace),
            ratio(Agent::UprobeFloor),
        );
        floor_notes.push(format!(
            "{}: {:.1} uprobe hits a request at record's {} probe points; count-only uprobes \
             there keep {floor:.3} of unprobed, record {record:.3}.",
            server.name,
            Spread::of(&floor_hits).median,
            hooks.timer.len() + hooks.goroutine.len()
        ));
        checks.push(Check {
            target: format!("{}: watch >= 0.99 of unprobed", server.name),
            measured: format!("{watch:.3} ({:.3} paired)", paired.median),
            met: watch >= 0.99,
        });
        checks.push(Check {
            target: format!("{}: record >= 0.90 of unprobed", server.name),
            measured: format!("{record:.3}"),
            met: record >= 0.90,
        });
        let (record_loss, bpftrace_loss) = ((1.0 - record).max(0.0), (1.0 - bpftrace).max(0.0));
        checks.push(Check {
            target: format!(
                "{}: record loses at least 4x less than bpftrace",
                server.name
            ),
            measured: format!(
                "loss {:.1}% vs {:.1}%",
                record_loss * 100.0,
                bpftrace_loss * 100.0
            ),
            met: record_loss * 4.0 <= bpftrace_loss,
        });
    }
    Ok(Section {
        title: "7. Servers under wrk: requests/s with and without probes".to_owned(),
        rows,
        checks,
        notes: std::iter::once(format!(
            "wrk -t1 -c{CONNECTIONS} for {} s per measurement on loopback; server and wrk share \
             the machine's cores. A fresh server per measurement; agents interleaved in a \
             rotated order per run; medians of {} runs. Paired: one server loaded {} s \
             unmeasured, then unprobed, under watch, and unprobed again once watch exited, {} \
             s each; its ratio is watch over the mean of the two unprobed loads. Loads of one \
             server spread as widely as fresh servers do, so the target is checked across \
             fresh servers, as before.",
            load.as_secs(),
            bench.runs,
            PAIRED_WARM_UP.as_secs(),
            load.as_secs()
        ))
        .chain(floor_notes)
        .collect(),
        data: serde_json::json!({ "runs": runs, "paired": paired_runs }),
    })
}

fn which(tool: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
        .with_context(|| format!("bench: {tool} is not on PATH"))
}

/// A free loopback port.
pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the server on a free port and waits until it accepts connections.
fn start(server: &Server) -> Result<(Running, u16)> {
    let port = free_port()?;
    let running = Running::spawn(
        (server.command)(port)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((running, port));
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("bench: {} never listened on port {port}", server.name)
}

/// What `record` hooks in this server, from a short unmeasured recording.
fn record_hooks(bench: &Bench, server: &Server, dir: &Path) -> Result<HookPoints> {
    let (mut target, _) = start(server)?;
    let profile = dir.join("hooks.pb.gz");
    let mut record = Running::spawn(
        Command::new(&bench.tools.timerscope)
            .args(["record", "--pid", &target.pid().to_string(), "-o"])
            .arg(&profile)
            .args(["--duration", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    record.wait_success(STEP_TIMEOUT)?;
    target.interrupt_until_exit(STEP_TIMEOUT)?;
    hook_points(&profile)
}

/// Requests/s of a fresh server under `agent`; with the count-only uprobes, also their hits.
fn measure(
    bench: &Bench,
    server: &Server,
    hooks: &HookPoints,
    agent: Agent,
    load: Duration,
    dir: &Path,
) -> Result<(f64, Option<u64>)> {
    let (mut target, port) = start(server)?;
    if agent == Agent::UprobeFloor {
        let points: Vec<_> = hooks
            .timer
            .iter()
            .chain(&hooks.goroutine)
            .cloned()
            .collect();
        let floor = UprobeFloor::attach(&server.binary, &points, &dir.join("perf-stat.csv"))?;
        thread::sleep(SETTLE);
        let rps = wrk(port, load)?;
        let hits = floor.finish()?;
        target.interrupt_until_exit(STEP_TIMEOUT)?;
        return Ok((rps, Some(hits)));
    }
    let functions: Vec<String> = hooks.timer.iter().map(|(f, _)| f.clone()).collect();
    let mut attached = attach(bench, server, &functions, agent, target.pid(), dir)?;
    thread::sleep(SETTLE);
    let rps = wrk(port, load)?;
    if let Some((running, _)) = &mut attached {
        running.interrupt_until_exit(STEP_TIMEOUT)?;
    }
    target.interrupt_until_exit(STEP_TIMEOUT)?;
    Ok((rps, None))
}

/// One server, unprobed, then under `watch`, then unprobed again once `watch` has exited and
/// detached: `watch`'s requests/s over the mean of the two around it, free of what differs
/// between fresh servers (placement on the cores, heap growth). On this machine consecutive
/// loads of one server spread by as much (±8%), so this is a second estimate, not a sharper one.
fn measure_paired(
    bench: &Bench,
    server: &Server,
    load: Duration,
    dir: &Path,
) -> Result<(f64, [f64; 3])> {
    let (mut target, port) = start(server)?;
    // Warm: the first seconds of a fresh server grow its heap and its threads.
    wrk(port, PAIRED_WARM_UP)?;
    let before = wrk(port, load)?;
    let (mut watch, _stderr) =
        attach(bench, server, &[], Agent::Watch, target.pid(), dir)?.expect("watch is an agent");
    thread::sleep(SETTLE);
    let watched = wrk(port, load)?;
    watch.interrupt_until_exit(STEP_TIMEOUT)?;
    thread::sleep(SETTLE);
    let after = wrk(port, load)?;
    target.interrupt_until_exit(STEP_TIMEOUT)?;
    Ok((watched / ((before + after) / 2.0), [before, watched, after]))
}

/// Starts `agent` on `pid`, once it has attached; `None` unprobed.
fn attach(
    bench: &Bench,
    server: &Server,
    hooks: &[String],
    agent: Agent,
    pid: u32,
    dir: &Path,
) -> Result<Option<(Running, Lines)>> {
    let pid_arg = pid.to_string();
    Ok(match agent {
        Agent::Unprobed => None,
        Agent::UprobeFloor => bail!("bench: measure attaches the count-only uprobes itself"),
        Agent::Watch | Agent::Record => {
            let (args, ready): (Vec<String>, _) = if agent == Agent::Watch {
                let out = dir.join("watch");
                let _ = fs::remove_dir_all(&out);
                (
                    ["watch", "--pid", &pid_arg, "--interval", "60s", "--dir"]
                        .map(str::to_owned)
                        .into_iter()
                        .chain([out.display().to_string()])
                        .collect(),
                    WATCH_READY,
                )
            } else {
                (
                    ["record", "--pid", &pid_arg, "-o"]
                        .map(str::to_owned)
                        .into_iter()
                        .chain([dir.join("record.pb.gz").display().to_string()])
                        .collect(),
                    TIMERSCOPE_READY,
                )
            };
            let mut running = Running::spawn(
                Command::new(&bench.tools.timerscope)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )?;
            let mut stderr = Lines::new("timerscope", running.child.stderr.take().unwrap());
            stderr.wait_for(ready, STEP_TIMEOUT)?;
            Some((running, stderr))
        }
        Agent::Bpftrace => {
            let script = bpftrace_script(&server.binary, hooks, CountsAtExit::Discard)?;
            let tracer = start_bpftrace(pid, &script, &dir.join("bpftrace-servers.log"))?;
            Some((tracer.running, tracer.stdout))
        }
    })
}

/// wrk's requests/s against the port for `load`.
fn wrk(port: u16, load: Duration) -> Result<f64> {
    let output = crate::util::output(Command::new("wrk").args([
        "-t1",
        "-c",
        CONNECTIONS,
        "-d",
        &format!("{}s", load.as_secs()),
        &format!("http://127.0.0.1:{port}/"),
    ]))
    .context("bench: wrk")?;
    requests_per_sec(&String::from_utf8_lossy(&output.stdout))
}

/// `Requests/sec:  12345.67` from wrk's report.
pub(super) fn requests_per_sec(report: &str) -> Result<f64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("bench: no Requests/sec in wrk's report:\n{report}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_s_rate() {
        let report = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n\
                      Requests/sec:  41234.56\nTransfer/sec:      4.65MB\n";
        assert_eq!(requests_per_sec(report).unwrap(), 41234.56);
        assert!(requests_per_sec("nothing").is_err());
    }
}
