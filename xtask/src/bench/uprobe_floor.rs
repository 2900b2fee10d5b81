//! The least any every-event uprobe capture can cost: uprobes at the addresses `record` hooks,
//! made through tracefs and only counted by `perf stat`, so no BPF program runs and no stack is
//! walked. Each hit still takes the breakpoint trap and the kernel's uprobe dispatch, which is
//! what remains when a capture's own work is made free.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::hooks::file_offsets;
use super::measure::Running;

const UPROBE_EVENTS: &str = "/sys/kernel/tracing/uprobe_events";
/// The tracefs group of the bench's events, removed whole before and after each use.
const GROUP: &str = "timerscope_bench";
const PERF_TIMEOUT: Duration = Duration::from_secs(30);

/// Count-only uprobes attached, counted by a running `perf stat`; removed on drop.
pub struct UprobeFloor {
    perf: Running,
    counts: PathBuf,
}

impl UprobeFloor {
    /// Places a uprobe at each `(function, offset)` of `binary` and starts counting them on
    /// every CPU; `counts` is where perf writes its figures.
    pub fn attach(binary: &Path, hooks: &[(String, u64)], counts: &Path) -> Result<UprobeFloor> {
        if hooks.is_empty() {
            bail!("bench: no hooks to place count-only uprobes at");
        }
        let events: String = file_offsets(binary, hooks)?
            .iter()
            .enumerate()
            .map(|(index, offset)| {
                format!("p:{GROUP}/hook{index} {}:{offset:#x}\n", binary.display())
            })
            .collect();
        remove_events()?;
        append_events(&events)?;
        // `-a`: every CPU, so threads the target starts later are counted too.
        let perf = Running::spawn(
            Command::new("perf")
                .args(["stat", "-a", "-x", ",", "-e", &format!("{GROUP}:*"), "-o"])
                .arg(counts)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("bench: perf is missing; run `cargo xtask setup` (it installs linux-perf)")?;
        Ok(UprobeFloor {
            perf,
            counts: counts.to_owned(),
        })
    }

    /// Stops counting; the hits of every uprobe, summed.
    pub fn finish(mut self) -> Result<u64> {
        self.perf.interrupt()?;
        self.perf.wait(PERF_TIMEOUT)?;
        let text = fs::read_to_string(&self.counts)
            .with_context(|| format!("bench: reading perf's {}", self.counts.display()))?;
        hits(&text).with_context(|| format!("bench: perf counted nothing:\n{text}"))
    }
}

impl Drop for UprobeFloor {
    fn drop(&mut self) {
        // perf must have let go of the events before tracefs removes them.
        let _ = self.perf.interrupt();
        let _ = self.perf.wait(PERF_TIMEOUT);
        if let Err(error) = remove_events() {
            println!("bench: {error:#}");
        }
    }
}

/// Hits summed over perf stat's CSV lines (`count,unit,event,...`) for the group's events.
fn hits(text: &str) -> Option<u64> {
    let counts: Vec<u64> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let count = fields.next()?;
            let event = fields.nth(1)?;
            event
                .starts_with(&format!("{GROUP}:"))
                .then(|| count.parse().ok())?
        })
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

fn append_events(lines: &str) -> Result<()> {
    OpenOptions::new()
        .append(true)
        .open(UPROBE_EVENTS)
        .and_then(|mut file| file.write_all(lines.as_bytes()))
        .with_context(|| format!("bench: adding uprobes to {UPROBE_EVENTS}"))
}

/// Removes the group's events left by this or an interrupted earlier run.
fn remove_events() -> Result<()> {
    let current = fs::read_to_string(UPROBE_EVENTS)
        .with_context(|| format!("bench: reading {UPROBE_EVENTS}"))?;
    let removals: String = current
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("p:{GROUP}/")))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| format!("-:{GROUP}/{name}\n"))
        .collect();
    if removals.is_empty() {
        return Ok(());
    }
    append_events(&removals).context("bench: removing the count-only uprobes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_sum_the_groups_events_only() {
        let text = "# started on Thu Dec  3 05:40:00 2026\n\n\
                    432607,,timerscope_bench:hook0,5001234567,100.00,,\n\
                    2,,timerscope_bench:hook1,5001234567,100.00,,\n\
                    <not counted>,,timerscope_bench:hook2,0,0.00,,\n\
                    7,,other:event,5001234567,100.00,,\n";
        assert_eq!(hits(text), Some(432609));
        assert_eq!(hits("# started\n"), None);
    }
}
