//! `cargo xtask <command>`: the project's automation. See README.md for usage.

mod bench;
mod demo;
mod fixtures;
mod fuzz;
mod man;
mod setup;
mod soak;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "timerscope project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the project needs (idempotent; into the cache or system locations).
    Setup,
    /// Build the Go fixture programs with every Go version, in every variant (cached).
    Fixtures(fixtures::Args),
    /// setup, fixtures, cargo fmt --check, cargo clippy -D warnings, cargo test.
    Test,
    /// The end-to-end demo, installing only what it needs (rust-src, bpf-linker, one Go).
    Demo,
    /// Man pages generated from timerscope's command line (default: target/man/man1).
    Man(man::Args),
    /// setup, fixtures, then the benchmarks (needs root; see BENCHMARKS.md).
    Bench(bench::Args),
    /// setup, the soak fixture, then the target-safety soak (default 10 minutes; not in `test`).
    Soak(soak::Args),
    /// setup, cargo-fuzz, then every fuzz target for --time seconds from fuzz/seeds (not in `test`).
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Fixtures(args) => fixtures::run(&args).map(|_| ()),
        Command::Test => test::run(),
        Command::Demo => demo::run(),
        Command::Man(args) => man::run(&args),
        Command::Bench(args) => setup::run()
            .and_then(|()| fixtures::run(&fixtures::Args::default()))
            .and_then(|_| bench::run(&args)),
        Command::Soak(args) => soak::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
