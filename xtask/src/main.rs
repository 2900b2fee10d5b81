//! `cargo xtask <command>`: the project's automation. See README.md for usage.

mod bench;
mod demo;
mod fixtures;
mod setup;
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
    /// setup, fixtures, then the end-to-end demo.
    Demo,
    /// setup, fixtures, then the benchmarks.
    Bench,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Fixtures(args) => fixtures::run(&args).map(|_| ()),
        Command::Test => test::run(),
        Command::Demo => setup::run()
            .and_then(|()| fixtures::run(&fixtures::Args::default()))
            .and_then(|_| demo::run()),
        Command::Bench => setup::run()
            .and_then(|()| fixtures::run(&fixtures::Args::default()))
            .and_then(|_| bench::run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
