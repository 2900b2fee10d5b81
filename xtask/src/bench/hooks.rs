//! The functions timerscope hooks, and the bpftrace script that probes the same functions.

use std::path::Path;

use anyhow::{Context, Result};

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
