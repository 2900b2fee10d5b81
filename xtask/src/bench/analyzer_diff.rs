//! Row 4: reading and comparing two large profiles, `timerscope diff BASE NEW` against
//! `go tool pprof -diff_base=BASE -top NEW`, both showing the top 20 functions. The profiles are
//! synthetic timerscope profiles (the `synthetic_profile` example of pprof): a base, and a
//! later one where some call sites vanished, some appeared and some grew tenfold.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Bench;
use super::measure::{Spread, Usage, rotated, run_measured};
use super::report::{Row, Section, file_size, mebibytes, seconds, thousands};
use crate::util;

const TOP: &str = "20";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Tool {
    Timerscope,
    Pprof,
}

impl Tool {
    const ALL: [Tool; 2] = [Tool::Timerscope, Tool::Pprof];

    fn label(self) -> &'static str {
        match self {
            Tool::Timerscope => "`timerscope diff --top 20 BASE NEW`",
            Tool::Pprof => "`go tool pprof -diff_base=BASE -top -nodecount=20 NEW` (Go 1.25)",
        }
    }

    fn command(self, bench: &Bench, base: &Path, new: &Path) -> Command {
        match self {
            Tool::Timerscope => {
                let mut cmd = Command::new(&bench.tools.timerscope);
                cmd.args(["diff", "--top", TOP]).arg(base).arg(new);
                cmd
            }
            Tool::Pprof => {
                let mut cmd = Command::new(&bench.tools.go_pprof);
                cmd.arg(format!("-diff_base={}", base.display()))
                    .args(["-top", &format!("-nodecount={TOP}")])
                    .arg(new);
                cmd
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct DiffRun {
    tool: Tool,
    run: usize,
    usage: Usage,
}

pub fn run(bench: &Bench) -> Result<Section> {
    let dir = bench.out_dir.join("profiles");
    std::fs::create_dir_all(&dir)?;
    let (base, new) = (dir.join("base.pb.gz"), dir.join("new.pb.gz"));
    println!(
        "bench: writing two synthetic profiles of {} stacks",
        thousands(bench.profile_samples as u64)
    );
    util::output(
        Command::new(&bench.tools.synthetic_profile)
            .args(["--samples", &bench.profile_samples.to_string()])
            .arg(&base)
            .arg(&new),
    )
    .context("bench: writing the synthetic profiles")?;

    let mut runs = Vec::new();
    for run in 0..bench.slow_runs {
        for tool in rotated(&Tool::ALL, run) {
            let (usage, _) = run_measured(&mut tool.command(bench, &base, &new), None)
                .with_context(|| format!("bench: diffing with {tool:?}"))?;
            println!(
                "bench: analyzer run {}/{}: {tool:?} {}",
                run + 1,
                bench.slow_runs,
                seconds(usage.seconds)
            );
            runs.push(DiffRun { tool, run, usage });
        }
    }
    let spread = |tool: Tool, of: fn(&DiffRun) -> f64| {
        let values: Vec<f64> = runs.iter().filter(|r| r.tool == tool).map(of).collect();
        Spread::of(&values)
    };
    let timerscope_time = spread(Tool::Timerscope, |r| r.usage.seconds);
    let timerscope_rss = spread(Tool::Timerscope, |r| r.usage.max_rss_kib as f64);
    let rows = Tool::ALL
        .iter()
        .map(|&tool| {
            let time = spread(tool, |r| r.usage.seconds);
            let rss = spread(tool, |r| r.usage.max_rss_kib as f64);
            Row {
                what: tool.label().into(),
                median: seconds(time.median),
                range: format!("{} – {}", seconds(time.min), seconds(time.max)),
                peak_memory: mebibytes(rss.median as u64),
                comparison: if tool == Tool::Timerscope {
                    String::new()
                } else {
                    format!(
                        "{:.1}x timerscope's time, {:.1}x its memory",
                        time.median / timerscope_time.median,
                        rss.median / timerscope_rss.median
                    )
                },
            }
        })
        .collect();
    Ok(Section {
        title: format!(
            "4. Analyzer: diff of two profiles ({} and {} gzipped, {} stacks)",
            file_size(&base),
            file_size(&new),
            thousands(bench.profile_samples as u64)
        ),
        rows,
        checks: Vec::new(),
        notes: vec![
            "Wall time and peak RSS (VmHWM) of the whole process: reading, decoding, comparing \
             and printing."
                .into(),
        ],
        data: serde_json::json!({
            "profile_samples": bench.profile_samples,
            "base": base,
            "new": new,
            "runs": runs,
        }),
    })
}
