//! Every goroutine of a live process, read from `runtime.allgs` (docs/go-runtime.md,
//! "Goroutines in memory"): id, state, wait reason as Go names it, `waitsince`, creation PC and
//! parent. A `g` whose status changes while it is read is re-read, and counted as torn when it
//! never settles; dead `g`s (kept in `allgs` for reuse) are skipped.

use super::memory::{ReadError, ReadMemory, RuntimeImage, STABLE_ATTEMPTS};
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
}

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
pub fn read<M: ReadMemory>(
    image: &RuntimeImage<'_, M>,
    layout: &GoroutineLayout,
) -> Result<Goroutines, ReadError> {
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

fn read_one<M: ReadMemory>(
    image: &RuntimeImage<'_, M>,
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
        if image.memory.u32(g.wrapping_add(u64::from(layout.status)))? != raw
            || raw & status::SCAN_BIT != 0
        {
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
        return Ok(Some(Goroutine {
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
