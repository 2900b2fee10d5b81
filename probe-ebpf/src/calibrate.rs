//! A uprobe that does nothing: userspace attaches it to a function of its own and times calls
//! with and without it, which measures what one uprobe hit costs the probed thread (the trap),
//! apart from the programs' own run time that the kernel's BPF statistics report.

use aya_ebpf::{macros::uprobe, programs::ProbeContext};

#[uprobe]
pub fn calibrate(_ctx: ProbeContext) -> u32 {
    0
}
