use std::process::ExitCode;

use clap::Parser as _;
use probe_user::exit;

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
            eprintln!("timerscope: error: {}", exit::one_line(&error));
            ExitCode::from(exit::status_of(&error))
        }
    }
}
