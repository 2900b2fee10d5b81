//! `cargo xtask test`: setup, fixtures, fmt, clippy, then every test (unit and integration).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

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

    println!(
        "test: cargo test ({FIXTURES_ENV}={})",
        fixtures_dir.display()
    );
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .arg("test")
        .env(FIXTURES_ENV, &fixtures_dir)
        .stdout(Stdio::piped());
    let line = util::display(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let mut counts = Counts::default();
    let stdout = child.stdout.take().unwrap();
    let mut out = std::io::stdout();
    for l in BufReader::new(stdout).lines() {
        let l = l?;
        counts.add(&l);
        writeln!(out, "{l}")?;
    }
    let status = child.wait()?;
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "test: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    if !status.success() {
        bail!("test: `{line}` failed ({status}) after {elapsed:.0}s");
    }
    if counts.passed == 0 {
        bail!("test: cargo test ran no test");
    }
    println!("xtask test: fmt, clippy and all tests passed in {elapsed:.0}s");
    Ok(())
}

/// Sums libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
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
