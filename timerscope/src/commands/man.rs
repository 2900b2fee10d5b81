//! `timerscope man --dir DIR` (hidden; `cargo xtask man` runs it): man pages, generated from the
//! clap definitions: timerscope.1 and one timerscope-SUBCOMMAND.1 per subcommand.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
}

pub fn run(args: ManArgs) -> anyhow::Result<u8> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    clap_mangen::generate_to(crate::cli::Cli::command(), &args.dir)
        .with_context(|| format!("writing man pages to {}", args.dir.display()))?;
    println!("{}", args.dir.display());
    Ok(crate::exit::SUCCESS)
}
