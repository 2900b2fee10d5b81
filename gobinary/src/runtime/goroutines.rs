//! Every goroutine of a live process, read from `runtime.allgs` (docs/go-runtime.md,
//! "Goroutines in memory"): id, state, wait reason as Go names it, `waitsince`, creation PC,
//! parent, and the current stack of a goroutine that is not running, walked by frame pointers
//! from the registers its `g.sched` saved. A `g` whose status or saved registers change while it
//! (or its stack) is read is re-read, and counted as torn when it never settles; dead `g`s (kept
//! in `allgs` for reuse) are skipped.

use super::memory::{ReadError, RuntimeImage, STABLE_ATTEMPTS};
use crate::layout::{GoroutineLayout, goroutine_status as status};

/// At most this many goroutines are read (a larger `allglen` is torn or garbage).
pub const MAX_GOROUTINES: u64 = 10_000_000;

/// Frames walked per goroutine at most (Go's goroutine profile keeps 128 since 1.23).
pub const MAX_FRAMES: usize = 128;

/// Bytes of a goroutine's stack, from its saved SP up, read in one go; frames above are read
/// one by one.
const STACK_WINDOW: u64 = 32 << 10;

/// Where a goroutine is, as far as its memory tells.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GoroutineStack {
    /// Runtime addresses from where it stopped outwards: return addresses, but the first is
    /// the address of the innermost frame as Go's unwinder looks it up (the saved `pc`, a
    /// return address into `gopark` or the like, less one; the `pc` itself at a function's
    /// entry). `truncated` when [`MAX_FRAMES`] cut it.
    Walked { pcs: Vec<u64>, truncated: bool },
    /// Running on a thread: its stack pointer and pc are in that thread's registers.
    Running,
    /// In a system call on a release that saves no frame pointer for it (before Go 1.23):
    /// only the pc where it entered the call.
    Syscall { pc: u64 },
}

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
    pub stack: GoroutineStack,
}

/// The goroutines of one read, and what could not be read.
#[derive(Debug, Default)]
pub struct Goroutines {
    pub goroutines: Vec<Goroutine>,
    /// `g`s whose status kept changing while read.
    pub torn: u64,
    /// `g`s whose memory could not be read.
    pub unreadable: u64,
    /// Stacks cut at [`MAX_FRAMES`].
    pub truncated: u64,
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
            Ok(Some(goroutine)) => {
                if matches!(
                    goroutine.stack,
                    GoroutineStack::Walked {
                        truncated: true,
                        ..
                    }
                ) {
                    result.truncated += 1;
                }
                result.goroutines.push(goroutine);
            }
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
    let mut again = vec![0u8; buf.len()];
    for _ in 0..STABLE_ATTEMPTS {
        image.memory.read(g, buf)?;
        let raw = u32_at(buf, layout.status);
        let state = raw & !status::SCAN_BIT;
        // Being scanned or having its stack moved: its saved registers are not to be trusted.
        if raw & status::SCAN_BIT != 0 || state == status::COPYSTACK {
            continue;
        }
        if !status::is_live(state) {
            // Read again: a g being reused may say dead for a moment.
            if image.memory.u32(g + u64::from(layout.status))? == raw {
                return Ok(None);
            }
            continue;
        }
        let stack = match state {
            status::RUNNING => GoroutineStack::Running,
            status::SYSCALL => match layout.syscall_bp {
                Some(bp) => walk(
                    image,
                    Registers::of(buf, layout.syscall_pc, layout.syscall_sp, bp),
                    layout,
                    buf,
                )?,
                None => GoroutineStack::Syscall {
                    pc: word(buf, layout.syscall_pc),
                },
            },
            _ => walk(
                image,
                Registers::of(buf, layout.sched_pc, layout.sched_sp, layout.sched_bp),
                layout,
                buf,
            )?,
        };
        // The g read again after the stack: one that changed state, moved its stack or ran in
        // between is torn, and read once more.
        image.memory.read(g, &mut again)?;
        if again != *buf {
            let same = |at: u32, len: usize| {
                let at = at as usize;
                buf[at..at + len] == again[at..at + len]
            };
            let settled = same(layout.status, 4)
                && same(layout.stack_lo, 8)
                && same(layout.stack_hi, 8)
                && same(layout.sched_pc, 8)
                && same(layout.sched_sp, 8)
                && same(layout.sched_bp, 8)
                && same(layout.syscall_pc, 8)
                && same(layout.syscall_sp, 8)
                && same(layout.goid, 8);
            if !settled {
                continue;
            }
        }
        let wait_reason = buf[layout.waitreason as usize];
        let name = match state {
            status::WAITING | status::LEAKED => {
                layout.wait_reason(wait_reason).unwrap_or("waiting")
            }
            other => status::name(other),
        };
        return Ok(Some(Goroutine {
            goid: word(buf, layout.goid),
            status: state,
            state: name,
            waitsince: word(buf, layout.waitsince) as i64,
            gopc: word(buf, layout.gopc),
            startpc: word(buf, layout.startpc),
            parent_goid: layout.parent_goid.map(|at| word(buf, at)),
            stack,
        }));
    }
    Err(ReadError::Inconsistent {
        what: "runtime.g",
        attempts: STABLE_ATTEMPTS,
    })
}

fn word(buf: &[u8], at: u32) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("within read_len"))
}

fn u32_at(buf: &[u8], at: u32) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("within read_len"))
}

/// The registers a goroutine saved when it stopped (`g.sched`, or `g.syscall*`).
#[derive(Clone, Copy, Debug)]
struct Registers {
    pc: u64,
    sp: u64,
    bp: u64,
}

impl Registers {
    fn of(buf: &[u8], pc: u32, sp: u32, bp: u32) -> Self {
        Self {
            pc: word(buf, pc),
            sp: word(buf, sp),
            bp: word(buf, bp),
        }
    }
}

/// The goroutine's stack words from its saved SP up: one read for the usual small stack, single
/// reads for frames beyond the window.
struct StackMemory<'a> {
    image: &'a RuntimeImage<'a>,
    lo: u64,
    hi: u64,
    window_start: u64,
    window: Vec<u8>,
}

impl StackMemory<'_> {
    /// The word at `address`, which must lie in the goroutine's stack.
    fn word(&self, address: u64) -> Result<Option<u64>, ReadError> {
        if address < self.lo || address.saturating_add(8) > self.hi || !address.is_multiple_of(8) {
            return Ok(None);
        }
        let offset = address.wrapping_sub(self.window_start) as usize;
        if address >= self.window_start && offset + 8 <= self.window.len() {
            let bytes = &self.window[offset..offset + 8];
            return Ok(Some(u64::from_le_bytes(bytes.try_into().expect("8 bytes"))));
        }
        self.image.memory.u64(address).map(Some)
    }
}

/// Walks a stopped goroutine's frames by frame pointer: `[bp]` is the caller's frame pointer and
/// `[bp + 8]` the return address into the caller (amd64 Go keeps frame pointers). A function
/// stopped before it set up its frame (`pcsp` 0: at its entry, or in its prologue's stack
/// check) has its return address at `[sp]` and its caller's frame pointer still in `bp`. The
/// walk ends at a zero or out-of-stack frame pointer, a frame pointer that does not move up
/// the stack, or [`MAX_FRAMES`].
fn walk(
    image: &RuntimeImage<'_>,
    registers: Registers,
    layout: &GoroutineLayout,
    g: &[u8],
) -> Result<GoroutineStack, ReadError> {
    let (lo, hi) = (word(g, layout.stack_lo), word(g, layout.stack_hi));
    let at_entry = image.function_entry(registers.pc) == Some(registers.pc);
    let mut pcs = vec![if at_entry {
        registers.pc
    } else {
        registers.pc.saturating_sub(1)
    }];
    if registers.pc == 0 || lo >= hi || !(lo..hi).contains(&registers.sp) {
        return Ok(GoroutineStack::Walked {
            pcs,
            truncated: false,
        });
    }
    let window_len = (hi - registers.sp).min(STACK_WINDOW);
    let mut window = vec![0u8; window_len as usize];
    image.memory.read(registers.sp, &mut window)?;
    let stack = StackMemory {
        image,
        lo,
        hi,
        window_start: registers.sp,
        window,
    };
    let mut bp = registers.bp;
    if image.sp_delta(registers.pc) == Some(0) {
        match stack.word(registers.sp)? {
            Some(ret) if ret != 0 => pcs.push(ret),
            _ => {
                return Ok(GoroutineStack::Walked {
                    pcs,
                    truncated: false,
                });
            }
        }
    }
    let mut previous = registers.sp;
    while bp > previous {
        let (Some(next), Some(ret)) = (stack.word(bp)?, stack.word(bp + 8)?) else {
            break;
        };
        if ret == 0 {
            break;
        }
        if pcs.len() == MAX_FRAMES {
            return Ok(GoroutineStack::Walked {
                pcs,
                truncated: true,
            });
        }
        pcs.push(ret);
        previous = bp;
        bp = next;
    }
    Ok(GoroutineStack::Walked {
        pcs,
        truncated: false,
    })
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
