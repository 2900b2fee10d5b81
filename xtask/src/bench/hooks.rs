//! The functions timerscope hooks, and the bpftrace script that probes the same functions.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::measure::{Lines, Running};

/// What `timerscope record` prints on stderr once its probes are attached.
pub const TIMERSCOPE_READY: &str = "timerscope: recording pid";
/// What the bpftrace script's `BEGIN` probe prints; bpftrace runs it after attaching the rest.
pub const BPFTRACE_READY: &str = "bench: probes attached";

/// The hooked functions named in a timerscope profile's `hooks=SYMBOL+OFFSET,...` comment.
pub fn hooked_functions(profile: &Path) -> Result<Vec<String>> {
    let profile = pprof::ResolvedProfile::new(
        &pprof::read_file(profile)
            .with_context(|| format!("bench: reading {}", profile.display()))?,
    );
    let hooks = profile
        .comment_value("hooks")
        .context("bench: the profile has no hooks= comment")?;
    Ok(hooks
        .split(',')
        .filter(|hook| !hook.is_empty())
        .map(|hook| hook.rsplit_once('+').map_or(hook, |(symbol, _)| symbol))
        .map(str::to_owned)
        .collect())
}

/// What bpftrace does with its count map when interrupted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CountsAtExit {
    Print,
    /// Printing symbolizes every stack, which takes minutes in a 100 MB binary.
    Discard,
}

/// `@[ustack] = count()` at the entry of each function, the usual bpftrace way; prints
/// [`BPFTRACE_READY`] once attached.
pub fn bpftrace_script(binary: &Path, functions: &[String], at_exit: CountsAtExit) -> String {
    let probes: Vec<String> = functions
        .iter()
        .map(|symbol| format!("uprobe:{}:\"{symbol}\"", binary.display()))
        .collect();
    let end = match at_exit {
        CountsAtExit::Print => "",
        CountsAtExit::Discard => " END { clear(@); }",
    };
    format!(
        "BEGIN {{ printf(\"{BPFTRACE_READY}\\n\"); }} {} {{ @[ustack] = count(); }}{end}",
        probes.join(",")
    )
}

/// Starts of bpftrace tried before a benchmark gives up: it now and then exits at start with
/// nothing on stderr (seen once in a full run), which says nothing about what it costs.
const BPFTRACE_ATTEMPTS: usize = 3;
const BPFTRACE_TIMEOUT: Duration = Duration::from_secs(60);

/// bpftrace running `script` on process `pid`, its probes attached.
pub struct Bpftrace {
    pub running: Running,
    pub stdout: Lines,
    /// When the attempt that attached was started, and when it said so.
    pub started: Instant,
    pub attached: Instant,
}

/// Starts bpftrace on `pid` and waits for [`BPFTRACE_READY`], its stderr in `log`. A start that
/// fails is said on stdout and tried again, [`BPFTRACE_ATTEMPTS`] times in all.
pub fn start_bpftrace(pid: u32, script: &str, log: &Path) -> Result<Bpftrace> {
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        let mut running = Running::spawn(
            Command::new("bpftrace")
                .args(["-B", "line", "-p", &pid.to_string(), "-e", script])
                .stdout(Stdio::piped())
                .stderr(
                    fs::File::create(log)
                        .with_context(|| format!("bench: creating {}", log.display()))?,
                ),
        )?;
        let mut stdout = Lines::new("bpftrace", running.child.stdout.take().unwrap());
        match stdout.wait_for(BPFTRACE_READY, BPFTRACE_TIMEOUT) {
            Ok((_, attached)) => {
                return Ok(Bpftrace {
                    running,
                    stdout,
                    started,
                    attached,
                });
            }
            Err(error) => {
                let said = fs::read_to_string(log).unwrap_or_default();
                if attempt == BPFTRACE_ATTEMPTS {
                    return Err(error).context(format!("bpftrace said:\n{said}"));
                }
                println!(
                    "bench: bpftrace did not start (attempt {attempt} of {BPFTRACE_ATTEMPTS}): \
                     {error:#}; stderr: {:?}",
                    said.trim()
                );
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_probes_every_function() {
        let script = bpftrace_script(
            Path::new("/bin/x"),
            &[
                "runtime.(*timer).modify".into(),
                "runtime.(*timer).stop".into(),
            ],
            CountsAtExit::Discard,
        );
        assert_eq!(
            script,
            "BEGIN { printf(\"bench: probes attached\\n\"); } \
             uprobe:/bin/x:\"runtime.(*timer).modify\",uprobe:/bin/x:\"runtime.(*timer).stop\" \
             { @[ustack] = count(); } END { clear(@); }"
        );
    }
}
