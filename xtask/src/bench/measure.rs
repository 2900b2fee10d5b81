//! Running the measured commands: children that are killed if a benchmark fails half-way,
//! output lines with their arrival times, wall time and peak memory of one command, medians.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::util;

/// Median, minimum and maximum of a benchmark's runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        assert!(!samples.is_empty(), "a spread of no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// `items` rotated left by `by`: run `r` of an interleaved benchmark starts with a different
/// command each time, so no command always runs first (cold) or right after another.
pub fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    let mut out = items.to_vec();
    out.rotate_left(by % items.len().max(1));
    out
}

/// SplitMix64: deterministic inputs (addresses) for the same binary in every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// A child process that is killed (and reaped) when dropped while still running, so a failed
/// benchmark leaves no probes attached and no fixture behind.
pub struct Running {
    pub child: Child,
    command: String,
}

impl Running {
    pub fn spawn(cmd: &mut Command) -> Result<Running> {
        let command = util::display(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run `{command}`"))?;
        Ok(Running { child, command })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT (what Ctrl-C sends) unless the process has exited already.
    pub fn interrupt(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            // SAFETY: kill(2) with our own child's pid, which is not reaped yet.
            if unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGINT) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("interrupting `{}`", self.command));
            }
        }
        Ok(())
    }

    /// Interrupts the process once a second until it exits: bpftrace misses a SIGINT that
    /// arrives right after its `BEGIN` probe ran.
    pub fn interrupt_until_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            self.interrupt()?;
            match self.wait(Duration::from_secs(1)) {
                Ok(status) => return Ok(status),
                Err(_) if Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the process to exit; an error if it takes longer than `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("`{}` still running after {timeout:?}", self.command);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process and fails unless it exited with status 0.
    pub fn wait_success(&mut self, timeout: Duration) -> Result<()> {
        let status = self.wait(timeout)?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.command);
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines of a child's stdout or stderr, read on a thread and stamped with their arrival.
pub struct Lines {
    what: String,
    lines: Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Lines {
    pub fn new(what: impl Into<String>, stream: impl Read + Send + 'static) -> Lines {
        let (sender, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if sender.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            what: what.into(),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the next line containing `needle`; returns it and when it arrived.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = match self.lines.recv_timeout(left) {
                Ok(received) => received,
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{}: no line containing {needle:?} within {timeout:?}; it printed:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "{}: ended without a line containing {needle:?}; it printed:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            };
            self.seen.push(line.clone());
            if line.contains(needle) {
                return Ok((line, at));
            }
        }
    }

    /// The lines not read yet, up to the end of the stream (the process closed it or exited).
    pub fn rest(&mut self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, line)) => {
                    self.seen.push(line.clone());
                    rest.push(line);
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(rest),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{}: output still open after {timeout:?}", self.what)
                }
            }
        }
    }

    /// Everything read so far, for error messages.
    pub fn seen(&self) -> String {
        self.seen.join("\n")
    }
}

/// One run of a command: its wall time and peak resident memory.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub seconds: f64,
    pub max_rss_kib: u64,
}

/// How often [`run_measured`] samples the child's peak RSS.
const RSS_SAMPLING: Duration = Duration::from_millis(5);

/// The peak resident memory (`VmHWM`) of a process's current program, or None once it has
/// exited. Not `wait4`'s `ru_maxrss`: that also counts the memory of the process that spawned
/// it (std spawns with vfork, and exec records the shared address space's high-water mark).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs a command to completion with stdin from `stdin` (else nothing), returning its stdout,
/// wall time and peak RSS (the last `VmHWM` sampled every 5 ms, so growth in the last
/// milliseconds before exit can be missed). An error if it fails.
pub fn run_measured(cmd: &mut Command, stdin: Option<&Path>) -> Result<(Usage, Vec<u8>)> {
    let line = util::display(cmd);
    let input = match stdin {
        Some(path) => {
            Stdio::from(File::open(path).with_context(|| format!("opening {}", path.display()))?)
        }
        None => Stdio::null(),
    };
    let start = Instant::now();
    let mut child = cmd
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let pid = child.id();
    let rss_sampler = thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = peak_rss_kib(pid) {
            peak = kib;
            thread::sleep(RSS_SAMPLING);
        }
        peak
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut stdout)
        .with_context(|| format!("reading the output of `{line}`"))?;
    // The sampler stops when the process has exited (a zombie has no VmHWM), before the reap.
    let max_rss_kib = rss_sampler.join().unwrap_or(0);
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    let seconds = start.elapsed().as_secs_f64();
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        bail!("`{line}` failed ({status}):\n{stderr}");
    }
    Ok((
        Usage {
            seconds,
            max_rss_kib,
        },
        stdout,
    ))
}

/// CPU time of a process: the sum over its threads of the scheduler's run time
/// (`/proc/PID/task/*/schedstat`, nanoseconds; `/proc/PID/stat` counts 10 ms ticks, too coarse
/// for an agent that uses a fraction of a percent). Threads that exited are not counted.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let tasks = format!("/proc/{pid}/task");
    let mut nanos = 0;
    for task in fs::read_dir(&tasks).with_context(|| format!("bench: reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread that exits between read_dir and here has no schedstat any more.
        let Ok(schedstat) = fs::read_to_string(&path) else {
            continue;
        };
        nanos += schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .with_context(|| format!("bench: reading {}", path.display()))?;
    }
    Ok(Duration::from_nanos(nanos))
}
