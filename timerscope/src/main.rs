// The package's dependencies are its library's; this thin entry point names only a few.
#![allow(unused_crate_dependencies)]

use std::process::ExitCode;

use clap::Parser as _;
use timerscope::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    timerscope::logging::init(cli.verbose, cli.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    ExitCode::from(runtime.block_on(cli.command.run()))
}
