//! `cargo xtask bench`: timerscope against the alternatives, on this machine, in one run.
//! Each benchmark runs the commands it compares several times, interleaved run by
//! run, and reports medians and ratios: as a Markdown table on stdout, as JSON in
//! `target/bench/results.json`, and (full runs only) in BENCHMARKS.md between its
//! `bench-results` markers. Needs root (eBPF), bpftrace and binutils. Not part of
//! `cargo xtask test`.

mod analyzer_diff;
mod c_heap;
mod go_programs;
mod goroutine_probes;
mod hooks;
mod measure;
mod plot;
mod probe_cost;
mod report;
mod servers;
mod snapshots;
mod startup;
mod symbolization;
mod uprobe_floor;
mod watch_mode;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use timerscope_tests::{go_binary, reference_go, workspace_root};

use crate::util;
use go_programs::{Dwarf, LARGE_PACKAGES};
use report::{CpuAccount, Machine, Results};

#[derive(clap::Args)]
pub struct Args {
    /// Measured runs of each command; medians are reported [default: 5, or 2 with --quick].
    /// The symbolization, analyzer and watch-mode rows run at most 3 times (they take longest).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub runs: Option<u16>,
    /// A smoke run: 2 runs, 1 s of churn, 20,000 addresses, small profiles. Leaves
    /// BENCHMARKS.md alone (as do --only and --no-build).
    #[arg(long)]
    pub quick: bool,
    /// Run only this benchmark; repeatable. BENCHMARKS.md is updated only when all run.
    #[arg(long = "only", value_enum)]
    pub only: Vec<Benchmark>,
    /// Use the release builds already in the target directory (timerscope, capture's
    /// `symbolize_stdin` and pprof's `synthetic_profile` examples) instead of building them.
    #[arg(long)]
    pub no_build: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Benchmark {
    /// Rows 1 and 2: probe cost against bpftrace, and event fidelity, on the churn fixture.
    ProbeCost,
    /// Row 3: symbolizing addresses against binutils' and Go's addr2line.
    Symbolize,
    /// Row 4: diffing two large profiles against `go tool pprof -diff_base`.
    Analyzer,
    /// Row 5: agent CPU and memory of `timerscope watch` at 10,000 timer ops/s, against bpftrace.
    Watch,
    /// Row 6: time to attach to a running large binary, against bpftrace.
    Startup,
    /// Row 7: requests/s of Go HTTP servers and caddy under wrk, unprobed, under watch, record
    /// and bpftrace.
    Servers,
    /// Row 8: the C heap probes' cost per malloc+free pair, against bpftrace memleak-style.
    CHeap,
    /// Row 9: the goroutine probes' cost per goroutine create+exit.
    Goroutines,
    /// Row 10: reading 100,000 pending timers from memory, and a server's requests/s while its
    /// timers are read once a second.
    Snapshot,
    /// Row 11: reading 100,000 goroutines from memory (library and `timerscope goroutines`).
    GoroutineSnapshot,
    /// How cost grows: probe cost per timer event against stack depth (8, 32, 128 frames).
    ProbeDepth,
    /// How cost grows: the agent's CPU and memory in `watch` against pending timers (1k,
    /// 100k, 1M) and watched processes (1, 10, 50).
    WatchLoad,
    /// How cost grows: symbolization against binary size (14.5, about 55 and 102 MB).
    SymbolizeSize,
    /// How cost grows: `timerscope diff` against profile size (25k, 250k, 1M stacks).
    DiffSize,
}

/// Settings and tools shared by the benchmarks.
pub struct Bench {
    pub runs: usize,
    /// Runs of the slow rows: symbolization, analyzer, watch mode.
    pub slow_runs: usize,
    /// How long the watch-mode row measures CPU in each run.
    pub watch_window: Duration,
    /// How long each churn run lasts.
    pub churn: Duration,
    /// Addresses to symbolize.
    pub addresses: usize,
    /// Stacks in each synthetic profile of the analyzer row.
    pub profile_samples: usize,
    /// How long each measured window of the watch-load row lasts.
    pub growth_window: Duration,
    /// `target/bench`: inputs, profiles, results.
    pub out_dir: PathBuf,
    pub tools: Tools,
}

/// The programs compared, besides `bpftrace` and binutils' `addr2line` from PATH.
pub struct Tools {
    /// The release build of timerscope.
    pub timerscope: PathBuf,
    /// The bench examples (release).
    pub symbolize_stdin: PathBuf,
    pub synthetic_profile: PathBuf,
    /// The tool binaries of the reference Go toolchain, run directly (not through `go tool`).
    pub go_addr2line: PathBuf,
    pub go_pprof: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench: needs root (it attaches eBPF probes)");
    }
    let cpu_at_start = CpuAccount::now();
    let mut machine = Machine::describe(report::load_average());
    let root = workspace_root();
    let target = target_dir();
    let out_dir = target.join("bench");
    fs::create_dir_all(&out_dir)
        .with_context(|| format!("bench: creating {}", out_dir.display()))?;
    for (tool, package) in [("bpftrace", "bpftrace"), ("addr2line", "binutils")] {
        util::stdout_if_ok(Command::new(tool).arg("--version")).with_context(|| {
            format!("bench: `{tool} --version` fails; install it: apt-get install {package}")
        })?;
    }

    if !args.no_build {
        println!("bench: building timerscope and the bench examples (release)");
        util::run(Command::new("cargo").current_dir(&root).args([
            "build",
            "-p",
            "timerscope",
            "-p",
            "capture",
            "-p",
            "pprof",
            "--release",
            "--bin",
            "timerscope",
            "--example",
            "symbolize_stdin",
            "--example",
            "synthetic_profile",
        ]))
        .context("bench: building timerscope")?;
    }
    let release = target.join("release");
    let go = go_binary(reference_go());
    let tools = Tools {
        timerscope: release.join("timerscope"),
        symbolize_stdin: release.join("examples/symbolize_stdin"),
        synthetic_profile: release.join("examples/synthetic_profile"),
        go_addr2line: go_tool(&go, "addr2line")?,
        go_pprof: go_tool(&go, "pprof")?,
    };
    for tool in [
        &tools.timerscope,
        &tools.symbolize_stdin,
        &tools.synthetic_profile,
    ] {
        if !tool.is_file() {
            bail!(
                "bench: {} is missing; build it or drop --no-build",
                tool.display()
            );
        }
    }
    let runs = args
        .runs
        .map_or(if args.quick { 2 } else { 5 }, usize::from);
    let bench = Bench {
        runs,
        slow_runs: runs.min(3),
        watch_window: Duration::from_secs(if args.quick { 3 } else { 60 }),
        churn: Duration::from_secs(if args.quick { 1 } else { 3 }),
        addresses: if args.quick { 20_000 } else { 100_000 },
        profile_samples: if args.quick { 20_000 } else { 250_000 },
        growth_window: Duration::from_secs(if args.quick { 3 } else { 10 }),
        out_dir,
        tools,
    };

    let selected = |b: Benchmark| args.only.is_empty() || args.only.contains(&b);
    let mut sections = Vec::new();
    if selected(Benchmark::ProbeCost) {
        sections.extend(probe_cost::run(&bench)?);
    }
    if selected(Benchmark::Symbolize) {
        for dwarf in [Dwarf::V5, Dwarf::V4] {
            let binary = go_programs::large(dwarf, LARGE_PACKAGES)?;
            sections.push(symbolization::run(&bench, &binary, dwarf)?);
        }
    }
    if selected(Benchmark::Analyzer) {
        sections.push(analyzer_diff::run(&bench)?);
    }
    if selected(Benchmark::Watch) {
        sections.push(watch_mode::run(&bench, &go_programs::paced()?)?);
    }
    if selected(Benchmark::Startup) {
        sections.push(startup::run(
            &bench,
            &go_programs::large(Dwarf::V5, LARGE_PACKAGES)?,
        )?);
    }
    if selected(Benchmark::Servers) {
        sections.push(servers::run(&bench)?);
    }
    if selected(Benchmark::CHeap) {
        sections.push(c_heap::run(&bench)?);
    }
    if selected(Benchmark::Goroutines) {
        sections.push(goroutine_probes::run(&bench)?);
    }
    if selected(Benchmark::Snapshot) {
        sections.push(snapshots::timers(&bench)?);
    }
    if selected(Benchmark::GoroutineSnapshot) {
        sections.push(snapshots::goroutines(&bench)?);
    }
    let mut growth = Vec::new();
    if selected(Benchmark::ProbeDepth) {
        growth.push(probe_cost::depth(&bench)?);
    }
    if selected(Benchmark::WatchLoad) {
        growth.extend(watch_mode::growth(&bench, &go_programs::paced()?)?);
    }
    if selected(Benchmark::SymbolizeSize) {
        let mut binaries = Vec::new();
        for packages in SYMBOLIZE_SIZE_PACKAGES {
            binaries.push((packages, go_programs::large(Dwarf::V5, packages)?));
        }
        growth.push(symbolization::growth(&bench, &binaries)?);
    }
    if selected(Benchmark::DiffSize) {
        growth.push(analyzer_diff::growth(&bench)?);
    }

    machine.load_at_end = report::load_average();
    machine.others_cpu_percent = CpuAccount::now().others_percent_since(&cpu_at_start);
    let results = Results {
        started: util::stdout_if_ok(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .unwrap_or_default()
            .trim()
            .to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        runs,
        slow_runs: bench.slow_runs,
        quick: args.quick,
        machine,
        sections,
        growth,
    };
    let markdown = results.markdown();
    let growth_markdown = results.growth_markdown();
    println!("\n{markdown}\n{growth_markdown}");
    let plots = results.plot(&bench.out_dir)?;
    let json = bench.out_dir.join("results.json");
    results.write_json(&json)?;
    println!("bench: wrote {}", json.display());
    if !args.quick && args.only.is_empty() && !args.no_build {
        let doc = root.join("BENCHMARKS.md");
        report::update_benchmarks_md(&doc, &markdown, &growth_markdown)?;
        let plot_dir = root.join(report::PLOT_DIR);
        fs::create_dir_all(&plot_dir)
            .with_context(|| format!("bench: creating {}", plot_dir.display()))?;
        for plot in &plots {
            let to = plot_dir.join(plot.file_name().unwrap());
            fs::copy(plot, &to).with_context(|| format!("bench: writing {}", to.display()))?;
        }
        println!(
            "bench: updated {} and {}",
            doc.display(),
            plot_dir.display()
        );
    }
    println!("bench: done in {:.1} min", results.seconds / 60.0);
    Ok(())
}

/// Generated packages of the symbolization-against-size row's binaries: 14.5, about 55 and
/// 102 MB (the standard-library part alone is 14.5 MB).
const SYMBOLIZE_SIZE_PACKAGES: [usize; 3] = [0, 5, LARGE_PACKAGES];

/// Cargo's target directory (`CARGO_TARGET_DIR` or `target/` in the workspace).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => workspace_root().join(t),
        _ => workspace_root().join("target"),
    }
}

/// The binary `go tool NAME` runs (Go 1.24+ builds some tools on first use and caches them).
fn go_tool(go: &Path, name: &str) -> Result<PathBuf> {
    let out = util::output(
        Command::new(go)
            .args(["tool", "-n", name])
            .env("GOTOOLCHAIN", "local"),
    )
    .with_context(|| format!("bench: finding `go tool {name}`"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
