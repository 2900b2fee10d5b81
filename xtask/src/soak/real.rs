//! `cargo xtask soak --real`: a real Go server, Debian's caddy (a file server on loopback),
//! under `wrk` for the duration, first with `timerscope watch` (its default tier), then with
//! `timerscope record --events all`. Checks per phase: caddy never crashed, requests/s did not
//! drift down (the last third's mean at least [`MIN_RPS_RATIO`] of the first third's), the
//! agent's RSS flat after warm-up (less than [`MAX_RSS_GROWTH`] growth over the last half),
//! every interval file present and decodable, drops counted. Prints a table of the numbers.
//! Load goes to 127.0.0.1 only, in bounded slices of [`SLICE`].

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use timerscope_tests::workspace_root;

/// One wrk run; requests/s and RSS are sampled once per slice.
const SLICE: Duration = Duration::from_secs(10);
/// The last third's requests/s over the first third's, at least (a shared machine's noise
/// stays above it; a server slowed by its probes does not).
const MIN_RPS_RATIO: f64 = 0.85;
/// Agent RSS growth over the last half of the run, at most.
const MAX_RSS_GROWTH: f64 = 0.10;

/// What one phase measured.
struct Phase {
    agent: &'static str,
    slices: Vec<(f64, u64)>,
    files: usize,
    drops: u64,
    target_crashes: u32,
}

impl Phase {
    fn thirds(&self) -> (f64, f64) {
        let n = self.slices.len();
        let mean = |s: &[(f64, u64)]| s.iter().map(|x| x.0).sum::<f64>() / s.len().max(1) as f64;
        let third = (n / 3).max(1);
        (mean(&self.slices[..third]), mean(&self.slices[n - third..]))
    }

    /// (RSS at the half, RSS at the end) in KiB.
    fn rss(&self) -> (u64, u64) {
        let n = self.slices.len();
        (self.slices[n / 2].1, self.slices[n - 1].1)
    }
}

pub fn run(duration: Duration) -> Result<()> {
    let root = workspace_root();
    let timerscope = root.join("target/debug/timerscope");
    for tool in ["caddy", "wrk"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("soak --real: {tool} is missing: run `cargo xtask setup`");
        }
    }
    let slices = (duration.as_secs() / SLICE.as_secs()).max(3) as usize;
    let interval = Duration::from_secs((duration.as_secs() / 12).max(10));
    let work = std::env::temp_dir().join(format!("timerscope-soak-real-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(work.join("site"))?;
    fs::write(
        work.join("site/index.html"),
        "<p>timerscope soak</p>\n".repeat(200),
    )?;

    let mut phases = Vec::new();
    for agent in ["watch", "record"] {
        println!(
            "soak --real: caddy under wrk with timerscope {agent} for {slices} slices of {SLICE:?}"
        );
        phases.push(phase(&timerscope, &work, agent, slices, interval)?);
    }
    let _ = fs::remove_dir_all(&work);

    println!(
        "soak --real: {:<7} {:>10} {:>10} {:>6} {:>10} {:>10} {:>7} {:>6} {:>6} {:>8}",
        "agent",
        "rps first",
        "rps last",
        "ratio",
        "rss half",
        "rss end",
        "growth",
        "files",
        "drops",
        "crashes"
    );
    let mut failures = Vec::new();
    for p in &phases {
        let (first, last) = p.thirds();
        let (half, end) = p.rss();
        let growth = end as f64 / half.max(1) as f64 - 1.0;
        println!(
            "soak --real: {:<7} {first:>10.0} {last:>10.0} {:>6.2} {:>8}Ki {:>8}Ki {:>6.1}% {:>6} {:>6} {:>8}",
            p.agent,
            last / first,
            half,
            end,
            growth * 100.0,
            p.files,
            p.drops,
            p.target_crashes
        );
        if p.target_crashes > 0 {
            failures.push(format!("{}: caddy crashed", p.agent));
        }
        if last < first * MIN_RPS_RATIO {
            failures.push(format!(
                "{}: requests/s drifted down ({first:.0} -> {last:.0})",
                p.agent
            ));
        }
        if growth > MAX_RSS_GROWTH {
            failures.push(format!(
                "{}: agent RSS grew {:.1}% over the last half",
                p.agent,
                growth * 100.0
            ));
        }
    }
    if !failures.is_empty() {
        bail!("soak --real: FAILED: {}", failures.join("; "));
    }
    println!("xtask soak --real: passed");
    Ok(())
}

/// A free loopback port.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills and reaps a child we started.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn phase(
    timerscope: &Path,
    work: &Path,
    agent: &'static str,
    slices: usize,
    interval: Duration,
) -> Result<Phase> {
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let home = work.join(format!("home-{agent}"));
    fs::create_dir_all(&home)?;
    let mut caddy = Command::new("caddy")
        .args(["file-server", "--listen", &address, "--root"])
        .arg(work.join("site"))
        .env("HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("soak --real: cannot start caddy")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&address).is_err() {
        if Instant::now() > deadline || caddy.try_wait()?.is_some() {
            end(&mut caddy);
            bail!("soak --real: caddy does not listen on {address}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = measure(
        timerscope, work, agent, slices, interval, &mut caddy, &address,
    );
    end(&mut caddy);
    result
}

fn measure(
    timerscope: &Path,
    work: &Path,
    agent: &'static str,
    slices: usize,
    interval: Duration,
    caddy: &mut Child,
    address: &str,
) -> Result<Phase> {
    let pid = caddy.id().to_string();
    let dir = work.join(agent);
    fs::create_dir_all(&dir)?;
    let mut command = Command::new(timerscope);
    match agent {
        "watch" => command
            .args(["watch", "--pid", &pid, "--interval"])
            .arg(format!("{}s", interval.as_secs()))
            .arg("--dir")
            .arg(&dir),
        _ => command
            .args(["record", "--pid", &pid, "--events", "all", "-o"])
            .arg(dir.join("record.pb.gz")),
    };
    let mut recorder = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("soak --real: cannot start timerscope")?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let lines = BufReader::new(recorder.stderr.take().unwrap());
    let collected = Arc::clone(&stderr);
    let reader = std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let mut all = collected.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stderr.lock().unwrap().contains(" pid ") {
        if Instant::now() > deadline || recorder.try_wait()?.is_some() {
            end(&mut recorder);
            bail!(
                "soak --real: timerscope {agent} did not attach: {}",
                stderr.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut measured = Vec::new();
    let mut target_crashes = 0;
    for _ in 0..slices {
        let out = Command::new("wrk")
            .args(["-t2", "-c32"])
            .arg(format!("-d{}s", SLICE.as_secs()))
            .arg(format!("http://{address}/"))
            .output()
            .context("soak --real: wrk")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rps = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if caddy.try_wait()?.is_some() {
            target_crashes += 1;
            break;
        }
        measured.push((rps, rss_kib(recorder.id()).unwrap_or(0)));
    }
    nix_interrupt(recorder.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = recorder.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            end(&mut recorder);
            bail!("soak --real: timerscope {agent} did not stop within 120 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    let stderr = stderr.lock().unwrap().clone();
    if !status.success() {
        bail!("soak --real: timerscope {agent} failed ({status}): {stderr}");
    }
    if measured.len() < 3 {
        bail!(
            "soak --real: {agent}: caddy stopped after {} slices",
            measured.len()
        );
    }

    let mut files = 0;
    let mut drops = 0;
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with(".pb.gz") {
            continue;
        }
        let profile = pprof::read_file(&path)
            .with_context(|| format!("soak --real: {} does not decode", path.display()))?;
        drops += drop_count(&profile);
        files += 1;
    }
    let expected = match agent {
        // One per interval, less the one cut short at SIGINT.
        "watch" => (slices as u64 * SLICE.as_secs() / interval.as_secs()).max(1) as usize,
        _ => 1,
    };
    if files < expected {
        bail!(
            "soak --real: {agent}: {files} profiles in {}, expected {expected}",
            dir.display()
        );
    }
    Ok(Phase {
        agent,
        slices: measured,
        files,
        drops,
        target_crashes,
    })
}

/// The `drops:` comment's counts, summed (every loss is counted there).
fn drop_count(profile: &pprof::Profile) -> u64 {
    pprof::ResolvedProfile::new(profile)
        .comments
        .iter()
        .filter_map(|c| c.strip_prefix("drops:"))
        .flat_map(|c| c.split_whitespace())
        .filter_map(|pair| pair.split_once('=')?.1.parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn nix_interrupt(pid: u32) {
    // SAFETY: signals a child we started and have not reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
}
