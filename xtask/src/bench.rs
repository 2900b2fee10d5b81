//! `cargo xtask bench`: overhead benchmarks against the bpftrace baseline.

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    println!("bench needs `timerscope record` (not yet built)");
    bail!("bench: not implemented yet")
}
