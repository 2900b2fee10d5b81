//! Reading the values a hook plan names: registers of the probed thread, Go stack slots and
//! target memory.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    programs::ProbeContext,
};
use probe_common::{ValueSource, reg, source};

use crate::maps::count_drop;

/// The probed thread's registers, copied once: the verifier rejects context reads at offsets
/// LLVM computes, which any slot-by-number lookup turns into.
pub struct Registers(pt_regs);

impl Registers {
    #[inline(always)]
    pub fn of(ctx: &ProbeContext) -> Option<Self> {
        unsafe { bpf_probe_read_kernel(ctx.regs) }.ok().map(Self)
    }

    /// The user registers of the current thread, saved at its syscall entry (in a syscall
    /// tracepoint, where the program's context is the tracepoint's record).
    #[inline(always)]
    pub fn of_syscalling_thread() -> Option<Self> {
        let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
        unsafe { bpf_probe_read_kernel(regs) }.ok().map(Self)
    }
}

/// A `pt_regs` slot.
#[inline(always)]
pub fn register(regs: &Registers, slot: u32) -> Option<u64> {
    let regs = &regs.0;
    Some(match slot {
        reg::R15 => regs.r15,
        reg::R14 => regs.r14,
        reg::R13 => regs.r13,
        reg::R12 => regs.r12,
        reg::RBP => regs.rbp,
        reg::RBX => regs.rbx,
        reg::R11 => regs.r11,
        reg::R10 => regs.r10,
        reg::R9 => regs.r9,
        reg::R8 => regs.r8,
        reg::RAX => regs.rax,
        reg::RCX => regs.rcx,
        reg::RDX => regs.rdx,
        reg::RSI => regs.rsi,
        reg::RDI => regs.rdi,
        reg::RIP => regs.rip,
        reg::EFLAGS => regs.eflags,
        reg::RSP => regs.rsp,
        _ => return None,
    })
}

/// At a stack-check `JBE`: the branch to morestack is taken when CF or ZF is set.
#[inline(always)]
pub fn morestack_branch_taken(regs: &Registers) -> bool {
    const CARRY: u64 = 1 << 0;
    const ZERO: u64 = 1 << 6;
    register(regs, reg::EFLAGS).is_some_and(|flags| flags & (CARRY | ZERO) != 0)
}

/// The value `src` names, or `None` when the plan has no such value or it cannot be read.
#[inline(always)]
pub fn read_source(regs: &Registers, src: ValueSource) -> Option<u64> {
    match src.kind {
        source::REGISTER => register(regs, src.index),
        source::STACK => read_u64(register(regs, reg::RSP)? + src.index as u64),
        source::MONOTONIC_NOW => Some(unsafe { bpf_ktime_get_ns() }),
        _ => None,
    }
}

/// A word of target memory; a failed read is counted as a drop.
#[inline(always)]
pub fn read_u64(addr: u64) -> Option<u64> {
    let value = try_read_u64(addr);
    if value.is_none() {
        count_drop(probe_common::drop::READ_FAULT);
    }
    value
}

/// A word of target memory that may legitimately be unreadable here: BPF cannot fault in a
/// page, so static data the target has not touched yet reads as an error.
#[inline(always)]
pub fn try_read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}
