//! `cargo xtask test`: setup, fixtures, fmt, clippy, then every test (unit and integration), the
//! test binaries several at once.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use timerscope_tests::{FIXTURES_ENV, workspace_root};

use crate::{fixtures, setup, util};

pub fn run() -> Result<()> {
    let start = Instant::now();
    setup::run().context("test: setup failed")?;
    let fixtures_dir =
        fixtures::run(&fixtures::Args::default()).context("test: building fixtures failed")?;
    let root = workspace_root();

    println!("test: cargo fmt --all --check");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )
    .context("test: formatting differs; run `cargo fmt --all`")?;

    println!("test: cargo clippy --all-targets -- -D warnings");
    util::run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("test: clippy found problems")?;

    // Integration tests run the real `timerscope` binary; `cargo test` builds only test
    // harnesses of binary targets, so build the binary itself first. With the tests: built
    // alone, the binary resolves its dependencies' features without the dev-dependencies,
    // and `cargo test` then compiles the workspace (and the eBPF object) a second time.
    println!("test: cargo build --bins --tests");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--bins", "--tests"]),
    )
    .context("test: building timerscope failed")?;

    let binaries = test_binaries(&root)?;
    let threads = threads_per_binary();
    println!(
        "test: {} test binaries, {BINARIES_AT_ONCE} at once, {threads} test threads each \
         ({FIXTURES_ENV}={})",
        binaries.len(),
        fixtures_dir.display()
    );
    let mut counts = Counts::default();
    let mut failed = Vec::new();
    for run in run_all(binaries, threads, &fixtures_dir) {
        println!(
            "test: {} ({:.0}s)",
            run.binary.name,
            run.elapsed.as_secs_f64()
        );
        std::io::stdout().write_all(&run.output)?;
        counts.add_all(&run.output);
        match run.status {
            Ok(status) if status.success() => {}
            Ok(status) => failed.push(format!("{} ({status})", run.binary.name)),
            Err(error) => failed.push(format!("{} (cannot run: {error})", run.binary.name)),
        }
    }

    // Doc tests are not test binaries: rustdoc builds and runs them.
    println!("test: cargo test --doc");
    let doc = Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--doc"])
        .env(FIXTURES_ENV, &fixtures_dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `cargo test --doc`")?;
    std::io::stdout().write_all(&doc.stdout)?;
    counts.add_all(&doc.stdout);
    if !doc.status.success() {
        std::io::stdout().write_all(&doc.stderr)?;
        failed.push(format!("doc tests ({})", doc.status));
    }

    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "test: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    if !failed.is_empty() {
        bail!(
            "test: {} failed after {elapsed:.0}s: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    if counts.passed == 0 {
        bail!("test: cargo test ran no test");
    }
    println!("xtask test: fmt, clippy and all tests passed in {elapsed:.0}s");
    Ok(())
}

/// Test binaries run at once. The integration tests mostly wait: on their Go fixtures, on
/// recordings of a fixed length, on the kernel detaching probes (about 0.1 s per probe, under
/// one kernel lock). Run one binary after another, as `cargo test` does, the 2 cores were idle
/// half of the time and each binary's slowest tests ran alone at its end.
const BINARIES_AT_ONCE: usize = 2;

/// `RUST_TEST_THREADS` when set, else 3 (libtest's default is the number of cores). More
/// tests at once than 2 binaries of 3 made the timing-sensitive ones fail here (a target's
/// scenario ending before the attach did, a heap that never moved while read).
fn threads_per_binary() -> usize {
    std::env::var("RUST_TEST_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// A test harness cargo built: a crate's unit tests or one integration test file.
struct TestBinary {
    /// `capture` (unit tests) or `timerscope-tests/classify`.
    name: String,
    executable: PathBuf,
    /// Where `cargo test` would run it: its package's directory.
    package_dir: PathBuf,
    /// Tests it holds, to start the biggest binaries first.
    tests: usize,
}

/// Every test harness of the workspace, as `cargo test --no-run` reports them (built already).
fn test_binaries(root: &Path) -> Result<Vec<TestBinary>> {
    let out = util::output(Command::new("cargo").current_dir(root).args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]))?;
    let mut binaries = Vec::new();
    for line in out.stdout.split(|&b| b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let package_dir = message["manifest_path"]
            .as_str()
            .and_then(|m| Path::new(m).parent())
            .context("test: cargo reported a test binary without its manifest")?
            .to_path_buf();
        let package = package_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = message["target"]["name"].as_str().unwrap_or_default();
        let is_integration_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        let name = if is_integration_test {
            format!("{package}/{target}")
        } else {
            format!("{package} ({target} unit tests)")
        };
        let executable = PathBuf::from(executable);
        let listed = util::output(Command::new(&executable).args(["--list", "--format", "terse"]))
            .with_context(|| format!("test: listing the tests of {name}"))?;
        let tests = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.ends_with(": test"))
            .count();
        binaries.push(TestBinary {
            name,
            executable,
            package_dir,
            tests,
        });
    }
    if binaries.is_empty() {
        bail!("test: cargo test --no-run reported no test binary");
    }
    binaries.sort_by(|a, b| b.tests.cmp(&a.tests).then_with(|| a.name.cmp(&b.name)));
    Ok(binaries)
}

/// One binary's run: all of its output (stdout, then stderr), kept to be printed in one piece.
struct BinaryRun {
    binary: TestBinary,
    output: Vec<u8>,
    status: std::io::Result<std::process::ExitStatus>,
    elapsed: Duration,
}

/// Runs `binaries`, [`BINARIES_AT_ONCE`] at a time, biggest first; yields each as it ends.
fn run_all(
    binaries: Vec<TestBinary>,
    threads: usize,
    fixtures_dir: &Path,
) -> mpsc::IntoIter<BinaryRun> {
    let queue = Arc::new(Mutex::new(VecDeque::from(binaries)));
    let (done, runs) = mpsc::channel();
    for _ in 0..BINARIES_AT_ONCE {
        let (queue, done, fixtures_dir) = (queue.clone(), done.clone(), fixtures_dir.to_owned());
        thread::spawn(move || {
            loop {
                let Some(binary) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let started = Instant::now();
                let result = Command::new(&binary.executable)
                    .args(["--test-threads", &threads.to_string()])
                    .current_dir(&binary.package_dir)
                    .env(FIXTURES_ENV, &fixtures_dir)
                    .stdin(Stdio::null())
                    .output();
                let (output, status) = match result {
                    Ok(out) => ([out.stdout, out.stderr].concat(), Ok(out.status)),
                    Err(error) => (Vec::new(), Err(error)),
                };
                let run = BinaryRun {
                    binary,
                    output,
                    status,
                    elapsed: started.elapsed(),
                };
                if done.send(run).is_err() {
                    break;
                }
            }
        });
    }
    runs.into_iter()
}

/// Sums libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    fn add_all(&mut self, output: &[u8]) {
        for line in String::from_utf8_lossy(output).lines() {
            self.add(line);
        }
    }

    fn add(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match kind {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::Counts;

    #[test]
    fn sums_libtest_result_lines() {
        let mut c = Counts::default();
        c.add("test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        c.add("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s");
        c.add("running 3 tests");
        assert_eq!((c.passed, c.failed, c.ignored), (5, 1, 1));
    }
}
