//! mmap, munmap, mremap and brk tracepoints, filtered in kernel to the target process. The entry
//! tracepoint remembers the arguments and the user stack per thread; the exit tracepoint sends
//! the completed call to userspace, and drops failed calls (they change no mapping).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use probe_common::{MmapEvent, NO_STACK, drop, mmap_op};

use crate::{
    maps::{CGO_CALLS, MMAP_EVENTS, MMAP_PENDING, count_drop, target_thread},
    regs::Registers,
    stacks::{Frames, user_stack},
};

/// Offset of the first syscall argument in `syscalls/sys_enter_*`, and of `ret` in
/// `syscalls/sys_exit_*` (from their tracefs `format` files); arguments are 8 bytes each.
const FIRST_ARG: usize = 16;
const RET: usize = 16;
/// Don't wake the reader per event: it polls.
const BPF_RB_NO_WAKEUP: u64 = 1;

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { ctx.read_at::<u64>(FIRST_ARG + 8 * n) }.unwrap_or(0)
}

#[inline(always)]
fn remember(event: MmapEvent) -> Option<()> {
    let tid = target_thread()?;
    // A thread inside C called by Go has no frame pointers to follow back into Go; the Go
    // stack of its cgocall was kept for it.
    let cgo_stack = unsafe { CGO_CALLS.get(tid) }.copied().unwrap_or(NO_STACK);
    let event = MmapEvent {
        stack: Registers::of_syscalling_thread()
            .map_or(NO_STACK, |regs| user_stack(&regs, Frames::Any)),
        tid,
        cgo_stack,
        ..event
    };
    if MMAP_PENDING.insert(tid, event, 0).is_err() {
        count_drop(drop::MMAP_PENDING_FULL);
    }
    Some(())
}

/// Completes the thread's pending call with the syscall's return value.
#[inline(always)]
fn complete(ctx: &TracePointContext, op: u32) -> Option<()> {
    let tid = target_thread()?;
    let mut event = unsafe { *MMAP_PENDING.get(tid)? };
    let _ = MMAP_PENDING.remove(tid);
    let ret: i64 = unsafe { ctx.read_at(RET) }.ok()?;
    // Errors are -4095..-1; a mapping can never be there.
    if event.op != op || (-4095..0).contains(&ret) {
        return None;
    }
    match op {
        mmap_op::MMAP | mmap_op::BRK => event.addr = ret as u64,
        mmap_op::MREMAP => event.new_addr = ret as u64,
        _ => {}
    }
    if MMAP_EVENTS
        .output::<MmapEvent>(&event, BPF_RB_NO_WAKEUP)
        .is_err()
    {
        count_drop(drop::MMAP_EVENT_LOST);
    }
    Some(())
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let event = MmapEvent {
        op: mmap_op::MMAP,
        len: arg(&ctx, 1),
        prot: arg(&ctx, 2) as u32,
        flags: arg(&ctx, 3) as u32,
        fd: arg(&ctx, 4) as i32,
        ..MmapEvent::default()
    };
    let _ = remember(event);
    0
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    let _ = complete(&ctx, mmap_op::MMAP);
    0
}

#[tracepoint]
pub fn sys_enter_munmap(ctx: TracePointContext) -> u32 {
    let event = MmapEvent {
        op: mmap_op::MUNMAP,
        addr: arg(&ctx, 0),
        len: arg(&ctx, 1),
        fd: -1,
        ..MmapEvent::default()
    };
    let _ = remember(event);
    0
}

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    let _ = complete(&ctx, mmap_op::MUNMAP);
    0
}

#[tracepoint]
pub fn sys_enter_mremap(ctx: TracePointContext) -> u32 {
    let event = MmapEvent {
        op: mmap_op::MREMAP,
        addr: arg(&ctx, 0),
        len: arg(&ctx, 1),
        new_len: arg(&ctx, 2),
        flags: arg(&ctx, 3) as u32,
        fd: -1,
        ..MmapEvent::default()
    };
    let _ = remember(event);
    0
}

#[tracepoint]
pub fn sys_exit_mremap(ctx: TracePointContext) -> u32 {
    let _ = complete(&ctx, mmap_op::MREMAP);
    0
}

/// The C heap's program break (glibc's main arena grows by brk). Part of the C heap probes:
/// userspace attaches it with them.
#[tracepoint]
pub fn sys_enter_brk(ctx: TracePointContext) -> u32 {
    let event = MmapEvent {
        op: mmap_op::BRK,
        addr: arg(&ctx, 0),
        fd: -1,
        ..MmapEvent::default()
    };
    let _ = remember(event);
    0
}

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    let _ = complete(&ctx, mmap_op::BRK);
    0
}
