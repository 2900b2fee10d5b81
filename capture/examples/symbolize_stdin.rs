//! Symbolizes addresses with timerscope's symbolizer, in the output format of `addr2line -f -i`,
//! so `cargo xtask bench` can time it against binutils' and Go's addr2line on the same input.
//!
//!     symbolize_stdin BINARY < addresses
//!
//! Reads one hex address per line (`0x` optional; link addresses of a non-PIE binary) and prints,
//! for each of its frames, innermost inlined frame first, the function name on one line and
//! `file:line` on the next (`??` and `??:0` when the address is unknown).
// An example uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use capture::symbolize::Symbolizer;
use gobinary::GoBinary;

fn main() -> Result<()> {
    let binary: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: symbolize_stdin BINARY < addresses")?
        .into();
    let binary = GoBinary::open(&binary).with_context(|| format!("{}", binary.display()))?;
    let mut symbolizer = Symbolizer::new(std::sync::Arc::new(binary), 0);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let hex = text.strip_prefix("0x").unwrap_or(text);
        let address =
            u64::from_str_radix(hex, 16).with_context(|| format!("not a hex address: {text:?}"))?;
        let frames = symbolizer.frames(address);
        if frames.is_empty() {
            writeln!(out, "??\n??:0")?;
        }
        for frame in frames {
            let file = if frame.file.is_empty() {
                "??"
            } else {
                &frame.file
            };
            writeln!(out, "{}\n{file}:{}", frame.function, frame.line)?;
        }
    }
    out.flush()?;
    Ok(())
}
