// The package's dependencies are its library's; this thin entry point names only a few.
#![allow(unused_crate_dependencies)]

use std::process::ExitCode;

use clap::Parser as _;
use timerscope::{cli::Cli, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    timerscope::logging::init(cli.verbose, cli.quiet);
    if let Err(error) = exit::raise_open_files_limit() {
        eprintln!("timerscope: error: {error}");
        return ExitCode::from(exit::RESOURCE_LIMIT);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("timerscope: error: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    ExitCode::from(runtime.block_on(cli.command.run()))
}
