//! Maps shared by the programs. Sizes here are defaults; userspace resizes the big ones
//! (`SITES`, `LIVE`, `STACKS`) before loading.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use probe_common::{
    CHeapBlock, CHeapCall, CHeapSite, CHeapTotals, DELAY_BUCKETS, GoroutineHook, HookPlan,
    LiveTimer, MAX_HOOKS, MmapEvent, SiteKey, SiteValue, TargetConfig, TimerCreation, TimerWorker,
    drop, goroutine_hook,
};

/// Written by userspace before load (`EbpfLoader::set_global`); read with `config()`.
#[unsafe(no_mangle)]
static CONFIG: TargetConfig = TargetConfig {
    tgid: 0,
    timer_when: 0,
    timer_period: 0,
    timer_f: 0,
    timer_arg_data: 0,
    g_goid: 0,
    timer_unarmed_marker: 0,
    timer_fields_end: 0,
    go_func_pc: 0,
    g_gopc: 0,
    _pad: 0,
};

#[inline(always)]
pub fn config() -> TargetConfig {
    // Volatile: the value is patched into the object after compilation.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// Slot 0: 1 while the probes are armed. Uprobes attach and detach one at a time; counting
/// only between "all attached" and "about to detach" keeps create, stop and fire consistent
/// (no timer seen created whose stop went unseen).
#[map]
pub static ARMED: Array<u32> = Array::with_max_entries(1, 0);

/// The calling thread's id, when it belongs to the target process and the probes are armed.
#[inline(always)]
pub fn target_thread() -> Option<u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != config().tgid || ARMED.get(0).copied() != Some(1) {
        return None;
    }
    Some(pid_tgid as u32)
}

/// Per-hook read plans, indexed by the uprobe's attach cookie.
#[map]
pub static HOOKS: Array<HookPlan> = Array::with_max_entries(MAX_HOOKS, 0);

/// Probe hits per hook (includes hits later dropped), indexed like `HOOKS`.
#[map]
pub static HOOK_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_HOOKS, 0);

/// Per-hook stack sampling, indexed like `HOOKS`: 0 or 1 walks the stack at every hit, `n`
/// at one hit in `n` (set by userspace when the overhead budget is exceeded).
#[map]
pub static STACK_SAMPLING: Array<u32> = Array::with_max_entries(MAX_HOOKS, 0);

/// Hits whose stack walk was skipped by `STACK_SAMPLING`, per hook (their events are still
/// counted, at the immediate caller).
#[map]
pub static STACKS_SAMPLED_OUT: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_HOOKS, 0);

/// Timer fires by lateness, log2 buckets (`probe_common::DELAY_BUCKETS`).
#[map]
pub static DELAY_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(DELAY_BUCKETS, 0);

/// Lost events and stacks per reason (`probe_common::drop`).
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop::COUNT, 0);

/// Event counts per site. Per-CPU: the BPF target has no atomic add in `core`, and per-CPU
/// values need none; userspace sums the CPUs.
#[map]
pub static SITES: PerCpuHashMap<SiteKey, SiteValue> = PerCpuHashMap::with_max_entries(16384, 0);

/// Timers armed and not yet stopped or fired (one-shot), by runtime timer address.
#[map]
pub static LIVE: HashMap<u64, LiveTimer> = HashMap::with_max_entries(65536, 0);

/// Where each timer seen created was created, by runtime timer address, in every tier that
/// probes creation. Least-recently-used: no stop or fire hook removes an entry (that would put
/// work on their hot path), so the oldest creations make room for new ones; userspace counts
/// the evictions from `CREATIONS_ADDED` and the entries left.
#[map]
pub static CREATIONS: LruHashMap<u64, TimerCreation> = LruHashMap::with_max_entries(65536, 0);

/// Slot 0: keys added to `CREATIONS` (a creation at an address already there replaces it).
#[map]
pub static CREATIONS_ADDED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Go <= 1.13: callback time per timer goroutine, keyed by `HookPlan::worker` (at most one
/// goroutine per timer bucket, 64 buckets).
#[map]
pub static TIMER_WORKERS: HashMap<u64, TimerWorker> = HashMap::with_max_entries(256, 0);

/// mmap-family calls between their entry and exit tracepoints, by thread id.
#[map]
pub static MMAP_PENDING: HashMap<u32, MmapEvent> = HashMap::with_max_entries(4096, 0);

/// Threads inside a cgo call: the Go stack (its `STACKS` key) at `runtime.cgocall`, by thread
/// id.
#[map]
pub static CGO_CALLS: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);

/// C heap blocks allocated while the probes were armed and not freed since, by address.
/// Not preallocated: kernel memory grows with the blocks actually live (userspace sets the
/// limit).
#[map]
pub static C_HEAP_BLOCKS: HashMap<u64, CHeapBlock> =
    HashMap::with_max_entries(262_144, BPF_F_NO_PREALLOC);

/// libc allocation calls between entry and return, by thread id.
#[map]
pub static C_HEAP_CALLS: HashMap<u32, CHeapCall> = HashMap::with_max_entries(4096, 0);

/// Allocation totals per C heap site.
#[map]
pub static C_HEAP_SITES: PerCpuHashMap<CHeapSite, CHeapTotals> =
    PerCpuHashMap::with_max_entries(16384, 0);

/// The goroutine hooks' plans, indexed by `probe_common::goroutine_hook`.
#[map]
pub static GOROUTINE_HOOKS: Array<GoroutineHook> =
    Array::with_max_entries(goroutine_hook::COUNT, 0);

/// Goroutine hook hits, indexed like `GOROUTINE_HOOKS`.
#[map]
pub static GOROUTINE_HITS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(goroutine_hook::COUNT, 0);

/// Goroutines created while the probes were armed and not exited since: their creating stack
/// (a `STACKS` key), by `g` address (a `g` is reused only after its goroutine exited).
/// Preallocated (userspace sets the size): a creation or exit, on the hot path of a server
/// that starts a goroutine per request, calls no allocator.
#[map]
pub static GOROUTINES: HashMap<u64, u64> = HashMap::with_max_entries(65_536, 0);

/// Completed mmap-family calls, for userspace's interval map.
#[map]
pub static MMAP_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[inline(always)]
pub fn bump(array: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = array.get_ptr_mut(index) {
        // Per-CPU slot, and BPF programs are not re-entered on one CPU: no atomics needed.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn count_drop(reason: u32) {
    bump(&DROPS, reason);
}

/// This CPU's value of `key`, inserted as zero when absent; `None` (counted as `full`) when
/// the map has no room.
#[inline(always)]
pub fn entry<K, V: Default>(map: &PerCpuHashMap<K, V>, key: &K, full: u32) -> Option<*mut V> {
    if let Some(value) = map.get_ptr_mut(key) {
        return Some(value);
    }
    // Another CPU may insert the same key meanwhile: NOEXIST keeps its values.
    let _ = map.insert(key, V::default(), BPF_NOEXIST as u64);
    let value = map.get_ptr_mut(key);
    if value.is_none() {
        count_drop(full);
    }
    value
}
