//! `cargo xtask fuzz [--time 60] [--target NAME]`: runs every cargo-fuzz target in `fuzz/` for
//! `--time` seconds each, starting from the seeds committed under `fuzz/seeds/<target>/`.
//! New inputs go to `fuzz/corpus/<target>/` (not committed), crashes to
//! `fuzz/artifacts/<target>/`; the full libFuzzer log of each run to
//! `fuzz/target/xtask-fuzz-<target>.log`. `runtime_image` reads a real Go binary's layouts:
//! `TIMERSCOPE_FUZZ_GO_BINARY` is set to the reference toolchain's own `go` command. Installs cargo-fuzz (`cargo install cargo-fuzz
//! --locked`) when it is missing; builds with the nightly toolchain that setup provides.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use timerscope_tests::workspace_root;

use crate::{setup, util};

const TOOLCHAIN: &str = "+nightly";

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Only this target (see `cargo +nightly fuzz list`); repeatable.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
}

/// What one target's run found.
struct Outcome {
    target: String,
    executions: Option<u64>,
    corpus: Option<u64>,
    crash: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    setup::run().context("fuzz: setup failed")?;
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");

    let listed = util::output(
        Command::new("cargo")
            .current_dir(&root)
            .args([TOOLCHAIN, "fuzz", "list"]),
    )
    .context("fuzz: listing targets")?;
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let targets = if args.targets.is_empty() {
        all.clone()
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("fuzz: no target {t:?}; have {}", all.join(", "));
            }
        }
        args.targets.clone()
    };

    println!("fuzz: building {} targets", targets.len());
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args([TOOLCHAIN, "fuzz", "build"]),
    )
    .context("fuzz: building the targets failed")?;

    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(&root, &fuzz_dir, target, args.time)?);
    }

    println!(
        "fuzz: {:<18} {:>12} {:>8}  result",
        "target", "executions", "corpus"
    );
    for o in &outcomes {
        let number = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        println!(
            "fuzz: {:<18} {:>12} {:>8}  {}",
            o.target,
            number(o.executions),
            number(o.corpus),
            o.crash.as_deref().unwrap_or("no crash")
        );
    }
    let crashed = outcomes.iter().filter(|o| o.crash.is_some()).count();
    if crashed > 0 {
        bail!(
            "fuzz: {crashed} of {} targets crashed (reproduce: cargo +nightly fuzz run TARGET ARTIFACT)",
            outcomes.len()
        );
    }
    println!(
        "xtask fuzz: {} targets, {}s each, no crash ({:.0}s in all)",
        outcomes.len(),
        args.time,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed =
        util::stdout_if_ok(Command::new("cargo").args([TOOLCHAIN, "fuzz", "--version"]));
    if let Some(version) = installed {
        println!("fuzz: {} ... already installed", version.trim());
        return Ok(());
    }
    println!("fuzz: cargo-fuzz ... missing; cargo install cargo-fuzz --locked");
    util::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("fuzz: installing cargo-fuzz failed")
}

fn run_target(root: &Path, fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let seeds = fuzz_dir.join("seeds").join(target);
    if !seeds.is_dir() {
        bail!(
            "fuzz: {target} has no seeds: {} is missing",
            seeds.display()
        );
    }
    let corpus = fuzz_dir.join("corpus").join(target);
    fs::create_dir_all(&corpus)?;
    let log_path = fuzz_dir
        .join("target")
        .join(format!("xtask-fuzz-{target}.log"));
    fs::create_dir_all(log_path.parent().unwrap())?;
    println!("fuzz: {target} for {seconds}s (log {})", log_path.display());

    // The first corpus directory receives new inputs; the seeds are only read.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env(
            "TIMERSCOPE_FUZZ_GO_BINARY",
            timerscope_tests::go_binary(timerscope_tests::reference_go()),
        )
        .args([TOOLCHAIN, "fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-print_final_stats=1", "-timeout=30", "-rss_limit_mb=4096"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let line = util::display(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let mut log = String::new();
    let mut outcome = Outcome {
        target: target.to_owned(),
        executions: None,
        corpus: None,
        crash: None,
    };
    for l in BufReader::new(child.stderr.take().unwrap()).lines() {
        let l = l?;
        if let Some(n) = l.strip_prefix("stat::number_of_executed_units:") {
            outcome.executions = n.trim().parse().ok();
        }
        // `#123 DONE cov: 456 ft: 789 corp: 42/1234b ...`
        if let Some(corp) = l.split("corp: ").nth(1) {
            outcome.corpus = corp.split('/').next().and_then(|n| n.parse().ok());
        }
        if l.contains("Test unit written to") {
            outcome.crash = Some(l.trim().to_owned());
        }
        if (l.starts_with("==") && l.contains("ERROR")) || l.contains("panicked at") {
            println!("fuzz: {target}: {l}");
        }
        log.push_str(&l);
        log.push('\n');
    }
    let status = child.wait()?;
    fs::write(&log_path, &log)?;
    if !status.success() && outcome.crash.is_none() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        outcome.crash = Some(format!("`{line}` failed ({status}):\n{}", tail.join("\n")));
    }
    Ok(outcome)
}
