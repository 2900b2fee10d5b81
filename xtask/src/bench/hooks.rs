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

/// The hooked timer functions named in a timerscope profile's `hooks=SYMBOL+OFFSET,...`
/// comment.
pub fn hooked_functions(profile: &Path) -> Result<Vec<String>> {
    Ok(hook_points(profile)?
        .timer
        .into_iter()
        .map(|(function, _)| function)
        .collect())
}

/// Every uprobe a timerscope profile says it placed, as (function, offset into it).
pub struct HookPoints {
    /// From the `hooks=` comment.
    pub timer: Vec<(String, u64)>,
    /// From the `goroutine_hooks=` comment; empty without goroutine probes.
    pub goroutine: Vec<(String, u64)>,
}

pub fn hook_points(profile: &Path) -> Result<HookPoints> {
    let profile = read(profile)?;
    let hooks = profile
        .comment_value("hooks")
        .context("bench: the profile has no hooks= comment")?;
    let goroutine_hooks = profile.comment_value("goroutine_hooks").unwrap_or_default();
    Ok(HookPoints {
        timer: probe_points(hooks)?,
        goroutine: probe_points(goroutine_hooks)?,
    })
}

fn read(profile: &Path) -> Result<pprof::ResolvedProfile> {
    Ok(pprof::ResolvedProfile::new(
        &pprof::read_file(profile)
            .with_context(|| format!("bench: reading {}", profile.display()))?,
    ))
}

/// `SYMBOL+OFFSET,...` as (symbol, offset); a symbol may itself contain `+`, so the last one
/// splits.
fn probe_points(list: &str) -> Result<Vec<(String, u64)>> {
    list.split(',')
        .filter(|hook| !hook.is_empty())
        .map(|hook| {
            let (symbol, offset) = hook.rsplit_once('+').unwrap_or((hook, "0"));
            let offset = offset
                .parse()
                .with_context(|| format!("bench: hook {hook} has no numeric offset"))?;
            Ok((symbol.to_owned(), offset))
        })
        .collect()
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
pub fn bpftrace_script(
    binary: &Path,
    functions: &[String],
    at_exit: CountsAtExit,
) -> Result<String> {
    let go = open(binary)?;
    let probes = functions
        .iter()
        .map(|function| {
            // bpftrace finds functions by name only in a `.symtab`; stripped Go binaries
            // (Debian's caddy) have none, and a script whose uprobes resolve to nothing still
            // runs its `BEGIN`, so there it probes the entry's file offset.
            if go.elf.symbols.contains_key(function) {
                Ok(BpftraceProbe::Function(function.clone()))
            } else {
                file_offset(&go, binary, function, 0).map(BpftraceProbe::FileOffset)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(script_at(binary, &probes, at_exit))
}

/// Where a bpftrace uprobe goes.
enum BpftraceProbe {
    Function(String),
    FileOffset(u64),
}

fn script_at(binary: &Path, probes: &[BpftraceProbe], at_exit: CountsAtExit) -> String {
    let probes: Vec<String> = probes
        .iter()
        .map(|probe| match probe {
            BpftraceProbe::Function(symbol) => format!("uprobe:{}:\"{symbol}\"", binary.display()),
            BpftraceProbe::FileOffset(offset) => format!("uprobe:{}:{offset:#x}", binary.display()),
        })
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

/// File offsets (what uprobes attach by) of `(function, offset into it)` in `binary`, the
/// functions found as timerscope finds them (`.symtab`, else `.gopclntab`).
pub fn file_offsets(binary: &Path, points: &[(String, u64)]) -> Result<Vec<u64>> {
    let go = open(binary)?;
    points
        .iter()
        .map(|(function, offset)| file_offset(&go, binary, function, *offset))
        .collect()
}

fn open(binary: &Path) -> Result<gobinary::GoBinary> {
    gobinary::GoBinary::open(binary).with_context(|| format!("bench: reading {}", binary.display()))
}

fn file_offset(go: &gobinary::GoBinary, binary: &Path, function: &str, offset: u64) -> Result<u64> {
    let symbol = go
        .function(function)
        .with_context(|| format!("bench: {function} is not in {}", binary.display()))?;
    go.elf
        .file_offset(symbol.address + offset)
        .with_context(|| format!("bench: {function}+{offset} is outside the file"))
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
                // --unsafe: without a `.symtab` bpftrace cannot check that a file offset starts
                // an instruction; the offsets are function entries from the binary's pclntab.
                .args([
                    "--unsafe",
                    "-B",
                    "line",
                    "-p",
                    &pid.to_string(),
                    "-e",
                    script,
                ])
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
    fn probe_points_split_at_the_last_plus() {
        assert_eq!(
            probe_points("runtime.(*timer).modify+4,,runtime.newproc.func1+64").unwrap(),
            [
                ("runtime.(*timer).modify".to_owned(), 4),
                ("runtime.newproc.func1".to_owned(), 64)
            ]
        );
        assert!(probe_points("runtime.goexit1+x").is_err());
    }

    #[test]
    fn the_script_probes_every_function() {
        let script = script_at(
            Path::new("/bin/x"),
            &[
                BpftraceProbe::Function("runtime.(*timer).modify".into()),
                BpftraceProbe::FileOffset(0x60ce0),
            ],
            CountsAtExit::Discard,
        );
        assert_eq!(
            script,
            "BEGIN { printf(\"bench: probes attached\\n\"); } \
             uprobe:/bin/x:\"runtime.(*timer).modify\",uprobe:/bin/x:0x60ce0 \
             { @[ustack] = count(); } END { clear(@); }"
        );
    }
}
