//! mmap tracepoints, filtered in kernel to the target process.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use probe_common::{MmapSiteKey, drop};

use crate::maps::{MMAP_SITES, config, entry, user_stack_id};

/// Field offsets in `syscalls/sys_enter_mmap` (from its tracefs `format`).
const MMAP_LEN: usize = 24;
const MMAP_FLAGS: usize = 40;
const MMAP_FD: usize = 48;
const MAP_ANONYMOUS: u64 = 0x20;

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = on_enter_mmap(&ctx);
    0
}

fn on_enter_mmap(ctx: &TracePointContext) -> Option<()> {
    if (bpf_get_current_pid_tgid() >> 32) as u32 != config().tgid {
        return None;
    }
    let len: u64 = unsafe { ctx.read_at(MMAP_LEN) }.ok()?;
    let flags: u64 = unsafe { ctx.read_at(MMAP_FLAGS) }.ok()?;
    let fd: i64 = unsafe { ctx.read_at(MMAP_FD) }.ok()?;
    let stack_id = user_stack_id(ctx);
    let anonymous = (flags & MAP_ANONYMOUS != 0 || fd as i32 == -1) as u32;
    let value = entry(
        &MMAP_SITES,
        &MmapSiteKey {
            stack_id,
            anonymous,
        },
        drop::MMAP_MAP_FULL,
    )?;
    unsafe {
        (*value).calls += 1;
        (*value).bytes += len;
    }
    Some(())
}
