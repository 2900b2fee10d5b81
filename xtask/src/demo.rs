//! `cargo xtask demo`: the main job on a bundled leaky Go service. Installs only what it needs
//! (rust-src, bpf-linker, Go 1.25; no fixture matrix), builds timerscope and `demo/leaky`, runs the service, records it for 10 s with
//! `timerscope record --pid`, and shows where its live timers come from: `timerscope classify`'s
//! findings and `go tool pprof -top`.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use timerscope_tests::{cache_dir, go_binary, reference_go, workspace_root};

use crate::util;

const RECORD_SECONDS: u32 = 10;

pub fn run() -> Result<()> {
    let started = Instant::now();
    let go = reference_go();
    crate::setup::run_for_demo(go)?;
    let root = workspace_root();
    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir).context("demo: creating target/demo")?;

    println!("demo: building timerscope");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "-p", "timerscope"]),
    )?;
    let timerscope = root.join("target/debug/timerscope");

    let service = out_dir.join("leaky");
    println!("demo: building demo/leaky with Go {}", go.version);
    util::run(
        Command::new(go_binary(go))
            .current_dir(root.join("demo/leaky"))
            .args(["build", "-o"])
            .arg(&service)
            .arg(".")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", cache_dir().join("gocache").join(go.version)),
    )?;

    let mut child = Command::new(&service)
        .stdout(Stdio::inherit())
        .spawn()
        .with_context(|| format!("demo: cannot run {}", service.display()))?;
    let profile = out_dir.join("leaky.pb.gz");
    println!(
        "demo: recording the running service (pid {}) for {RECORD_SECONDS} s",
        child.id()
    );
    let recorded = util::run(
        Command::new(&timerscope)
            .args(["record", "--pid", &child.id().to_string()])
            .args(["--duration", &format!("{RECORD_SECONDS}s"), "--output"])
            .arg(&profile),
    );
    let _ = child.kill();
    let _ = child.wait();
    recorded?;

    println!("\ndemo: what timerscope classify makes of it:");
    let mut classify = Command::new(&timerscope);
    classify.arg("classify").arg(&profile);
    util::run(&mut classify)?;

    let profile = profile.display();
    let ready = started.elapsed();
    println!("\ndemo: the profile, as `go tool pprof` reads it (live timers by cumulative count):");
    util::run(
        Command::new(go_binary(go))
            .args([
                "tool",
                "pprof",
                "-top",
                "-cum",
                "-nodecount=12",
                "-sample_index=timers_live",
            ])
            .arg(profile.to_string())
            .env("GOTOOLCHAIN", "local"),
    )?;
    println!(
        "\ndemo: explore it yourself:\n  \
         go tool pprof -http=localhost:8080 {profile}\n  \
         go tool pprof -traces -sample_index=timers_live {profile}\n  \
         go tool pprof -top -sample_index=timers_created {profile}"
    );
    println!(
        "demo: set up, built, recorded and classified in {:.1}s",
        ready.as_secs_f64()
    );
    Ok(())
}
