//! `cargo xtask soak [--duration 10m] [--go 1.25]`: the target-safety soak. The soak fixture
//! (tests/fixtures/soak) churns timers from many goroutines whose stacks grow and are preempted
//! all the time, recorded by `timerscope record -- FIXTURE` for the whole duration. Passes when
//! the fixture exits 0 (no crash), its own counts of timers created, reset, stopped and fired
//! equal the profile's at its functions, and nothing was dropped.
//!
//! `--real` soaks a real Go server instead (see [`real`]).
//!
//! The checks are the integration test `soak_target_survives_with_exact_counts` in
//! tests/tests/reliability.rs, which `cargo xtask test` runs for 60 s; this runs it for longer.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use timerscope_tests::{FIXTURES_ENV, workspace_root};

use crate::{fixtures, setup, util};

mod real;

/// The soak test in tests/tests/reliability.rs, and its settings.
const TEST_FILE: &str = "reliability";
const TEST_NAME: &str = "soak_target_survives_with_exact_counts";
const SECONDS_ENV: &str = "TIMERSCOPE_SOAK_SECONDS";
const GO_ENV: &str = "TIMERSCOPE_SOAK_GO";

#[derive(clap::Args, Clone)]
pub struct Args {
    /// How long the fixture runs under the probes: 90s, 10m, 1h.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Go toolchain the fixture is built with (e.g. 1.19 or 1.25.5).
    #[arg(long, default_value = "1.25")]
    pub go: String,
    /// Soak Debian's caddy under wrk, with `watch` and then `record --events all`.
    #[arg(long)]
    pub real: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    if args.real {
        setup::run().context("soak: setup failed")?;
        util::run(Command::new("cargo").current_dir(workspace_root()).args([
            "build",
            "-p",
            "timerscope",
        ]))
        .context("soak: building timerscope failed")?;
        real::run(args.duration)?;
        println!(
            "xtask soak --real: {:.0}s in all",
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let go = timerscope_tests::go_version(&args.go)
        .with_context(|| format!("soak: unknown Go version {:?}", args.go))?;
    setup::run().context("soak: setup failed")?;
    let fixtures_dir = fixtures::run(&fixtures::Args {
        go: vec![go.version.to_owned()],
        only: vec!["soak".to_owned()],
        ..fixtures::Args::default()
    })
    .context("soak: building the fixture failed")?;
    let root = workspace_root();
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "-p", "timerscope"]),
    )
    .context("soak: building timerscope failed")?;

    let seconds = args.duration.as_secs().max(1);
    println!("soak: recording the soak fixture ({go}) for {seconds}s");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["test", "-p", "timerscope-tests", "--test", TEST_FILE, "--"])
            .args(["--exact", TEST_NAME, "--nocapture"])
            .env(FIXTURES_ENV, &fixtures_dir)
            .env(SECONDS_ENV, seconds.to_string())
            .env(GO_ENV, go.version),
    )
    .context("soak: FAILED")?;
    println!(
        "xtask soak: passed ({seconds}s soak, {:.0}s in all)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `90`, `90s`, `10m`, `1h`: whole seconds, minutes or hours.
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?}: expected e.g. 90s, 10m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("{text:?}: the unit is s, m or h"),
    };
    if seconds == 0 {
        bail!("{text:?}: the soak needs a duration above zero");
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod unit {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_in_seconds_minutes_hours() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
