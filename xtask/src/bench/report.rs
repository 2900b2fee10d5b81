//! The results: one section per benchmark, printed as a Markdown table, written as JSON, and
//! put into BENCHMARKS.md.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::util;

/// Where `cargo xtask bench` writes in BENCHMARKS.md: everything between these lines.
const RESULTS_BEGIN: &str = "<!-- bench-results:begin (written by cargo xtask bench) -->";
const RESULTS_END: &str = "<!-- bench-results:end -->";

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
            let _ = writeln!(md, "### {}\n", section.title);
            md.push_str("| Measured | Median | Range | Peak memory | Comparison |\n");
            md.push_str("|---|---:|---:|---:|---|\n");
            for row in &section.rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    row.what, row.median, row.range, row.peak_memory, row.comparison
                );
            }
            md.push('\n');
            for check in &section.checks {
                let _ = writeln!(
                    md,
                    "- Target {}: {} — **{}**",
                    check.target,
                    check.measured,
                    if check.met { "met" } else { "not met" }
                );
            }
            for note in &section.notes {
                let _ = writeln!(md, "- {note}");
            }
            if !section.checks.is_empty() || !section.notes.is_empty() {
                md.push('\n');
            }
        }
        md
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("bench: encoding results")?;
        fs::write(path, json + "\n").with_context(|| format!("bench: writing {}", path.display()))
    }
}

/// Replaces the generated part of BENCHMARKS.md with `markdown`.
pub fn update_benchmarks_md(path: &Path, markdown: &str) -> Result<()> {
    let text =
        fs::read_to_string(path).with_context(|| format!("bench: reading {}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(RESULTS_BEGIN), text.find(RESULTS_END)) else {
        bail!(
            "bench: {} lacks the lines {RESULTS_BEGIN:?} and {RESULTS_END:?} that delimit the \
             results",
            path.display()
        );
    };
    let updated = format!(
        "{}{RESULTS_BEGIN}\n\n{markdown}{}",
        &text[..begin],
        &text[end..]
    );
    fs::write(path, updated).with_context(|| format!("bench: writing {}", path.display()))
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
    fn results_replace_only_the_generated_part() {
        let dir = std::env::temp_dir().join(format!("bench-md-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("BENCHMARKS.md");
        fs::write(
            &path,
            format!("# Head\n{RESULTS_BEGIN}\nold\n{RESULTS_END}\n## Tail\n"),
        )
        .unwrap();
        update_benchmarks_md(&path, "new\n").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("# Head\n{RESULTS_BEGIN}\n\nnew\n{RESULTS_END}\n## Tail\n")
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
