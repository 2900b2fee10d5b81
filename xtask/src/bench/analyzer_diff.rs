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
use super::report::{Growth, Row, Section, file_size, linearity, mebibytes, seconds, thousands};
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

/// Writes a base and a new synthetic profile of `samples` stacks into `dir`.
fn write_profiles(
    bench: &Bench,
    dir: &Path,
    samples: usize,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (base, new) = (
        dir.join(format!("base-{samples}.pb.gz")),
        dir.join(format!("new-{samples}.pb.gz")),
    );
    println!(
        "bench: writing two synthetic profiles of {} stacks",
        thousands(samples as u64)
    );
    util::output(
        Command::new(&bench.tools.synthetic_profile)
            .args(["--samples", &samples.to_string()])
            .arg(&base)
            .arg(&new),
    )
    .context("bench: writing the synthetic profiles")?;
    Ok((base, new))
}

/// How `timerscope diff`'s time and memory grow with the profiles' size: a tenth, the same and
/// four times the stacks of the comparison with `go tool pprof` (timerscope only: pprof would
/// take minutes at the largest size).
pub fn growth(bench: &Bench) -> Result<Growth> {
    let dir = bench.out_dir.join("profiles");
    std::fs::create_dir_all(&dir)?;
    let sizes = [
        bench.profile_samples / 10,
        bench.profile_samples,
        bench.profile_samples * 4,
    ];
    let mut data = Vec::new();
    let mut rows = Vec::new();
    let mut first: Option<(f64, f64)> = None;
    let (mut time_points, mut memory_points) = (Vec::new(), Vec::new());
    for samples in sizes {
        let (base, new) = write_profiles(bench, &dir, samples)?;
        let mut usages = Vec::new();
        for _ in 0..bench.slow_runs {
            let (usage, _) = run_measured(&mut Tool::Timerscope.command(bench, &base, &new), None)
                .context("bench: diffing with timerscope")?;
            usages.push(usage);
        }
        let time = Spread::of(&usages.iter().map(|u| u.seconds).collect::<Vec<_>>());
        let rss = Spread::of(
            &usages
                .iter()
                .map(|u| u.max_rss_kib as f64)
                .collect::<Vec<_>>(),
        );
        let (time0, rss0) = *first.get_or_insert((time.median / samples as f64, rss.median));
        rows.push(Row {
            what: format!(
                "{} stacks ({} and {} gzipped)",
                thousands(samples as u64),
                file_size(&base),
                file_size(&new)
            ),
            median: seconds(time.median),
            range: format!("{} – {}", seconds(time.min), seconds(time.max)),
            peak_memory: mebibytes(rss.median as u64),
            comparison: format!(
                "{:.2}x the time per stack of the smallest, {:.1}x its memory",
                time.median / samples as f64 / time0,
                rss.median / rss0
            ),
        });
        time_points.push((samples as f64, time.median));
        memory_points.push((samples as f64, rss.median));
        data.push(serde_json::json!({ "samples": samples, "usages": usages }));
        for path in [&base, &new] {
            std::fs::remove_file(path).ok();
        }
    }
    Ok(Growth {
        section: Section {
            title: "`timerscope diff` against profile size".into(),
            rows,
            checks: Vec::new(),
            notes: vec![
                "Two synthetic profiles as in row 4, `timerscope diff --top 20` alone. One \
                 profile is read at a time and only per-function sums are kept, so memory \
                 follows the larger decompressed profile (the protobuf bytes, walked in place) \
                 plus its locations; time follows the stacks' total depth."
                    .into(),
                linearity(&time_points, ("stack", "stacks"), "Time"),
                linearity(&memory_points, ("stack", "stacks"), "Peak memory"),
            ],
            data: serde_json::json!({ "sizes": data }),
        },
        plot: None,
    })
}

pub fn run(bench: &Bench) -> Result<Section> {
    let dir = bench.out_dir.join("profiles");
    std::fs::create_dir_all(&dir)?;
    let (base, new) = write_profiles(bench, &dir, bench.profile_samples)?;

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
