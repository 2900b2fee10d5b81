//! What timerscope leaves in the kernel: its BPF programs (by id, through the fdinfo of the
//! process holding them) and its uprobes in tracefs, for the clean-detach checks.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

/// The programs timerscope loads.
pub const OUR_PROGRAMS: [&str; 7] = [
    "timer_hook",
    "sys_enter_mmap",
    "sys_exit_mmap",
    "sys_enter_munmap",
    "sys_exit_munmap",
    "sys_enter_mremap",
    "sys_exit_mremap",
];
/// The kernel keeps the first 15 bytes of a program's name.
pub const KERNEL_NAME_BYTES: usize = 15;
pub const UPROBE_EVENTS: &str = "/sys/kernel/tracing/uprobe_events";

pub fn is_ours(kernel_name: &[u8]) -> bool {
    OUR_PROGRAMS
        .iter()
        .any(|ours| kernel_name == &ours.as_bytes()[..ours.len().min(KERNEL_NAME_BYTES)])
}

/// Ids and names of every loaded BPF program, system-wide.
pub fn loaded_programs() -> Vec<(u32, Vec<u8>)> {
    aya::programs::loaded_programs()
        .filter_map(|info| info.ok())
        .map(|info| (info.id(), info.name().to_vec()))
        .collect()
}

/// Ids of the BPF programs process `pid` holds, through program or link file descriptors
/// (their fdinfo has a `prog_id:` line).
pub fn programs_held_by(pid: u32) -> BTreeSet<u32> {
    let dir = format!("/proc/{pid}/fdinfo");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter_map(|fdinfo| {
            fdinfo.lines().find_map(|l| {
                l.strip_prefix("prog_id:")
                    .and_then(|id| id.trim().parse().ok())
            })
        })
        .collect()
}

/// Lines of tracefs's uprobe_events that are ours: on the target's binary (by its path, or by
/// the `/proc/PID/exe` timerscope attaches through), or named by aya for the timerscope process
/// `recorder_pid` (`aya_PID_...`).
pub fn our_uprobe_events(binary: &Path, target_pid: u32, recorder_pid: u32) -> Vec<String> {
    let events = std::fs::read_to_string(UPROBE_EVENTS)
        .unwrap_or_else(|e| panic!("cannot read {UPROBE_EVENTS}: {e}"));
    let needles = [
        binary.to_str().unwrap().to_owned(),
        format!("/proc/{target_pid}/exe"),
        format!("aya_{recorder_pid}_"),
    ];
    events
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n.as_str())))
        .map(str::to_owned)
        .collect()
}

/// Polls until `f` holds, for up to 10 s (the kernel frees programs of a killed process
/// asynchronously).
pub fn eventually(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}
