//! Go calling into C (cgo): C code has no frame pointers, so a stack taken inside C stops there.
//! These probes keep, per thread, the Go stack at the `runtime.cgocall` that entered C, for the
//! mmap tracepoints to attach to calls made from C.

use aya_ebpf::{macros::uprobe, programs::ProbeContext};

use probe_common::drop;

use crate::{
    maps::{CGO_CALLS, count_drop, target_thread},
    regs::Registers,
    stacks::{Frames, user_stack},
};

/// `runtime.cgocall`, after its stack check: the goroutine is about to enter C on this thread.
#[uprobe]
pub fn cgo_call(ctx: ProbeContext) -> u32 {
    if let Some(tid) = target_thread()
        && let Some(regs) = Registers::of(&ctx)
        && CGO_CALLS
            .insert(tid, user_stack(&regs, Frames::Go), 0)
            .is_err()
    {
        count_drop(drop::CGO_CALLS_FULL);
    }
    0
}

/// Each `RET` of `runtime.asmcgocall`: C has returned, on the same thread that entered it.
#[uprobe]
pub fn cgo_return(_ctx: ProbeContext) -> u32 {
    if let Some(tid) = target_thread() {
        let _ = CGO_CALLS.remove(tid);
    }
    0
}
