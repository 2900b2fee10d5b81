//! User stacks by frame-pointer walk, stored by content hash.
//!
//! `bpf_get_stackid` walks the same chain, but it stops only when a read fails: every Go stack
//! ends with a saved frame pointer of 0, so every walk ends in a page fault that the kernel's
//! exception fixup absorbs, which cost a third of each timer probe. This walk stops at 0
//! instead, and copies the target's stack a page at a time (one helper call per page, not two
//! reads per frame). Stacks are keyed by a 64-bit hash of their frames, so, unlike the kernel's
//! stack map (one stack per hash bucket), two stacks never compete for a slot.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_probe_read_user_buf, generated::bpf_loop},
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use probe_common::{MAX_STACK_FRAMES, NO_STACK, UserStack, drop};

use crate::{
    maps::count_drop,
    regs::{Registers, register},
};

/// Bytes of target stack copied per read, at most: to the end of the page, since a page the
/// target never touched cannot be read from BPF. (Smaller windows measured slower: the per-call
/// cost of a read outweighs copying more.)
const WINDOW_BYTES: u64 = PAGE_BYTES;
const WINDOW_WORDS: usize = WINDOW_BYTES as usize / 8;
const PAGE_BYTES: u64 = 4096;

/// User stacks referenced by `SiteKey::stack` and `MmapEvent::stack`, by content hash.
#[map]
pub static STACKS: HashMap<u64, UserStack> = HashMap::with_max_entries(16384, 0);

/// The current window of target stack; one word more than a window, so a frame's two words at
/// any in-window index stay inside the value for the verifier.
#[map]
static STACK_WINDOW: PerCpuArray<[u64; WINDOW_WORDS + 1]> = PerCpuArray::with_max_entries(1, 0);

/// The stack being walked.
#[map]
static STACK_SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);

/// State of one walk, passed to each `bpf_loop` step.
struct Walk {
    fp: u64,
    window_start: u64,
    window_end: u64,
    hash: u64,
    /// The walk stopped at a frame it could not read.
    unreadable: bool,
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// What code the stack's frames belong to, which says whether an unreadable frame is a loss.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// Go code at the probe: the chain is sound to its end (a 0 frame pointer), so a frame that
    /// cannot be read (a page the kernel has briefly unmapped) cuts the stack short: counted
    /// as `STACK_TRUNCATED`.
    Go,
    /// Any code, e.g. a syscall from C, whose frame pointer may be any value.
    Any,
}

/// Key in `STACKS` of the user stack of the thread with registers `regs`; [`NO_STACK`], counted
/// as a drop, when the map has no room for a new stack.
#[inline(always)]
pub fn user_stack(regs: &Registers, frames: Frames) -> u64 {
    let ip = register(regs, probe_common::reg::RIP).unwrap_or(0);
    let fp = register(regs, probe_common::reg::RBP).unwrap_or(0);
    let Some((stack, key, unreadable)) = walk(ip, fp) else {
        return NO_STACK;
    };
    if unreadable && frames == Frames::Go {
        count_drop(drop::STACK_TRUNCATED);
    }
    if unsafe { STACKS.get(&key) }.is_none()
        && STACKS.insert(&key, stack, BPF_NOEXIST as u64).is_err()
        // Another CPU may have stored the same stack meanwhile.
        && unsafe { STACKS.get(&key) }.is_none()
    {
        count_drop(drop::STACK_MAP_FULL);
        return NO_STACK;
    }
    key
}

/// Walks the frame-pointer chain from `ip`/`fp` (a thread's RIP and RBP) into this CPU's
/// scratch stack: `ip` first, then each frame's return address, as the kernel's unwinder
/// reports them. Returns the stack, its content hash (never [`NO_STACK`]), and whether the walk
/// stopped at a frame it could not read.
#[inline(always)]
fn walk(ip: u64, fp: u64) -> Option<(&'static UserStack, u64, bool)> {
    let stack = unsafe { &mut *STACK_SCRATCH.get_ptr_mut(0)? };
    stack.frames[0] = ip;
    stack.len = 1;
    let mut walk = Walk {
        fp,
        window_start: 0,
        window_end: 0,
        hash: (0xcbf2_9ce4_8422_2325 ^ ip).wrapping_mul(FNV_PRIME),
        unreadable: false,
    };
    // A loop the verifier checks once, however long the stack.
    unsafe {
        bpf_loop(
            MAX_STACK_FRAMES as u32 - 1,
            walk_step as *mut c_void,
            (&raw mut walk).cast(),
            0,
        )
    };
    Some((
        stack,
        (walk.hash ^ u64::from(stack.len)).max(1),
        walk.unreadable,
    ))
}

/// One frame: its return address appended; returns 1 to stop.
extern "C" fn walk_step(_index: u64, walk: *mut c_void) -> i64 {
    let walk = unsafe { &mut *walk.cast::<Walk>() };
    match next_frame(walk) {
        Some(()) => 0,
        None => 1,
    }
}

#[inline(always)]
fn next_frame(walk: &mut Walk) -> Option<()> {
    let fp = walk.fp;
    if fp == 0 || fp & 7 != 0 {
        return None;
    }
    let window = unsafe { &mut *STACK_WINDOW.get_ptr_mut(0)? };
    if fp < walk.window_start || fp + 16 > walk.window_end {
        // Up to the end of fp's page or WINDOW_BYTES; at least the frame's 16 bytes.
        let to_page_end = PAGE_BYTES - (fp & (PAGE_BYTES - 1));
        let bytes = to_page_end.clamp(16, WINDOW_BYTES) as usize;
        let buf =
            unsafe { core::slice::from_raw_parts_mut(window.as_mut_ptr().cast::<u8>(), bytes) };
        if unsafe { bpf_probe_read_user_buf(fp as *const u8, buf) }.is_err() {
            walk.unreadable = true;
            return None;
        }
        walk.window_start = fp;
        walk.window_end = fp + bytes as u64;
    }
    // In the window (checked above): the mask changes nothing but tells the verifier.
    let index = ((fp - walk.window_start) >> 3) as usize & (WINDOW_WORDS - 1);
    let (next, ret) = (window[index], window[index + 1]);
    if ret == 0 {
        // No code there: the chain ran into data (C code without frame pointers).
        return None;
    }
    let stack = unsafe { &mut *STACK_SCRATCH.get_ptr_mut(0)? };
    let slot = stack.frames.get_mut(stack.len as usize)?;
    *slot = ret;
    stack.len += 1;
    walk.hash = (walk.hash ^ ret).wrapping_mul(FNV_PRIME);
    // Frames of one stack lie at rising addresses, but the chain may jump to another stack
    // (Go's systemstack links g0 frames back to the goroutine's), so only a frame that points
    // to itself ends the walk; a longer cycle ends at MAX_STACK_FRAMES, as the kernel's does.
    if next == fp {
        return None;
    }
    walk.fp = next;
    Some(())
}
