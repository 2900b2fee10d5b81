//! The results: one section per benchmark, printed as a Markdown table, written as JSON, and
//! put into BENCHMARKS.md.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::plot::Plot;
use crate::util;

/// Where `cargo xtask bench` writes in BENCHMARKS.md: everything between these lines.
const RESULTS_BEGIN: &str = "<!-- bench-results:begin (written by cargo xtask bench) -->";
const RESULTS_END: &str = "<!-- bench-results:end -->";
/// The same for the growth tables, in the section "How cost grows".
const GROWTH_BEGIN: &str = "<!-- bench-growth:begin (written by cargo xtask bench) -->";
const GROWTH_END: &str = "<!-- bench-growth:end -->";
/// Where a full run writes the growth plots, relative to the workspace (next to BENCHMARKS.md).
pub const PLOT_DIR: &str = "docs/bench";

/// One benchmark's results: table rows, checks against targets, notes, and its raw numbers.
#[derive(Debug, Serialize)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    /// Every run's numbers, for results.json.
    pub data: serde_json::Value,
}

/// A table row, formatted.
#[derive(Debug, Serialize)]
pub struct Row {
    pub what: String,
    pub median: String,
    /// Minimum to maximum over the runs.
    pub range: String,
    pub peak_memory: String,
    /// Ratios and derived numbers against the row's baseline.
    pub comparison: String,
}

/// A target, and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The machine and its state during the run.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub os: String,
    pub load_at_start: String,
    pub load_at_end: String,
    /// CPU time used by processes other than this bench and its children during the run, in
    /// percent of all cores' time.
    pub others_cpu_percent: f64,
    pub timerscope_commit: String,
    pub tools: Vec<String>,
}

impl Machine {
    pub fn describe(load_at_start: String) -> Machine {
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|l| l.trim_matches('"').to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let first_line = |cmd: &mut Command| {
            util::stdout_if_ok(cmd)
                .and_then(|s| s.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "unavailable".to_owned())
        };
        let root = timerscope_tests::workspace_root();
        let commit = first_line(Command::new("git").current_dir(&root).args([
            "rev-parse",
            "--short",
            "HEAD",
        ]));
        let dirty = util::stdout_if_ok(Command::new("git").current_dir(&root).args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_some_and(|s| !s.trim().is_empty());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory: format!("{:.1} GiB", memory_kib as f64 / (1024.0 * 1024.0)),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os,
            load_at_start,
            load_at_end: String::new(),
            others_cpu_percent: 0.0,
            timerscope_commit: if dirty {
                format!("{commit} with uncommitted changes")
            } else {
                commit
            },
            tools: vec![
                first_line(Command::new("bpftrace").arg("--version")),
                first_line(Command::new("addr2line").arg("--version")),
            ],
        }
    }
}

/// The whole machine's CPU time so far and this process's (with its reaped children), to tell
/// how busy other processes kept the machine during the run.
#[derive(Debug, Clone, Copy)]
pub struct CpuAccount {
    /// From the `cpu` line of /proc/stat, in seconds summed over the cores.
    busy: f64,
    total: f64,
    ours: f64,
}

impl CpuAccount {
    pub fn now() -> CpuAccount {
        // SAFETY: sysconf has no preconditions.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        // user nice system idle iowait irq softirq steal
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .unwrap_or_default()
            .split_whitespace()
            .take(8)
            .filter_map(|t| t.parse().ok())
            .collect();
        let sum = |indices: &[usize]| -> f64 {
            indices.iter().filter_map(|&i| ticks.get(i)).sum::<f64>() / ticks_per_second
        };
        let rusage_seconds = |who| {
            // SAFETY: a zeroed rusage is a valid out-parameter.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(who, &mut usage) };
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            seconds(usage.ru_utime) + seconds(usage.ru_stime)
        };
        CpuAccount {
            busy: sum(&[0, 1, 2, 5, 6, 7]),
            total: sum(&[0, 1, 2, 3, 4, 5, 6, 7]),
            ours: rusage_seconds(libc::RUSAGE_SELF) + rusage_seconds(libc::RUSAGE_CHILDREN),
        }
    }

    /// Percent of all cores' time that other processes used since `start`.
    pub fn others_percent_since(&self, start: &CpuAccount) -> f64 {
        let total = self.total - start.total;
        if total <= 0.0 {
            return 0.0;
        }
        let others = (self.busy - start.busy) - (self.ours - start.ours);
        (100.0 * others / total).max(0.0)
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A growth table, and the plot drawn from it, if it is one of the plotted series.
#[derive(Debug, Serialize)]
pub struct Growth {
    pub section: Section,
    pub plot: Option<Plot>,
}

/// Everything one `cargo xtask bench` run found.
#[derive(Debug, Serialize)]
pub struct Results {
    pub started: String,
    pub seconds: f64,
    pub runs: usize,
    /// Runs of the symbolization, analyzer and watch-mode rows.
    pub slow_runs: usize,
    pub quick: bool,
    pub machine: Machine,
    pub sections: Vec<Section>,
    /// The tables of "How cost grows".
    pub growth: Vec<Growth>,
}

impl Results {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Run {} ({:.1} min, {} runs per command, {} in rows 3 to 5{}), timerscope {}.\n",
            self.started,
            self.seconds / 60.0,
            self.runs,
            self.slow_runs,
            if self.quick { ", --quick" } else { "" },
            m.timerscope_commit
        );
        let _ = writeln!(
            md,
            "Machine: {}, {} cores, {} RAM, {}, Linux {}. Load average (1, 5, 15 min) {} at the \
             start, {} at the end; other processes used {:.0}% of the cores' time during the \
             run. Tools: {}.\n",
            m.cpu,
            m.cores,
            m.memory,
            m.os,
            m.kernel,
            m.load_at_start,
            m.load_at_end,
            m.others_cpu_percent,
            m.tools.join("; ")
        );
        for section in &self.sections {
            section.markdown(&mut md);
        }
        md
    }

    /// The growth tables, each with a link to its plot.
    pub fn growth_markdown(&self) -> String {
        let mut md = String::new();
        if self.growth.is_empty() {
            return md;
        }
        let _ = writeln!(
            md,
            "From the run of {}{} (timerscope {}; machine and load as under [Latest \
             results](#latest-results)).\n",
            self.started,
            if self.quick { ", --quick" } else { "" },
            self.machine.timerscope_commit
        );
        for growth in &self.growth {
            growth.section.markdown(&mut md);
            if let Some(plot) = &growth.plot {
                let _ = writeln!(md, "![{}]({PLOT_DIR}/{})\n", plot.title, plot.file);
            }
        }
        md
    }

    /// Draws the growth plots into `dir`; returns their paths.
    pub fn plot(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for plot in self.growth.iter().filter_map(|g| g.plot.as_ref()) {
            let path = dir.join(&plot.file);
            plot.draw(&path)?;
            println!("bench: drew {}", path.display());
            paths.push(path);
        }
        Ok(paths)
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("bench: encoding results")?;
        fs::write(path, json + "\n").with_context(|| format!("bench: writing {}", path.display()))
    }
}

impl Section {
    fn markdown(&self, md: &mut String) {
        let _ = writeln!(md, "### {}\n", self.title);
        md.push_str("| Measured | Median | Range | Peak memory | Comparison |\n");
        md.push_str("|---|---:|---:|---:|---|\n");
        for row in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                row.what, row.median, row.range, row.peak_memory, row.comparison
            );
        }
        md.push('\n');
        for check in &self.checks {
            let _ = writeln!(
                md,
                "- Target {}: {} — **{}**",
                check.target,
                check.measured,
                if check.met { "met" } else { "not met" }
            );
        }
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !self.checks.is_empty() || !self.notes.is_empty() {
            md.push('\n');
        }
    }
}

/// Replaces the generated parts of BENCHMARKS.md: the results with `markdown`, the growth
/// tables with `growth`.
pub fn update_benchmarks_md(path: &Path, markdown: &str, growth: &str) -> Result<()> {
    let mut text =
        fs::read_to_string(path).with_context(|| format!("bench: reading {}", path.display()))?;
    for (begin_line, end_line, generated) in [
        (RESULTS_BEGIN, RESULTS_END, markdown),
        (GROWTH_BEGIN, GROWTH_END, growth),
    ] {
        let (Some(begin), Some(end)) = (text.find(begin_line), text.find(end_line)) else {
            bail!(
                "bench: {} lacks the lines {begin_line:?} and {end_line:?} that delimit what \
                 the bench writes",
                path.display()
            );
        };
        text = format!(
            "{}{begin_line}\n\n{generated}{}",
            &text[..begin],
            &text[end..]
        );
    }
    fs::write(path, text).with_context(|| format!("bench: writing {}", path.display()))
}

/// How the per-unit cost changes along a growth series: `(size, cost)` points with sizes
/// increasing. Returns one sentence saying from which size on the cost per unit grows by more
/// than a quarter over the previous step (not linear), or that it stays within that (linear or
/// better), with the per-unit ratios to the first point.
pub fn linearity(points: &[(f64, f64)], (unit, units): (&str, &str), cost: &str) -> String {
    let per_unit: Vec<f64> = points.iter().map(|&(size, c)| c / size).collect();
    let ratios: Vec<String> = per_unit
        .iter()
        .map(|p| format!("{:.2}x", p / per_unit[0]))
        .collect();
    let step = per_unit
        .windows(2)
        .position(|w| w[1] > w[0] * 1.25)
        .map(|i| i + 1);
    let ratios = ratios.join(", ");
    match step {
        Some(i) => format!(
            "{cost} per {unit}, against the first size: {ratios}; it stops being linear from \
             {} {units} on.",
            thousands(points[i].0 as u64)
        ),
        None => format!(
            "{cost} per {unit}, against the first size: {ratios}; linear or better over this \
             range."
        ),
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Operations per second, e.g. `14.6 M/s` or `362 k/s`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else {
        format!("{:.0} k/s", per_second / 1e3)
    }
}

/// Seconds with a precision that suits their size.
pub fn seconds(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

/// A file's size in MB (10^6 bytes).
pub fn file_size(path: &Path) -> String {
    let bytes = fs::metadata(path).map_or(0, |m| m.len());
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn mebibytes(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(14_595_185.0), "14.60 M/s");
        assert_eq!(rate(362_541.7), "363 k/s");
        assert_eq!(seconds(0.2345), "234 ms");
        assert_eq!(seconds(21.32), "21.3 s");
    }

    #[test]
    fn linearity_names_the_size_where_the_cost_per_unit_grows() {
        let linear = [(1.0, 2.0), (10.0, 20.0), (50.0, 90.0)];
        assert!(
            linearity(&linear, ("frame", "frames"), "Time")
                .ends_with("linear or better over this range.")
        );
        let bent = [(1_000.0, 1.0), (100_000.0, 100.0), (1_000_000.0, 2_000.0)];
        let sentence = linearity(&bent, ("timer", "timers"), "CPU");
        assert_eq!(
            sentence,
            "CPU per timer, against the first size: 1.00x, 1.00x, 2.00x; it stops being linear \
             from 1,000,000 timers on."
        );
    }

    #[test]
    fn results_replace_only_the_generated_parts() {
        let dir = std::env::temp_dir().join(format!("bench-md-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("BENCHMARKS.md");
        fs::write(
            &path,
            format!(
                "# Head\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\n## Growth\n{GROWTH_BEGIN}\nold\n\
                 {GROWTH_END}\n## Tail\n"
            ),
        )
        .unwrap();
        update_benchmarks_md(&path, "new\n", "grown\n").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!(
                "# Head\n{RESULTS_BEGIN}\n\nnew\n{RESULTS_END}\n## Growth\n{GROWTH_BEGIN}\n\n\
                 grown\n{GROWTH_END}\n## Tail\n"
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
