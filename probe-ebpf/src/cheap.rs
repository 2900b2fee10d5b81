//! The C heap: uprobes on libc's allocation functions. Each allocation is attributed to the
//! libc function, the C code that called it (the return address at `[RSP]`: C has no frame
//! pointers to walk) and the Go stack that called into C, which the cgo probes keep per thread;
//! so an allocation walks no stack when Go called C. The entry remembers the call per thread,
//! the uretprobe (libc code, never Go) completes it with the returned block; `free` ends a
//! block's life.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::bpf_get_attach_cookie,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use probe_common::{CHeapBlock, CHeapCall, CHeapSite, NO_STACK, c_heap_fn, drop, reg};

use crate::{
    maps::{
        C_HEAP_BLOCKS, C_HEAP_CALLS, C_HEAP_SITES, CGO_CALLS, count_drop, entry, target_thread,
    },
    regs::{Registers, register, try_read_u64},
    stacks::{Frames, user_stack},
};

/// Entry of malloc, calloc, realloc, posix_memalign and aligned_alloc; the attach cookie is
/// the function (`c_heap_fn`).
#[uprobe]
pub fn c_heap_alloc(ctx: ProbeContext) -> u32 {
    let _ = on_alloc(&ctx);
    0
}

#[inline(always)]
fn on_alloc(ctx: &ProbeContext) -> Option<()> {
    let tid = target_thread()?;
    if let Some(call) = C_HEAP_CALLS.get_ptr_mut(&tid) {
        // Called by a hooked function on this thread (glibc's realloc(NULL, n) is malloc):
        // the outer call accounts for the block.
        unsafe { (*call).depth += 1 };
        return Some(());
    }
    let function = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    let regs = Registers::of(ctx)?;
    let arg = |slot| register(&regs, slot).unwrap_or(0);
    let (size, arg0) = match function {
        c_heap_fn::MALLOC => (arg(reg::RDI), 0),
        // An overflowing product makes calloc fail: its size never counts.
        c_heap_fn::CALLOC => (arg(reg::RDI).wrapping_mul(arg(reg::RSI)), 0),
        c_heap_fn::REALLOC => (arg(reg::RSI), arg(reg::RDI)),
        c_heap_fn::POSIX_MEMALIGN => (arg(reg::RDX), arg(reg::RDI)),
        c_heap_fn::ALIGNED_ALLOC => (arg(reg::RSI), 0),
        _ => return None,
    };
    let cgo_stack = unsafe { CGO_CALLS.get(&tid) }.copied().unwrap_or(NO_STACK);
    let site = CHeapSite {
        ip: arg(reg::RIP),
        // The probe sits before the function moves RSP (the uretprobe needs that too).
        caller: try_read_u64(arg(reg::RSP)).unwrap_or(0),
        cgo_stack,
        // Only C code not called by Go (its own threads) pays for a walk.
        stack: if cgo_stack == NO_STACK {
            user_stack(&regs, Frames::Any)
        } else {
            NO_STACK
        },
        function,
        _pad: 0,
    };
    let mut call = CHeapCall {
        block: CHeapBlock { size, site },
        arg: arg0,
        ..CHeapCall::default()
    };
    let old = (function == c_heap_fn::REALLOC && arg0 != 0)
        .then(|| unsafe { C_HEAP_BLOCKS.get(&arg0) }.copied())
        .flatten();
    if let Some(old) = old {
        call.old = old;
        call.old_live = 1;
    }
    if C_HEAP_CALLS
        .insert(&tid, &call, BPF_NOEXIST as u64)
        .is_err()
    {
        count_drop(drop::C_HEAP_CALLS_FULL);
        return None;
    }
    if old.is_some() {
        // realloc frees the old block: out of the live map now, before another thread can be
        // given its address.
        let _ = C_HEAP_BLOCKS.remove(&arg0);
    }
    Some(())
}

/// Return of the allocation functions: the block is live from here.
#[uretprobe]
pub fn c_heap_alloc_return(ctx: RetProbeContext) -> u32 {
    let _ = on_alloc_return(&ctx);
    0
}

#[inline(always)]
fn on_alloc_return(ctx: &RetProbeContext) -> Option<()> {
    let tid = target_thread()?;
    let pending = C_HEAP_CALLS.get_ptr_mut(&tid)?;
    if unsafe { (*pending).depth } > 0 {
        unsafe { (*pending).depth -= 1 };
        return Some(());
    }
    let call = unsafe { *pending };
    let _ = C_HEAP_CALLS.remove(&tid);
    let ret: u64 = ctx.ret();
    let address = match call.block.site.function {
        // Returns 0 and writes the block to *memptr.
        c_heap_fn::POSIX_MEMALIGN if ret as u32 == 0 => try_read_u64(call.arg).unwrap_or(0),
        c_heap_fn::POSIX_MEMALIGN => 0,
        _ => ret,
    };
    if address == 0 {
        // A failed realloc keeps its old block; realloc(p, 0) returns NULL having freed it.
        if call.block.site.function == c_heap_fn::REALLOC
            && call.old_live == 1
            && call.block.size != 0
        {
            let _ = C_HEAP_BLOCKS.insert(&call.arg, &call.old, 0);
        }
        return None;
    }
    if let Some(totals) = entry(&C_HEAP_SITES, &call.block.site, drop::C_HEAP_SITES_FULL) {
        // Per-CPU value: no other program touches it meanwhile.
        unsafe {
            (*totals).allocs += 1;
            (*totals).bytes += call.block.size;
        }
    }
    if C_HEAP_BLOCKS.insert(&address, &call.block, 0).is_err() {
        count_drop(drop::C_HEAP_BLOCKS_FULL);
    }
    Some(())
}

/// `free(ptr)`: the block is no longer live.
#[uprobe]
pub fn c_heap_free(ctx: ProbeContext) -> u32 {
    if target_thread().is_some()
        && let Some(ptr) = ctx.arg::<u64>(0)
        && ptr != 0
    {
        let _ = C_HEAP_BLOCKS.remove(&ptr);
    }
    0
}
