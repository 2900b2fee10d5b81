//! Types shared by the eBPF programs (`probe-ebpf`) and userspace (`capture`).
//!
//! Everything here is `#[repr(C)]` plain data with explicit padding, so both sides agree on the
//! bytes of every map key and value. Go-version knowledge never lives in the eBPF code: userspace
//! writes it as data ([`HookPlan`] per hook, [`TargetConfig`] once) before attaching.
#![no_std]

/// Events a hook can report. Stored as `u32` in keys so an unknown value is never UB.
pub mod event {
    /// A timer was created (NewTimer, After, AfterFunc, NewTicker) and armed.
    pub const CREATED: u32 = 0;
    /// A pending or stopped timer was re-armed (Reset, Sleep, network deadlines).
    pub const RESET: u32 = 1;
    /// A timer was stopped (Stop, deadline cleared).
    pub const STOPPED: u32 = 2;
    /// A timer's callback is about to run.
    pub const FIRED: u32 = 3;
    /// The per-P timer loop ran (checkTimers / (*timers).check).
    pub const TIMER_LOOP: u32 = 4;
    /// Go <= 1.13: a timer goroutine (`runtime.timerproc`) is about to call a timer's callback.
    /// Counts nothing per site; starts the goroutine's busy clock in `TIMER_WORKERS`.
    pub const CALLBACK_BEGIN: u32 = 5;
    /// Go <= 1.13: the callback returned to `runtime.timerproc`; stops the busy clock.
    pub const CALLBACK_END: u32 = 6;
    /// A goroutine was created (a `go` statement), at the creating stack.
    pub const GOROUTINE_CREATED: u32 = 7;
    /// A goroutine exited, at the stack that created it.
    pub const GOROUTINE_EXITED: u32 = 8;
    /// Number of event kinds.
    pub const COUNT: u32 = 9;
}

/// Where a hook reads a value at the probed instruction.
pub mod source {
    /// The hook has no such value.
    pub const NONE: u32 = 0;
    /// `index` is a slot of `struct pt_regs` (see [`super::reg`]).
    pub const REGISTER: u32 = 1;
    /// `index` is a byte offset from RSP (Go's stack ABI before 1.17: first argument at 8).
    pub const STACK: u32 = 2;
    /// The probe's own CLOCK_MONOTONIC reading (the clock of the runtime's `nanotime`), for
    /// probe points inside a function where the runtime's `now` is in no fixed place.
    pub const MONOTONIC_NOW: u32 = 3;
}

/// Slots of the x86_64 `struct pt_regs`, in kernel order. A [`ValueSource`] of kind
/// [`source::REGISTER`] names one of these.
pub mod reg {
    pub const R15: u32 = 0;
    pub const R14: u32 = 1;
    pub const R13: u32 = 2;
    pub const R12: u32 = 3;
    pub const RBP: u32 = 4;
    pub const RBX: u32 = 5;
    pub const R11: u32 = 6;
    pub const R10: u32 = 7;
    pub const R9: u32 = 8;
    pub const R8: u32 = 9;
    pub const RAX: u32 = 10;
    pub const RCX: u32 = 11;
    pub const RDX: u32 = 12;
    pub const RSI: u32 = 13;
    pub const RDI: u32 = 14;
    pub const RIP: u32 = 16;
    pub const EFLAGS: u32 = 18;
    pub const RSP: u32 = 19;
}

/// Hook behaviour switches ([`HookPlan::flags`]).
pub mod hook_flag {
    /// A call on a timer whose [`super::TargetConfig::timer_unarmed_marker`] field is still nil
    /// is the timer's first arm, so it counts as [`super::event::CREATED`]; any other call
    /// counts as [`super::event::RESET`]. Family B `(*timer).modify` (the first modify of a timer
    /// `time.newTimer` just allocated) and Go <= 1.13 `addtimer` (which Reset calls again).
    pub const CREATE_IF_UNINITIALIZED: u32 = 1;
    /// The probe sits on the stack-check `JBE`: when the branch is taken (CF or ZF set) the
    /// function grows its stack and restarts from its entry, so the hit is not the call's.
    pub const SKIP_IF_MORESTACK: u32 = 2;
    /// The probe sits inside the function body, past the prologue (Go <= 1.13's timerproc and
    /// Sleep): the frame is pushed, so `[RSP]` is no return address and the frame-pointer unwind
    /// already has the caller. [`super::SiteKey::caller`] stays 0.
    pub const IN_BODY: u32 = 4;
    /// The creation tier (`watch --events create`): stops and fires are not probed, so the
    /// timer is counted at its site but not tracked in `LIVE` (it would never leave it).
    pub const CREATION_ONLY: u32 = 8;
}

/// Bits of [`SiteKey::flags`].
pub mod site_flag {
    /// The timer is periodic (a ticker).
    pub const PERIODIC: u32 = 1;
    /// The timer was not seen being created or armed while we watched (it predates the attach),
    /// so the stack is the one at this event, not its creation stack. On a goroutine exit: the
    /// goroutine's creation was not seen; `caller` holds its `gopc`, and there is no stack.
    pub const UNKNOWN_ORIGIN: u32 = 2;
    /// `callback` holds the address of the funcval, which the probe could not read (a static
    /// funcval on a page the target has not touched yet); userspace reads it from the binary.
    pub const CALLBACK_UNREAD: u32 = 4;
    /// Likewise for `user_callback`.
    pub const USER_CALLBACK_UNREAD: u32 = 8;
    /// The hook's stack walks are sampled (`STACK_SAMPLING`) and this event's was skipped: the
    /// site has only the immediate caller.
    pub const STACK_SAMPLED_OUT: u32 = 16;
}

/// Reasons an event or a stack was lost, indices into the `DROPS` per-CPU array.
pub mod drop {
    /// The stack map was full: a new user stack could not be stored, and its events are
    /// counted without it.
    pub const STACK_MAP_FULL: u32 = 0;
    /// The per-site count map was full: the event was not counted.
    pub const SITE_MAP_FULL: u32 = 1;
    /// The live-timer map was full: the timer is not tracked as live.
    pub const LIVE_MAP_FULL: u32 = 2;
    /// A read of target memory failed (timer fields, goroutine id).
    pub const READ_FAULT: u32 = 3;
    /// An mmap/munmap/mremap call in flight could not be remembered between its entry and
    /// exit (too many threads in such calls at once): the call is not seen.
    pub const MMAP_PENDING_FULL: u32 = 4;
    /// The ring buffer to userspace was full: the mapping change is not seen.
    pub const MMAP_EVENT_LOST: u32 = 5;
    /// Too many threads inside cgo calls at once: an mmap from C lacks its Go frames.
    pub const CGO_CALLS_FULL: u32 = 6;
    /// A Go stack's walk stopped at a frame it could not read (its page was briefly unmapped
    /// by the kernel, e.g. while khugepaged collapsed it): the event is counted at the frames
    /// read so far.
    pub const STACK_TRUNCATED: u32 = 7;
    /// The map of live C heap blocks was full: an allocation is counted, but not tracked as
    /// live (its free is not seen either).
    pub const C_HEAP_BLOCKS_FULL: u32 = 8;
    /// Too many threads inside libc allocation calls at once: the call is not seen.
    pub const C_HEAP_CALLS_FULL: u32 = 9;
    /// The per-site C heap totals map was full: an allocation's bytes are not counted.
    pub const C_HEAP_SITES_FULL: u32 = 10;
    /// The map of goroutines created while recorded was full: a creation is counted, but its
    /// exit will count as that of a goroutine created before the attach.
    pub const GOROUTINE_MAP_FULL: u32 = 11;
    /// Number of drop reasons.
    pub const COUNT: u32 = 12;
}

/// Most hooks one target can have; sizes the `HOOKS` and `HOOK_HITS` arrays.
pub const MAX_HOOKS: u32 = 32;

/// Buckets of the fire-delay histogram: bucket `b` counts fires late by `[2^(b-1), 2^b)`
/// nanoseconds (bucket 0: on time).
pub const DELAY_BUCKETS: u32 = 64;

/// A value's location at the probed instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValueSource {
    /// One of [`source`].
    pub kind: u32,
    /// A [`reg`] slot or a stack offset in bytes.
    pub index: u32,
}

impl ValueSource {
    pub const NONE: Self = Self {
        kind: source::NONE,
        index: 0,
    };

    /// The probe's clock ([`source::MONOTONIC_NOW`]).
    pub const MONOTONIC_NOW: Self = Self {
        kind: source::MONOTONIC_NOW,
        index: 0,
    };

    pub const fn register(slot: u32) -> Self {
        Self {
            kind: source::REGISTER,
            index: slot,
        }
    }

    pub const fn stack(offset: u32) -> Self {
        Self {
            kind: source::STACK,
            index: offset,
        }
    }
}

/// What one hook reads and reports; userspace writes one per hook into the `HOOKS` array, the
/// uprobe's attach cookie is the index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookPlan {
    /// One of [`event`].
    pub event: u32,
    /// [`hook_flag`] bits.
    pub flags: u32,
    /// The `*runtime.timer`.
    pub timer: ValueSource,
    /// The new due time passed as an argument (modify-style hooks); NONE: read `timer.when`.
    pub when: ValueSource,
    /// The new period passed as an argument; NONE: read `timer.period`.
    pub period: ValueSource,
    /// The callback funcval passed as an argument (modify-style hooks), used when non-nil;
    /// otherwise the timer's `f` field is read.
    pub callback: ValueSource,
    /// The callback argument's data word passed as an argument; NONE: read `timer.arg`.
    pub arg_data: ValueSource,
    /// The runtime's `now` (fire hooks), compared with `when` for the fire delay.
    pub now: ValueSource,
    /// [`event::CALLBACK_BEGIN`]/[`event::CALLBACK_END`]: what tells the timer goroutines apart
    /// (Go <= 1.13: timerproc's `*timersBucket` argument, one goroutine per bucket).
    pub worker: ValueSource,
}

/// The goroutine hooks, indices into the `GOROUTINE_HOOKS` and `GOROUTINE_HITS` arrays.
pub mod goroutine_hook {
    /// A new goroutine, about to be made runnable: its `g` is known, nothing runs it yet.
    pub const CREATED: u32 = 0;
    /// A goroutine about to exit (`runtime.goexit1`).
    pub const EXITED: u32 = 1;
    /// Number of goroutine hooks.
    pub const COUNT: u32 = 2;
}

/// Where one goroutine hook finds the `*runtime.g` it is about (userspace writes one per hook).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoroutineHook {
    /// The new goroutine's `g` (creation), or the exiting one's.
    pub g: ValueSource,
    /// [`hook_flag`] bits: [`hook_flag::SKIP_IF_MORESTACK`], [`hook_flag::IN_BODY`].
    pub flags: u32,
    pub _pad: u32,
}

/// Offsets of the runtime structures the probes read, plus the target process. One per load,
/// set as a global before the programs are loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetConfig {
    /// Process (thread group) id in the root pid namespace; events of other processes are ignored.
    pub tgid: u32,
    pub timer_when: u32,
    pub timer_period: u32,
    pub timer_f: u32,
    /// Offset of `arg`'s data word (`arg` is an `any`: type word, then data word).
    pub timer_arg_data: u32,
    /// `runtime.g.goid`; 0 when the current goroutine is not at hand (Go <= 1.16 keeps `g` in
    /// thread-local storage, not in R14).
    pub g_goid: u32,
    /// Offset of the timer field that stays nil until the runtime first arms the timer, read
    /// by [`hook_flag::CREATE_IF_UNINITIALIZED`]: `f` in Go 1.23+ (set by the first modify),
    /// `tb` in Go <= 1.13 (set by the first addtimer; a Reset re-adds a timer that has one).
    pub timer_unarmed_marker: u32,
    /// Bytes from the start of a timer that hold every field above ([`Self::fields_end`]): the
    /// probes copy them in one read.
    pub timer_fields_end: u32,
    /// Runtime address of `time.goFunc`: for AfterFunc timers the user's closure is `*arg.data`.
    pub go_func_pc: u64,
    /// `runtime.g.gopc` (the `go` statement's return address), read at the exit of a goroutine
    /// created before the attach.
    pub g_gopc: u32,
    pub _pad: u32,
}

impl TargetConfig {
    /// End of the last timer field the probes read.
    pub fn fields_end(&self) -> u32 {
        [
            self.timer_when,
            self.timer_period,
            self.timer_f,
            self.timer_arg_data,
            self.timer_unarmed_marker,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 8
    }
}

/// Key of the per-site count map: one row per (event, place, callback).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SiteKey {
    /// One of [`event`].
    pub event: u32,
    /// Hook index that reported the event.
    pub hook: u32,
    /// Key of the user stack in the `STACKS` map (its content hash); [`NO_STACK`] when it
    /// could not be stored (see [`drop`]).
    pub stack: u64,
    /// Return address at `[RSP]` at the probe: the caller a frame-pointer unwind misses because
    /// the probed function has not pushed its frame yet. 0 when the stack is a fire-time stack.
    pub caller: u64,
    /// Code address of the timer's callback (`t.f.fn`), 0 when unknown (see
    /// [`site_flag::CALLBACK_UNREAD`]).
    pub callback: u64,
    /// For AfterFunc timers, code address of the user's closure; otherwise 0 (see
    /// [`site_flag::USER_CALLBACK_UNREAD`]).
    pub user_callback: u64,
    /// [`site_flag`] bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Value of the per-site count map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteValue {
    pub count: u64,
    /// Fire events: sum over fires of (now - when) in nanoseconds, for timers that fired late.
    pub delay_ns: u64,
}

/// Value of the live-timer map, keyed by the runtime timer address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveTimer {
    /// Where the timer was created (or first seen armed), with `event` = [`event::CREATED`].
    pub site: SiteKey,
    /// Absolute due time in the runtime's clock (CLOCK_MONOTONIC ns).
    pub when: i64,
    pub period: i64,
    /// Goroutine that created or armed it.
    pub goid: u64,
}

/// Value of the creation map (`CREATIONS`), keyed by the runtime timer address: where the
/// probes saw the timer created, so a pending timer read from the runtime's heaps (the same
/// `*runtime.timer` address) is counted at its creation stack. Kept in a least-recently-used map
/// that no stop or fire hook touches: stopped timers age out as new ones are created.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerCreation {
    /// As [`SiteKey::stack`].
    pub stack: u64,
    /// As [`SiteKey::caller`].
    pub caller: u64,
    /// The hook that saw the creation.
    pub hook: u32,
    /// [`site_flag`] bits of the creation's site (e.g. [`site_flag::STACK_SAMPLED_OUT`]).
    pub flags: u32,
}

/// One timer goroutine's callback time (Go <= 1.13), the value of `TIMER_WORKERS`, keyed by
/// [`HookPlan::worker`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerWorker {
    /// Nanoseconds spent inside timer callbacks.
    pub busy_ns: u64,
    /// Callbacks that returned.
    pub callbacks: u64,
    /// CLOCK_MONOTONIC when the running callback started; 0 when none runs.
    pub running_since: u64,
}

/// Memory-mapping system calls the probe reports ([`MmapEvent::op`]).
pub mod mmap_op {
    pub const MMAP: u32 = 0;
    pub const MUNMAP: u32 = 1;
    pub const MREMAP: u32 = 2;
    /// brk: `addr` is the program break after the call (the kernel returns the old break when
    /// it refuses, so a failed call changes nothing).
    pub const BRK: u32 = 3;
}

/// The libc allocation functions the C heap probes hook ([`CHeapSite::function`], and the
/// uprobe's attach cookie).
pub mod c_heap_fn {
    /// `malloc(size)`.
    pub const MALLOC: u32 = 0;
    /// `calloc(nmemb, size)`.
    pub const CALLOC: u32 = 1;
    /// `realloc(ptr, size)`: frees `ptr` (unless it fails) and allocates `size`.
    pub const REALLOC: u32 = 2;
    /// `free(ptr)`.
    pub const FREE: u32 = 3;
    /// `posix_memalign(&ptr, alignment, size)`: the block is written to `*memptr`, 0 returned.
    pub const POSIX_MEMALIGN: u32 = 4;
    /// `aligned_alloc(alignment, size)` and `memalign(alignment, size)`.
    pub const ALIGNED_ALLOC: u32 = 5;
    /// Number of functions.
    pub const COUNT: u32 = 6;
}

/// Where a C heap block was allocated: the libc function, the C code that called it, and the
/// Go stack that called into C. Key of the per-site totals; part of each live block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CHeapSite {
    /// The probed instruction in the libc function (the leaf frame).
    pub ip: u64,
    /// Return address at `[RSP]` at the probe: the C code that called the allocator (which has
    /// no frame pointers to walk).
    pub caller: u64,
    /// The Go stack at the `runtime.cgocall` that entered C (a `STACKS` key); [`NO_STACK`]
    /// when the thread is not in a cgo call.
    pub cgo_stack: u64,
    /// Outside a cgo call: the frame-pointer walk from the allocator (a `STACKS` key), else
    /// [`NO_STACK`].
    pub stack: u64,
    /// One of [`c_heap_fn`].
    pub function: u32,
    pub _pad: u32,
}

/// Per-site allocation totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CHeapTotals {
    pub allocs: u64,
    pub bytes: u64,
}

/// A live C heap block, keyed by its address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CHeapBlock {
    pub size: u64,
    pub site: CHeapSite,
}

/// A libc allocation call between its entry and its return (uretprobe), by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CHeapCall {
    /// The block being allocated (its size and site); for realloc, the new one.
    pub block: CHeapBlock,
    /// realloc: the block it frees, taken out of the live map at entry so a thread that gets
    /// the same address meanwhile cannot lose its own; put back when realloc fails.
    pub old: CHeapBlock,
    /// realloc: the old address (0: none); posix_memalign: where the block is written.
    pub arg: u64,
    /// realloc: 1 when `old` was live.
    pub old_live: u32,
    /// Calls to hooked functions nested inside this one on the thread (glibc's realloc calls
    /// malloc or free, posix_memalign calls malloc): their returns complete nothing.
    pub depth: u32,
}

/// One successful mmap, munmap or mremap of the target, sent to userspace through a ring
/// buffer (userspace keeps the interval map: unmaps split mappings, remaps move them). The
/// entry tracepoint fills in the arguments; the exit tracepoint the result.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmapEvent {
    /// One of [`mmap_op`].
    pub op: u32,
    pub tid: u32,
    /// User stack at the call, as [`SiteKey::stack`].
    pub stack: u64,
    /// When the call was made from C code called by Go (cgo): the Go stack at the
    /// `runtime.cgocall` that entered C, which frame-pointer unwinding from inside C cannot
    /// reach. [`NO_STACK`] otherwise.
    pub cgo_stack: u64,
    /// mmap: the address returned; munmap: the address unmapped; mremap: the old address.
    pub addr: u64,
    /// mmap, munmap: the length; mremap: the old length.
    pub len: u64,
    /// mremap: the address returned.
    pub new_addr: u64,
    /// mremap: the new length.
    pub new_len: u64,
    pub prot: u32,
    pub flags: u32,
    /// File descriptor (-1 for anonymous mappings).
    pub fd: i32,
    pub _pad: u32,
}

/// Frames of one user stack, at most: the kernel's `perf_event_max_stack` default.
pub const MAX_STACK_FRAMES: usize = 127;

/// A user stack, leaf first: the probed instruction, then each frame's return address (as the
/// kernel's frame-pointer unwinder reports them).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UserStack {
    /// Frames in use.
    pub len: u32,
    pub _pad: u32,
    pub frames: [u64; MAX_STACK_FRAMES],
}

/// A stack key that names no stack (content hashes are never 0).
pub const NO_STACK: u64 = 0;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)] structs of integers with no implicit padding.
    unsafe impl aya::Pod for HookPlan {}
    unsafe impl aya::Pod for TargetConfig {}
    unsafe impl aya::Pod for SiteKey {}
    unsafe impl aya::Pod for SiteValue {}
    unsafe impl aya::Pod for LiveTimer {}
    unsafe impl aya::Pod for TimerWorker {}
    unsafe impl aya::Pod for TimerCreation {}
    unsafe impl aya::Pod for MmapEvent {}
    unsafe impl aya::Pod for UserStack {}
    unsafe impl aya::Pod for CHeapSite {}
    unsafe impl aya::Pod for CHeapTotals {}
    unsafe impl aya::Pod for CHeapBlock {}
    unsafe impl aya::Pod for CHeapCall {}
    unsafe impl aya::Pod for GoroutineHook {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ValueSource>(), 8);
        assert_eq!(size_of::<HookPlan>(), 8 + 7 * 8);
        assert_eq!(size_of::<TargetConfig>(), 8 * 4 + 8 + 8);
        assert_eq!(size_of::<GoroutineHook>(), 16);
        assert_eq!(size_of::<TimerWorker>(), 24);
        assert_eq!(size_of::<TimerCreation>(), 24);
        assert_eq!(size_of::<SiteKey>(), 4 + 4 + 8 * 4 + 4 + 4);
        assert_eq!(size_of::<SiteValue>(), 16);
        assert_eq!(size_of::<LiveTimer>(), size_of::<SiteKey>() + 24);
        assert_eq!(size_of::<MmapEvent>(), 8 + 8 * 2 + 8 * 4 + 4 * 4);
        assert_eq!(size_of::<UserStack>(), 8 + 8 * MAX_STACK_FRAMES);
        assert_eq!(size_of::<CHeapSite>(), 8 * 4 + 8);
        assert_eq!(size_of::<CHeapBlock>(), 8 + size_of::<CHeapSite>());
        assert_eq!(size_of::<CHeapCall>(), 2 * size_of::<CHeapBlock>() + 16);
    }
}
