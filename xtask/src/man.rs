//! `cargo xtask man [--dir DIR]`: timerscope's man pages, generated from its clap definitions
//! (by the hidden `timerscope man`), into target/man/man1 unless told otherwise.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use timerscope_tests::workspace_root;

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the pages [default: target/man/man1].
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let root = workspace_root();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| root.join("target/man/man1"));
    println!("man: building timerscope");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "-p", "timerscope"]),
    )?;
    util::run(
        Command::new(root.join("target/debug/timerscope"))
            .arg("man")
            .arg("--dir")
            .arg(&dir),
    )?;
    println!(
        "man: read them with `man -l {}/timerscope.1`, or MANPATH={}",
        dir.display(),
        dir.parent().unwrap_or(&dir).display()
    );
    Ok(())
}
