//! Checks made before anything is attached, each failing with one line that names the cause
//! and the fix, and with its own exit status (see [`crate::exit`]).

use std::{fs, path::PathBuf};

/// Why timerscope refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "timerscope {0} needs root (CAP_SYS_ADMIN and CAP_SYS_PTRACE) to load eBPF programs: run it with sudo"
    )]
    NotPermitted(&'static str),
    #[error("no such process: pid {0} (check the pid with `pgrep` or `ps`)")]
    NoSuchProcess(u32),
    #[error(
        "this kernel has no {feature} ({path} is missing): timerscope needs a Linux kernel with \
         {feature} ({fix})"
    )]
    KernelFeature {
        feature: &'static str,
        path: PathBuf,
        fix: &'static str,
    },
}

pub fn require_root(command: &'static str) -> Result<(), Refusal> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Refusal::NotPermitted(command));
    }
    Ok(())
}

/// The kernel features the probes need, probed where the kernel advertises them.
/// `TIMERSCOPE_SYSFS` relocates `/sys` (to test the refusal on a kernel that has everything).
pub fn require_kernel_features() -> Result<(), Refusal> {
    let sysfs =
        PathBuf::from(std::env::var_os("TIMERSCOPE_SYSFS").unwrap_or_else(|| "/sys".into()));
    let features = [
        ("BTF", "kernel/btf/vmlinux", "CONFIG_DEBUG_INFO_BTF=y"),
        (
            "uprobes",
            "bus/event_source/devices/uprobe/type",
            "CONFIG_UPROBE_EVENTS=y",
        ),
    ];
    for (feature, relative, fix) in features {
        let path = sysfs.join(relative);
        if !path.exists() {
            return Err(Refusal::KernelFeature { feature, path, fix });
        }
    }
    Ok(())
}

/// The pid, if such a process exists and is not a zombie.
pub fn require_process(pid: u32) -> Result<u32, Refusal> {
    if !process_alive(pid) {
        return Err(Refusal::NoSuchProcess(pid));
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
