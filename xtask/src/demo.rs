//! `cargo xtask demo`: the end-to-end demo (needs `timerscope record`).

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    println!("demo needs `timerscope record` (not yet built)");
    bail!("demo: not implemented yet")
}
