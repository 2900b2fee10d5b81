use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = probe_user::cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(probe_user::cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            // One line: the outermost context first, then each cause.
            eprintln!("timerscope: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
