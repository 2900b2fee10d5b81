//! Row 3: symbolizing 100,000 addresses of the large Go binary with timerscope's symbolizer
//! (`capture::symbolize::Symbolizer`, through the `symbolize_stdin` example, which prints what
//! `addr2line -f -i` prints) against binutils' `addr2line -f -i -e` and `go tool addr2line`, all
//! reading the same addresses on stdin. Each tool's time includes loading the binary's tables.
//!
//! The addresses are random instruction addresses inside the binary's functions (a random
//! function, a random offset), the same in every run.
//!
//! [`growth`] runs timerscope's symbolizer and `go tool addr2line` on binaries of 14.5, about 55
//! and 102 MB (the large binary with fewer generated packages).

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use serde::Serialize;

use super::Bench;
use super::go_programs::Dwarf;
use super::measure::{Rng, Spread, Usage, rotated, run_measured};
use super::report::{Growth, Row, Section, file_size, linearity, mebibytes, seconds, thousands};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Tool {
    Timerscope,
    Binutils,
    Go,
}

impl Tool {
    const ALL: [Tool; 3] = [Tool::Timerscope, Tool::Binutils, Tool::Go];

    fn label(self) -> &'static str {
        match self {
            Tool::Timerscope => {
                "timerscope's symbolizer (Go frames from the pclntab, as `record` does)"
            }
            Tool::Binutils => "binutils `addr2line -f -i -e`",
            Tool::Go => "`go tool addr2line` (Go 1.25, pclntab)",
        }
    }

    fn command(self, bench: &Bench, binary: &Path) -> Command {
        match self {
            Tool::Timerscope => {
                let mut cmd = Command::new(&bench.tools.symbolize_stdin);
                cmd.arg(binary);
                cmd
            }
            Tool::Binutils => {
                let mut cmd = Command::new("addr2line");
                cmd.args(["-f", "-i", "-e"]).arg(binary);
                cmd
            }
            Tool::Go => {
                let mut cmd = Command::new(&bench.tools.go_addr2line);
                cmd.arg(binary);
                cmd
            }
        }
    }
}

/// What a tool's output says: every tool prints a function line and a `file:line` line per frame.
#[derive(Debug, Clone, Copy, Serialize)]
struct OutputQuality {
    frames: u64,
    /// Frames whose location has a line number.
    with_line: u64,
}

impl OutputQuality {
    fn of(output: &[u8]) -> OutputQuality {
        let text = String::from_utf8_lossy(output);
        let mut quality = OutputQuality {
            frames: 0,
            with_line: 0,
        };
        for location in text.lines().skip(1).step_by(2) {
            quality.frames += 1;
            let line = location.rsplit_once(':').map_or("", |(_, line)| line);
            if line.parse::<u64>().is_ok_and(|n| n > 0) {
                quality.with_line += 1;
            }
        }
        quality
    }
}

#[derive(Debug, Serialize)]
struct SymbolizeRun {
    tool: Tool,
    run: usize,
    usage: Usage,
    quality: OutputQuality,
}

/// Symbolizes `bench.addresses` addresses of `binary` with each of `tools`, `bench.slow_runs`
/// times, interleaved.
fn symbolize(bench: &Bench, binary: &Path, tools: &[Tool]) -> Result<Vec<SymbolizeRun>> {
    let addresses = bench.out_dir.join("addresses.txt");
    write_addresses(binary, bench.addresses, &addresses)?;
    let mut runs = Vec::new();
    for run in 0..bench.slow_runs {
        for tool in rotated(tools, run) {
            let (usage, output) = run_measured(&mut tool.command(bench, binary), Some(&addresses))
                .with_context(|| format!("bench: symbolizing with {tool:?}"))?;
            let quality = OutputQuality::of(&output);
            if quality.frames < bench.addresses as u64 {
                bail!(
                    "bench: {tool:?} printed {} frames for {} addresses",
                    quality.frames,
                    bench.addresses
                );
            }
            println!(
                "bench: symbolize {} run {}/{}: {tool:?} {}",
                file_size(binary),
                run + 1,
                bench.slow_runs,
                seconds(usage.seconds)
            );
            runs.push(SymbolizeRun {
                tool,
                run,
                usage,
                quality,
            });
        }
    }
    Ok(runs)
}

/// How symbolizing grows with the binary: `(generated packages, binary)` pairs, smallest first.
pub fn growth(bench: &Bench, binaries: &[(usize, std::path::PathBuf)]) -> Result<Growth> {
    let tools = [Tool::Timerscope, Tool::Go];
    let (mut rows, mut time_points, mut memory_points, mut data) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (packages, binary) in binaries {
        let runs = symbolize(bench, binary, &tools)?;
        let spread = |tool: Tool, of: fn(&SymbolizeRun) -> f64| {
            let values: Vec<f64> = runs.iter().filter(|r| r.tool == tool).map(of).collect();
            Spread::of(&values)
        };
        let time = spread(Tool::Timerscope, |r| r.usage.seconds);
        let rss = spread(Tool::Timerscope, |r| r.usage.max_rss_kib as f64);
        let go = spread(Tool::Go, |r| r.usage.seconds);
        let megabytes = fs::metadata(binary)
            .with_context(|| format!("bench: reading {}", binary.display()))?
            .len() as f64
            / 1e6;
        let (first_mb, first_time) = *time_points.first().unwrap_or(&(megabytes, time.median));
        rows.push(Row {
            what: format!(
                "{} binary ({packages} generated packages)",
                file_size(binary)
            ),
            median: seconds(time.median),
            range: format!("{} – {}", seconds(time.min), seconds(time.max)),
            peak_memory: mebibytes(rss.median as u64),
            comparison: format!(
                "{:.2}x the time per MB of the {first_mb:.0} MB binary; `go tool addr2line` {} \
                 ({:.2}x timerscope's time)",
                time.median / megabytes / (first_time / first_mb),
                seconds(go.median),
                go.median / time.median
            ),
        });
        time_points.push((megabytes, time.median));
        memory_points.push((megabytes, rss.median));
        data.push(serde_json::json!({ "binary": binary, "packages": packages, "runs": runs }));
    }
    Ok(Growth {
        section: Section {
            title: format!(
                "Symbolization of {} addresses against binary size",
                thousands(bench.addresses as u64)
            ),
            rows,
            checks: Vec::new(),
            notes: vec![
                format!(
                    "{} (Go 1.25, DWARF 5), with fewer generated packages; wall time and peak \
                     RSS of the whole process, as in row 3.",
                    Tool::Timerscope.label()
                ),
                linearity(&time_points, ("MB", "MB"), "Time"),
                linearity(&memory_points, ("MB", "MB"), "Peak memory"),
            ],
            data: serde_json::json!({ "addresses": bench.addresses, "binaries": data }),
        },
        plot: None,
    })
}

pub fn run(bench: &Bench, binary: &Path, dwarf: Dwarf) -> Result<Section> {
    let runs = symbolize(bench, binary, &Tool::ALL)?;
    let spread = |tool: Tool, of: fn(&SymbolizeRun) -> f64| {
        let values: Vec<f64> = runs.iter().filter(|r| r.tool == tool).map(of).collect();
        Spread::of(&values)
    };
    let timerscope = spread(Tool::Timerscope, |r| r.usage.seconds);
    let mut notes = vec![
        "Wall time of the whole process (loading debug info included), addresses on stdin, \
         output to a pipe. Frames per address above 1 are inlined frames."
            .to_owned(),
    ];
    let mut rows = Vec::new();
    for tool in Tool::ALL {
        let time = spread(tool, |r| r.usage.seconds);
        let rss = spread(tool, |r| r.usage.max_rss_kib as f64);
        let quality = runs.iter().find(|r| r.tool == tool).unwrap().quality;
        let with_line = 100.0 * quality.with_line as f64 / quality.frames as f64;
        let frames = format!(
            "{:.2} frames per address, {with_line:.1}% with a line number",
            quality.frames as f64 / bench.addresses as f64,
        );
        if with_line < 50.0 {
            notes.push(format!(
                "{} found a line number for {with_line:.1}% of the frames only: its time is \
                 for lookups that mostly fail.",
                tool.label()
            ));
        }
        rows.push(Row {
            what: tool.label().into(),
            median: seconds(time.median),
            range: format!("{} – {}", seconds(time.min), seconds(time.max)),
            peak_memory: mebibytes(rss.median as u64),
            comparison: if tool == Tool::Timerscope {
                frames
            } else {
                format!(
                    "{:.2}x timerscope's time; {frames}",
                    time.median / timerscope.median
                )
            },
        });
    }
    Ok(Section {
        title: format!(
            "3. Symbolization: {} addresses in a {} Go 1.25 binary ({})",
            thousands(bench.addresses as u64),
            file_size(binary),
            dwarf.label()
        ),
        rows,
        checks: Vec::new(),
        notes,
        data: serde_json::json!({ "binary": binary, "addresses": bench.addresses, "runs": runs }),
    })
}

/// Writes `count` random addresses inside the binary's functions, one `0x...` per line.
fn write_addresses(binary: &Path, count: usize, path: &Path) -> Result<()> {
    let data = fs::read(binary).with_context(|| format!("bench: reading {}", binary.display()))?;
    let elf = object::File::parse(&*data)
        .with_context(|| format!("bench: parsing {}", binary.display()))?;
    let text = elf
        .section_by_name(".text")
        .with_context(|| format!("bench: {} has no .text", binary.display()))?
        .index();
    let functions: Vec<(u64, u64)> = elf
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0 && s.section_index() == Some(text))
        .map(|s| (s.address(), s.size()))
        .collect();
    if functions.is_empty() {
        bail!("bench: {} has no function symbols", binary.display());
    }
    let mut rng = Rng(9);
    let mut out = String::with_capacity(count * 10);
    for _ in 0..count {
        let (start, size) = functions[rng.below(functions.len() as u64) as usize];
        out.push_str(&format!("{:#x}\n", start + rng.below(size)));
    }
    fs::File::create(path)
        .and_then(|mut f| f.write_all(out.as_bytes()))
        .with_context(|| format!("bench: writing {}", path.display()))
}
