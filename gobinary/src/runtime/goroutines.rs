//! Every goroutine of a live process, read from `runtime.allgs` (docs/go-runtime.md,
//! "Goroutines in memory"): id, state, wait reason as Go names it, `waitsince`, creation PC and
//! parent. A `g` whose status changes while it is read is re-read, and counted as torn when it
//! never settles; dead `g`s (kept in `allgs` for reuse) are skipped. [`stack`] walks a parked
//! goroutine's frame pointers from the registers its `g` saved.

use super::memory::{ReadError, RuntimeImage, STABLE_ATTEMPTS};
use crate::layout::{GoroutineLayout, goroutine_status as status};

/// At most this many goroutines are read (a larger `allglen` is torn or garbage).
pub const MAX_GOROUTINES: u64 = 10_000_000;

/// One goroutine as its `g` said at the moment it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goroutine {
    pub goid: u64,
    /// The state without the `_Gscan` bit.
    pub status: u32,
    /// Go's wait reason when waiting (`select`, `chan receive`, ...), else the state's name
    /// (`running`, `runnable`, `syscall`), as goroutine dumps put it in brackets.
    pub state: &'static str,
    /// `waitsince` (CLOCK_MONOTONIC ns of about the GC before last; 0 when not yet seen).
    pub waitsince: i64,
    /// Return PC of the `go` statement (runtime address).
    pub gopc: u64,
    /// Entry of the goroutine's function (runtime address).
    pub startpc: u64,
    pub parent_goid: Option<u64>,
    /// Where its `g` is: [`stack`] reads it again to check the goroutine did not move on.
    pub address: u64,
    /// `g.stack.hi`: the top of its stack.
    pub stack_hi: u64,
    /// The registers its `g` saved when it stopped running: `sched` when parked or runnable,
    /// the `syscall*` ones in a system call (Go 1.23+; before, no frame pointer is saved
    /// there); none while it runs.
    pub saved: Option<SavedRegisters>,
}

/// A stopped goroutine's program counter, stack pointer and frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedRegisters {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

/// Frames of a goroutine stack walked at most (Go's goroutine profile records up to 128 since
/// Go 1.23, 32 before; deeper frames are the outermost and rarely tell sites apart).
pub const MAX_STACK_DEPTH: usize = 128;

/// At most this much of a goroutine's stack is read for its walk (stacks start at 8 KiB).
pub const MAX_STACK_BYTES: u64 = 1 << 20;

/// The goroutines of one read, and what could not be read.
#[derive(Debug, Default)]
pub struct Goroutines {
    pub goroutines: Vec<Goroutine>,
    /// `g`s whose status kept changing while read.
    pub torn: u64,
    /// `g`s whose memory could not be read.
    pub unreadable: u64,
}

/// Reads every live goroutine: `allglen` first, then `allgptr` (the runtime stores them in the
/// other order, so the array holds at least `allglen` entries), then each `g` in one read.
pub fn read(image: &RuntimeImage<'_>, layout: &GoroutineLayout) -> Result<Goroutines, ReadError> {
    let memory = &image.memory;
    let len_address = image.global("runtime.allglen")?;
    let ptr_address = image.global("runtime.allgptr")?;
    let len = memory.u64(len_address)?;
    if len > MAX_GOROUTINES {
        return Err(ReadError::TooLong {
            address: len_address,
            len,
            max: MAX_GOROUTINES,
        });
    }
    let array = memory.pointer(ptr_address)?;
    let pointers = if len == 0 {
        Vec::new()
    } else {
        memory.words(array, len)?
    };
    let mut result = Goroutines::default();
    let mut buf = vec![0u8; layout.read_len() as usize];
    for g in pointers.into_iter().filter(|&g| g != 0) {
        match read_one(image, layout, g, &mut buf) {
            Ok(Some(goroutine)) => result.goroutines.push(goroutine),
            Ok(None) => {}
            Err(ReadError::Inconsistent { .. }) => result.torn += 1,
            Err(ReadError::Unreadable { .. }) => result.unreadable += 1,
            Err(error) => return Err(error),
        }
    }
    Ok(result)
}

fn read_one(
    image: &RuntimeImage<'_>,
    layout: &GoroutineLayout,
    g: u64,
    buf: &mut [u8],
) -> Result<Option<Goroutine>, ReadError> {
    let word = |buf: &[u8], at: u32| {
        let at = at as usize;
        u64::from_le_bytes(buf[at..at + 8].try_into().expect("within read_len"))
    };
    for _ in 0..STABLE_ATTEMPTS {
        image.memory.read(g, buf)?;
        let raw = u32::from_le_bytes(
            buf[layout.status as usize..layout.status as usize + 4]
                .try_into()
                .expect("within read_len"),
        );
        // The status read again after the rest: a g that changed state in between is torn.
        if image.memory.u32(g + u64::from(layout.status))? != raw || raw & status::SCAN_BIT != 0 {
            continue;
        }
        let state = raw & !status::SCAN_BIT;
        if !status::is_live(state) {
            return Ok(None);
        }
        let wait_reason = buf[layout.waitreason as usize];
        let name = match state {
            status::WAITING | status::LEAKED => {
                layout.wait_reason(wait_reason).unwrap_or("waiting")
            }
            other => status::name(other),
        };
        let registers = |pc, sp, bp| {
            let saved = SavedRegisters {
                pc: word(buf, pc),
                sp: word(buf, sp),
                bp: word(buf, bp),
            };
            (saved.pc != 0 && saved.sp != 0).then_some(saved)
        };
        let saved = match state {
            status::WAITING | status::LEAKED | status::RUNNABLE => {
                registers(layout.sched_pc, layout.sched_sp, layout.sched_bp)
            }
            status::SYSCALL => layout
                .syscall_bp
                .and_then(|bp| registers(layout.syscall_pc, layout.syscall_sp, bp)),
            _ => None,
        };
        return Ok(Some(Goroutine {
            address: g,
            // `g.stack` is the first member in every release: `lo`, then `hi`.
            stack_hi: word(buf, 8),
            saved,
            goid: word(buf, layout.goid),
            status: state,
            state: name,
            waitsince: word(buf, layout.waitsince) as i64,
            gopc: word(buf, layout.gopc),
            startpc: word(buf, layout.startpc),
            parent_goid: layout.parent_goid.map(|at| word(buf, at)),
        }));
    }
    Err(ReadError::Inconsistent {
        what: "runtime.g",
        attempts: STABLE_ATTEMPTS,
    })
}

/// The return addresses of a stopped goroutine's stack, innermost first, its saved PC first of
/// all: a frame-pointer walk over one read of the stack from the saved stack pointer up. Empty
/// for a goroutine that runs (it saved no registers). The `g` is read again after the walk: a
/// goroutine that ran or moved its stack meanwhile is [`ReadError::Inconsistent`].
pub fn stack(
    image: &RuntimeImage<'_>,
    layout: &GoroutineLayout,
    goroutine: &Goroutine,
) -> Result<Vec<u64>, ReadError> {
    let Some(saved) = goroutine.saved else {
        return Ok(Vec::new());
    };
    let len = goroutine
        .stack_hi
        .saturating_sub(saved.sp)
        .min(MAX_STACK_BYTES);
    let bytes = image
        .memory
        .bytes(saved.sp, len, MAX_STACK_BYTES as usize)?;
    let word = |address: u64| {
        let at = usize::try_from(address.checked_sub(saved.sp)?).ok()?;
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let mut pcs = vec![saved.pc];
    let mut bp = saved.bp;
    // Each frame holds the caller's frame pointer at `bp` and the return address above it;
    // callers' frames are higher up, so a pointer that does not rise ends the walk.
    while pcs.len() < MAX_STACK_DEPTH && bp % 8 == 0 {
        let (Some(next), Some(ret)) = (word(bp), word(bp + 8)) else {
            break;
        };
        if ret == 0 {
            break;
        }
        pcs.push(ret);
        if next <= bp {
            break;
        }
        bp = next;
    }
    let mut again = vec![0u8; layout.read_len() as usize];
    let moved = read_one(image, layout, goroutine.address, &mut again)?
        .is_none_or(|now| now.saved != goroutine.saved || now.status != goroutine.status);
    if moved {
        return Err(ReadError::Inconsistent {
            what: "goroutine stack",
            attempts: 1,
        });
    }
    Ok(pcs)
}

/// A walked stack as Go's goroutine profile records it: compiler-generated wrappers left out
/// (as Go's `tracebackPCs` does, unless the wrapper called a panic function), and nothing from
/// `runtime.goexit` on (runtime/pprof's proto writer stops there).
pub fn as_go_records(image: &RuntimeImage<'_>, layout: &GoroutineLayout, pcs: &[u64]) -> Vec<u64> {
    let Some(pclntab) = &image.binary.pclntab else {
        return pcs.to_vec();
    };
    let mut kept = Vec::with_capacity(pcs.len());
    let mut callee: Option<&str> = None;
    for &pc in pcs {
        // Every frame is a return address, the saved PC too: look up its call.
        let link = image.link_address(pc).saturating_sub(1);
        let Some(function) = pclntab.function_containing(link) else {
            kept.push(pc);
            callee = None;
            continue;
        };
        if function.name == "runtime.goexit" {
            break;
        }
        let wrapper = layout
            .wrapper_func_id
            .is_some_and(|id| pclntab.func_id(link) == Some(id));
        let called_panic = callee.is_some_and(|c| {
            matches!(
                c,
                "runtime.gopanic" | "runtime.sigpanic" | "runtime.panicwrap"
            )
        });
        if !wrapper || called_panic {
            kept.push(pc);
        }
        callee = Some(function.name);
    }
    kept
}

/// Whether Go's goroutine profile and dumps leave this goroutine out: its function is a
/// `runtime.` one other than `runtime.main` (the runtime's `isSystemGoroutine`).
pub fn is_system(start_function: &str) -> bool {
    start_function.starts_with("runtime.")
        && !matches!(
            start_function,
            "runtime.main" | "runtime.handleAsyncEvent" | "runtime.corostart"
        )
}

/// How Go's dumps name the creator of a goroutine: the function containing `gopc - 1`, or
/// nothing for the main goroutine and for goroutines the runtime's own code started.
pub fn shows_creator(goid: u64, creator: &str) -> bool {
    let exported_runtime = creator
        .strip_prefix("runtime.")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()));
    goid != 1 && creator.contains('.') && (!creator.starts_with("runtime.") || exported_runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_goroutines_and_creators_follow_the_runtime() {
        assert!(is_system("runtime.bgsweep"));
        assert!(!is_system("runtime.main"));
        assert!(!is_system("main.worker"));
        assert!(shows_creator(7, "main.spawnLeaks"));
        assert!(!shows_creator(1, "main.spawnLeaks"));
        assert!(!shows_creator(7, "runtime.gcenable"));
    }
}
