//! Checks made before anything is attached, each failing with one line that names the cause
//! and the fix.

use std::fs;

use anyhow::bail;

pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "timerscope record needs root (CAP_BPF and CAP_PERFMON) to load eBPF programs: \
             run it with sudo"
        );
    }
    Ok(())
}

/// The pid, if such a process exists and is not a zombie.
pub fn require_process(pid: u32) -> anyhow::Result<u32> {
    if !process_alive(pid) {
        bail!("no such process: pid {pid} (check the pid with `pgrep` or `ps`)");
    }
    Ok(pid)
}

pub fn process_alive(pid: u32) -> bool {
    // State is the field after the parenthesized command name, which may itself hold spaces.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}
