//! The pending timers of a live Go process, read from the runtime's own heaps: Go 1.12-1.13's
//! 64 global buckets, 1.14-1.22's `p.timers []*timer`, 1.23+'s `p.timers.heap` (through
//! `runtime.allp`). Each timer is read twice and kept only when both reads agree and it passes
//! the checks its family allows (it points back at its heap, its state says pending, its
//! callback is a function of the binary); otherwise it is counted as inconsistent. A heap whose
//! slice header changes while it is read is re-read while it is small, a bounded number of
//! times; a large one (a busy P's, which changes under every read) is kept as read and counted
//! as moving: each of its timers passed the checks, but the set is not one moment's.

use std::{collections::HashMap, sync::Arc};

use iced_x86::{Decoder, DecoderOptions, Register};

use super::memory::{ReadError, ReadMemory, RuntimeImage, STABLE_ATTEMPTS};
use crate::{
    GoBinary,
    layout::{BUCKETS, HeapLayout, HeapLayoutError, LayoutSource, TimerHeaps, TimerLayout},
};

/// More timers than any one heap of a real program holds: a longer slice is garbage.
pub const MAX_HEAP_LEN: u64 = 1 << 24;

/// Timers read per batch (two reads of each, a few system calls): bounds the buffers to a few
/// hundred KiB whatever the heap's length.
const TIMER_BATCH: usize = 4096;

/// More Ps than `GOMAXPROCS` allows (`_MaxGomaxprocs` is 1024 since Go 1.10).
const MAX_PROCS: u64 = 1024;

/// Go 1.14-1.22 `timer.status` values that mean "pending" (docs/go-runtime.md).
const TIMER_WAITING: u32 = 1;
const TIMER_MODIFIED_EARLIER: u32 = 7;
const TIMER_MODIFIED_LATER: u32 = 8;
/// Dead or not in a heap: deleted, removed, no status.
const TIMER_GONE: [u32; 3] = [0, 3, 5];
/// Go 1.23+ `timer.state` bit: stopped, still in the heap until cleaned.
const TIMER_ZOMBIE: u8 = 4;

/// One pending timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTimer {
    /// The runtime address of its `runtime.timer` (what the probes key live timers by).
    pub address: u64,
    /// When it is due (`nanotime()`, CLOCK_MONOTONIC of the target's time namespace).
    pub when: i64,
    /// Its period; non-zero for tickers.
    pub period: i64,
    /// The function its callback `f` runs (`time.sendTime`, `time.goFunc`, ...); shared by
    /// every timer with that callback, so a million timers hold a handful of names.
    pub callback: Arc<str>,
    /// For `time.goFunc` (AfterFunc): the user's function, from the callback's argument.
    pub function: Option<Arc<str>>,
    /// The P whose heap holds it (Go 1.12-1.13: the bucket).
    pub p: u32,
}

/// Everything one read of the heaps found.
#[derive(Clone, Debug, Default)]
pub struct TimerSnapshot {
    pub timers: Vec<PendingTimer>,
    /// Timers or heaps that changed under every read, or failed the checks: not counted.
    pub inconsistent: u64,
    /// Heaps whose slice changed while they were read, kept as read: each timer in them passed
    /// its checks, but one added, removed or moved within the heap during the read can be
    /// missing.
    pub moving: u32,
    /// The heaps read (Ps, or buckets).
    pub heaps: u32,
    /// `CLOCK_MONOTONIC` when the read began, comparable with `when`.
    pub now: i64,
    pub source: Option<LayoutSource>,
}

/// Why a snapshot was not taken: the first are refusals (the binary's layout cannot be read),
/// the last a failed read of the process.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Layout(#[from] HeapLayoutError),
    #[error(
        "cannot find {0} in a binary without a symbol table (no anchor function decodes to it)"
    )]
    NoGlobal(&'static str),
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl SnapshotError {
    /// The binary cannot be read this way (as opposed to a process that went away or moved).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Layout(_) | Self::NoGlobal(_))
    }
}

/// The snapshot reader for one binary: its heap layout, resolved once.
pub struct TimerReader {
    pub layout: HeapLayout,
    timer: TimerLayout,
}

impl TimerReader {
    /// Resolves the heap layout of `binary`; refuses a binary whose layout it cannot know.
    pub fn new(binary: &GoBinary) -> Result<Self, SnapshotError> {
        Ok(Self {
            layout: HeapLayout::of_binary(binary)?,
            timer: crate::RuntimeLayout::of_binary(binary)
                .map_err(HeapLayoutError::from)?
                .timer,
        })
    }

    /// Reads every pending timer of the process `image` runs.
    pub fn read<M: ReadMemory>(
        &self,
        image: &RuntimeImage<'_, M>,
    ) -> Result<TimerSnapshot, SnapshotError> {
        let mut walk = Walk {
            image,
            reader: self,
            snapshot: TimerSnapshot {
                now: monotonic_now(),
                source: Some(self.layout.source),
                ..TimerSnapshot::default()
            },
            functions: HashMap::new(),
        };
        match self.layout.heaps {
            TimerHeaps::Buckets { stride, heap } => {
                let base = locate(image, "runtime.timers", BUCKET_ANCHORS, |address| {
                    buckets_plausible(image, address, stride, heap)
                })?;
                for bucket in 0..BUCKETS {
                    let address = base + u64::from(bucket * stride);
                    walk.heap(bucket, address, address + u64::from(heap), 8)?;
                }
            }
            TimerHeaps::StatusWord { p_timers, .. } | TimerHeaps::Locked { p_timers, .. } => {
                let p_id = u64::from(self.layout.p_id);
                let allp = locate(image, "runtime.allp", ALLP_ANCHORS, |address| {
                    allp_plausible(image, address, p_id)
                })?;
                let ps = image.memory.stable("runtime.allp", || {
                    let header = image.memory.slice_header(allp)?;
                    if !header.is_plausible() || header.len > MAX_PROCS {
                        return Ok(None);
                    }
                    Ok(Some(image.memory.words(header.ptr, header.len)?))
                })?;
                let (heap, element) = match self.layout.heaps {
                    TimerHeaps::Locked { heap, .. } => (u64::from(heap), 16),
                    _ => (0, 8),
                };
                for (index, p) in ps.into_iter().enumerate() {
                    let index = index as u32;
                    // Pointers read from the process are untrusted: a garbage one wraps to an unmapped
                    // address (unreadable), never an overflow.
                    let heap_owner = p.wrapping_add(u64::from(p_timers));
                    walk.heap(index, heap_owner, heap_owner.wrapping_add(heap), element)?;
                }
            }
        }
        Ok(walk.snapshot)
    }
}

/// Anchor functions that load `runtime.allp` RIP-relative (docs/go-runtime.md, "anchors").
const ALLP_ANCHORS: &[&str] = &["runtime.procresize"];
/// Go 1.12-1.13: functions that index the timer buckets.
const BUCKET_ANCHORS: &[&str] = &["runtime.addtimer", "runtime.timeSleepUntil"];

/// The runtime address of a global: its symbol when the binary has `.symtab`, else the first
/// RIP-relative operand (or the word before it, for loads of a slice's length or capacity)
/// in one of `anchors` that lies in writable data and that `plausible` accepts in the live
/// process. Never a guess: an address the live data does not confirm is not used.
fn locate<M: ReadMemory>(
    image: &RuntimeImage<'_, M>,
    name: &'static str,
    anchors: &[&str],
    plausible: impl Fn(u64) -> bool,
) -> Result<u64, SnapshotError> {
    match image.global(name) {
        Ok(address) => return Ok(address),
        Err(ReadError::MissingGlobal(_)) => {}
        Err(other) => return Err(other.into()),
    }
    let binary = image.binary;
    let writable = |vaddr: u64| {
        binary
            .elf
            .segments
            .iter()
            .any(|s| s.writable && (s.vaddr..s.vaddr + s.memsz).contains(&vaddr))
    };
    for anchor in anchors {
        let Some(symbol) = binary.function(anchor) else {
            continue;
        };
        let Some(code) = binary.code(symbol, 64 << 10) else {
            continue;
        };
        let mut seen = Vec::new();
        for instruction in Decoder::with_ip(64, code, symbol.address, DecoderOptions::NONE) {
            if !instruction.is_ip_rel_memory_operand() || instruction.memory_base() != Register::RIP
            {
                continue;
            }
            let target = instruction.ip_rel_memory_address();
            for candidate in [target, target.wrapping_sub(8), target.wrapping_sub(16)] {
                if seen.contains(&candidate) || !writable(candidate) {
                    continue;
                }
                seen.push(candidate);
                let runtime = candidate.wrapping_add(image.bias);
                if plausible(runtime) {
                    tracing::debug!("snapshot: {name} at {candidate:#x} (from {anchor})");
                    return Ok(runtime);
                }
            }
        }
    }
    Err(SnapshotError::NoGlobal(name))
}

/// A slice header of 1..=1024 `*p` whose every P has `p.id` equal to its index.
fn allp_plausible<M: ReadMemory>(image: &RuntimeImage<'_, M>, address: u64, p_id: u64) -> bool {
    let memory = &image.memory;
    let Ok(header) = memory.slice_header(address) else {
        return false;
    };
    if !header.is_plausible() || header.len == 0 || header.len > MAX_PROCS {
        return false;
    }
    let Ok(ps) = memory.words(header.ptr, header.len) else {
        return false;
    };
    ps.iter().enumerate().all(|(i, &p)| {
        p != 0
            && memory
                .u32(p.wrapping_add(p_id))
                .is_ok_and(|id| u64::from(id) == i as u64)
    })
}

/// 64 buckets whose heaps are plausible slices and whose timers point back at their bucket.
fn buckets_plausible<M: ReadMemory>(
    image: &RuntimeImage<'_, M>,
    base: u64,
    stride: u32,
    heap: u32,
) -> bool {
    let memory = &image.memory;
    (0..BUCKETS).all(|bucket| {
        let address = base + u64::from(bucket * stride);
        let Ok(header) = memory.slice_header(address + u64::from(heap)) else {
            return false;
        };
        if !header.is_plausible() || header.len > MAX_HEAP_LEN {
            return false;
        }
        // The first timer's `tb` (at 0) names this bucket.
        header.len == 0
            || memory
                .pointer(header.ptr)
                .and_then(|t| memory.pointer(t))
                .is_ok_and(|tb| tb == address)
    })
}

/// A timer as its bytes say: `Some(Some)` pending, `Some(None)` not pending (stopped,
/// deleted), `None` inconsistent.
type Judged = Option<Option<PendingTimer>>;

/// One walk over the heaps.
struct Walk<'a, 'b, M> {
    image: &'a RuntimeImage<'b, M>,
    reader: &'a TimerReader,
    snapshot: TimerSnapshot,
    /// Function names by funcval address: each callback (and AfterFunc function) read once.
    functions: HashMap<u64, Option<Arc<str>>>,
}

impl<M: ReadMemory> Walk<'_, '_, M> {
    /// One heap: the slice at `slice`, of `element`-byte entries whose first word is the
    /// `*timer`; `owner` is what the timers point back at (their bucket, P or `timers`).
    fn heap(&mut self, index: u32, owner: u64, slice: u64, element: u64) -> Result<(), ReadError> {
        self.snapshot.heaps += 1;
        let memory = &self.image.memory;
        for attempt in 1..=STABLE_ATTEMPTS {
            // A busy P's heap header can change faster than two reads of it agree: then one
            // plausible read will do, as the heap is counted moving and each timer is checked.
            let (header, settled) = match memory.stable_slice_header(slice, "timer heap") {
                Ok(header) => (header, true),
                Err(ReadError::Inconsistent { .. }) => (memory.slice_header(slice)?, false),
                Err(other) => return Err(other),
            };
            if !header.is_plausible() {
                self.snapshot.inconsistent += 1;
                return Ok(());
            }
            let entries = match memory.slice_elements(slice, header, element, MAX_HEAP_LEN) {
                Ok(entries) => entries,
                Err(ReadError::TooLong { .. }) => {
                    self.snapshot.inconsistent += 1;
                    return Ok(());
                }
                // The backing array was freed between the header read and this one.
                Err(ReadError::Unreadable { .. }) => continue,
                Err(other) => return Err(other),
            };
            let mut addresses: Vec<u64> = entries
                .chunks_exact(element as usize)
                .map(|entry| u64::from_le_bytes(entry[..8].try_into().expect("8 bytes")))
                .collect();
            // In address order, timers that share a page are read as one range. An entry the
            // runtime moved within the heap while the array was copied can be in it twice.
            addresses.sort_unstable();
            addresses.dedup();
            let mut found = Vec::new();
            let mut inconsistent = 0;
            for batch in addresses.chunks(TIMER_BATCH) {
                for (address, timer) in self.timers(index, owner, batch)? {
                    match timer {
                        Some(Some(pending)) => found.push(pending),
                        Some(None) => {}
                        None => {
                            tracing::trace!("snapshot: timer {address:#x} inconsistent");
                            inconsistent += 1;
                        }
                    }
                }
            }
            // The heap moved (grew, shrank, was re-sliced) while its timers were read: again
            // while another read is cheap (one batch), else keep what passed the checks.
            let moved = !settled || memory.slice_header(slice)? != header;
            if moved && attempt < STABLE_ATTEMPTS && addresses.len() <= TIMER_BATCH {
                continue;
            }
            self.snapshot.moving += u32::from(moved);
            self.snapshot.timers.extend(found);
            self.snapshot.inconsistent += inconsistent;
            return Ok(());
        }
        self.snapshot.inconsistent += 1;
        Ok(())
    }

    /// A batch of timers, each as [`Self::timer`] judges it. All are read twice in a few
    /// system calls; a timer whose two reads differ (or that was not readable) is read on its
    /// own until two reads agree, as every timer was before batching.
    fn timers(
        &mut self,
        p: u32,
        owner: u64,
        addresses: &[u64],
    ) -> Result<Vec<(u64, Judged)>, ReadError> {
        let memory = &self.image.memory;
        let len = self.reader.layout.timer_bytes as usize;
        let mut first = vec![0; addresses.len() * len];
        let mut second = vec![0; addresses.len() * len];
        let mut first_read = vec![false; addresses.len()];
        let mut second_read = vec![false; addresses.len()];
        memory.read_each(addresses, len, &mut first, &mut first_read)?;
        memory.read_each(addresses, len, &mut second, &mut second_read)?;
        let mut judged = Vec::with_capacity(addresses.len());
        for (i, &address) in addresses.iter().enumerate() {
            let bytes = &first[i * len..(i + 1) * len];
            let agreed =
                first_read[i] && second_read[i] && *bytes == second[i * len..(i + 1) * len];
            let timer = if agreed {
                self.judge(p, owner, address, bytes)?
            } else {
                self.timer(p, owner, address)?
            };
            judged.push((address, timer));
        }
        Ok(judged)
    }

    /// One timer read on its own: `Some(Some)` pending, `Some(None)` not pending (stopped,
    /// deleted), `None` inconsistent.
    fn timer(&mut self, p: u32, owner: u64, address: u64) -> Result<Judged, ReadError> {
        let memory = &self.image.memory;
        let len = u64::from(self.reader.layout.timer_bytes);
        let read = memory.stable("timer", || match memory.bytes(address, len, 4096) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(ReadError::Unreadable { .. }) => Ok(None),
            Err(other) => Err(other),
        });
        match read {
            Ok(bytes) => self.judge(p, owner, address, &bytes),
            Err(ReadError::Inconsistent { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// What a timer's agreed bytes say (see [`Self::timer`]).
    fn judge(
        &mut self,
        p: u32,
        owner: u64,
        address: u64,
        bytes: &[u8],
    ) -> Result<Judged, ReadError> {
        let word = |offset: u32| {
            let at = offset as usize;
            u64::from_le_bytes(bytes[at..at + 8].try_into().expect("within timer_bytes"))
        };
        let t = self.reader.timer;
        let mut when = word(t.when) as i64;
        match self.reader.layout.heaps {
            TimerHeaps::Buckets { .. } => {
                if word(t.bucket.unwrap_or(0)) != owner {
                    return Ok(None);
                }
            }
            TimerHeaps::StatusWord {
                p_timers,
                pp,
                status,
                nextwhen,
            } => {
                let at = status as usize;
                let status_word =
                    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("within timer_bytes"));
                match status_word {
                    s if TIMER_GONE.contains(&s) => return Ok(Some(None)),
                    TIMER_WAITING => {}
                    TIMER_MODIFIED_EARLIER | TIMER_MODIFIED_LATER => {
                        when = word(nextwhen) as i64;
                    }
                    // Running, removing, modifying, moving: caught mid-change.
                    _ => return Ok(None),
                }
                // `pp` is the P, the owner is `&p.timers`.
                if word(pp) != owner.wrapping_sub(u64::from(p_timers)) {
                    return Ok(None);
                }
            }
            TimerHeaps::Locked { state, ts, .. } => {
                if bytes[state as usize] & TIMER_ZOMBIE != 0 || when == 0 {
                    return Ok(Some(None));
                }
                if word(ts) != owner {
                    return Ok(None);
                }
            }
        }
        if when <= 0 {
            return Ok(None);
        }
        let f = word(t.f);
        let callback = self.function_of_funcval(f)?;
        let Some(name) = callback else {
            // A callback that is no function of the binary: garbage, not a timer.
            return Ok(None);
        };
        let function = if &*name == "time.goFunc" {
            // AfterFunc: the argument's data word is the user's funcval.
            self.function_of_funcval(word(t.arg + 8))?
        } else {
            None
        };
        Ok(Some(Some(PendingTimer {
            address,
            when,
            period: word(t.period) as i64,
            callback: name,
            function,
            p,
        })))
    }

    /// The function a `*funcval` runs: its first word is the code address.
    fn function_of_funcval(&mut self, funcval: u64) -> Result<Option<Arc<str>>, ReadError> {
        if funcval == 0 {
            return Ok(None);
        }
        if let Some(name) = self.functions.get(&funcval) {
            return Ok(name.clone());
        }
        let name = match self.image.memory.pointer(funcval) {
            Ok(pc) => self.image.function_name(pc).map(Arc::from),
            Err(ReadError::Unreadable { .. }) => None,
            Err(other) => return Err(other),
        };
        self.functions.insert(funcval, name.clone());
        Ok(name)
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the runtime's `nanotime`).
pub fn monotonic_now() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

/// Reads the pending timers of process `pid` running `binary`.
pub fn snapshot(binary: &GoBinary, pid: u32) -> Result<TimerSnapshot, SnapshotError> {
    let reader = TimerReader::new(binary)?;
    let image = RuntimeImage::attach(binary, pid)?;
    reader.read(&image)
}
