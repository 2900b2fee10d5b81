//! Where the runtime keeps its goroutines (`runtime.g`, `runtime.gobuf`), what their wait
//! reasons are called, and where its memory statistics live (`runtime.gcController`,
//! `runtime.memstats`): from the binary's DWARF when it has every member, else per-release tables
//! (docs/go-runtime.md, "Goroutines in memory" and "Memory statistics in memory").

use super::{LayoutSource, UnsupportedGo};
use crate::{GoBinary, GoVersion};

/// Members of `runtime.g` a goroutine reader needs, as offsets from the start of the `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoroutineLayout {
    /// `stack.lo`, `stack.hi`: the bounds of the goroutine's stack (`g.stack` is its first
    /// member in every release).
    pub stack_lo: u32,
    pub stack_hi: u32,
    /// `atomicstatus` (uint32).
    pub status: u32,
    pub goid: u32,
    /// `waitsince` (int64, nanotime; set by GC stack scans only).
    pub waitsince: u32,
    /// `waitreason` (uint8), an index into [`Self::wait_reasons`].
    pub waitreason: u32,
    /// `parentGoid` (Go 1.21+).
    pub parent_goid: Option<u32>,
    /// `gopc`: the return PC of the `go` statement.
    pub gopc: u32,
    /// `startpc`: the entry of the goroutine's function.
    pub startpc: u32,
    /// `sched.sp`, `sched.pc`, `sched.bp` (`g.sched` is at 56; `gobuf.ret` went away in 1.25).
    pub sched_sp: u32,
    pub sched_pc: u32,
    pub sched_bp: u32,
    pub syscall_sp: u32,
    pub syscall_pc: u32,
    /// `syscallbp` (Go 1.23+; before, a goroutine in a syscall has no frame pointer saved).
    pub syscall_bp: Option<u32>,
    /// `runtime.waitReasonStrings`, by `waitreason` value.
    pub wait_reasons: &'static [&'static str],
    pub source: LayoutSource,
}

impl GoroutineLayout {
    /// Bytes of a `g` that cover every member read (one read per goroutine).
    pub fn read_len(&self) -> u32 {
        [
            self.stack_lo + 8,
            self.stack_hi + 8,
            self.status + 4,
            self.goid + 8,
            self.waitsince + 8,
            self.waitreason + 1,
            self.parent_goid.map_or(0, |o| o + 8),
            self.gopc + 8,
            self.startpc + 8,
            self.sched_sp + 8,
            self.sched_pc + 8,
            self.sched_bp + 8,
            self.syscall_sp + 8,
            self.syscall_pc + 8,
            self.syscall_bp.map_or(0, |o| o + 8),
        ]
        .into_iter()
        .max()
        .expect("not empty")
    }

    /// The table's layout for a Go release.
    pub fn of_version(version: GoVersion) -> Result<Self, UnsupportedGo> {
        let wait_reasons = lookup(WAIT_REASONS, version)?;
        let (status, parent_goid, gopc, startpc, syscall_sp, syscall_bp, sched_bp) =
            lookup(G_TABLE, version)?;
        Ok(Self {
            stack_lo: 0,
            stack_hi: 8,
            status,
            // goid, waitsince and waitreason sit at +8, +24, +32 in every release.
            goid: status + 8,
            waitsince: status + 24,
            waitreason: status + 32,
            parent_goid,
            gopc,
            startpc,
            sched_sp: G_SCHED,
            sched_pc: G_SCHED + 8,
            sched_bp,
            syscall_sp,
            syscall_pc: syscall_sp + 8,
            syscall_bp,
            wait_reasons,
            source: LayoutSource::Table,
        })
    }

    /// The layout of one binary: its DWARF's when that has every member, else the table's.
    pub fn of_binary(binary: &GoBinary) -> Result<Self, UnsupportedGo> {
        let table = Self::of_version(binary.version())?;
        Ok(binary
            .dwarf()
            .and_then(|dwarf| {
                let offsets =
                    dwarf.struct_offsets(&["runtime.g", "runtime.gobuf", "runtime.stack"]);
                let g = offsets.get("runtime.g")?;
                let gobuf = offsets.get("runtime.gobuf")?;
                let bounds = offsets.get("runtime.stack")?;
                let member = |name: &str| g.get(name).and_then(|&o| u32::try_from(o).ok());
                let sched = member("sched")?;
                let in_sched = |name: &str| {
                    gobuf
                        .get(name)
                        .and_then(|&o| u32::try_from(o).ok())
                        .map(|o| sched + o)
                };
                let optional = |present: Option<u32>, name| match present {
                    Some(_) => member(name).map(Some),
                    None => Some(None),
                };
                let stack = member("stack")?;
                let in_stack = |name: &str| {
                    bounds
                        .get(name)
                        .and_then(|&o| u32::try_from(o).ok())
                        .map(|o| stack + o)
                };
                Some(Self {
                    stack_lo: in_stack("lo")?,
                    stack_hi: in_stack("hi")?,
                    status: member("atomicstatus")?,
                    goid: member("goid")?,
                    waitsince: member("waitsince")?,
                    waitreason: member("waitreason")?,
                    parent_goid: optional(table.parent_goid, "parentGoid")?,
                    gopc: member("gopc")?,
                    startpc: member("startpc")?,
                    sched_sp: in_sched("sp")?,
                    sched_pc: in_sched("pc")?,
                    sched_bp: in_sched("bp")?,
                    syscall_sp: member("syscallsp")?,
                    syscall_pc: member("syscallpc")?,
                    syscall_bp: optional(table.syscall_bp, "syscallbp")?,
                    wait_reasons: table.wait_reasons,
                    source: LayoutSource::Dwarf,
                })
            })
            .unwrap_or(table))
    }

    /// Go's name of a wait reason (`select`, `chan receive`, ...), as goroutine dumps print it.
    pub fn wait_reason(&self, value: u8) -> Option<&'static str> {
        self.wait_reasons
            .get(usize::from(value))
            .copied()
            .filter(|s| !s.is_empty())
    }
}

/// `g.sched` is at 56 in every release (docs/go-runtime.md).
const G_SCHED: u32 = 56;

/// `runtime.g`: (atomicstatus, parentGoid, gopc, startpc, syscallsp, syscallbp, sched.bp).
type GRow = (u32, Option<u32>, u32, u32, u32, Option<u32>, u32);

/// docs/go-runtime.md, "Goroutines in memory".
const G_TABLE: &[((u32, u32), GRow)] = &[
    ((12, 16), (144, None, 280, 296, 112, None, 104)),
    ((17, 20), (144, None, 296, 312, 112, None, 104)),
    ((21, 22), (144, Some(272), 280, 296, 112, None, 104)),
    ((23, 24), (152, Some(280), 288, 304, 112, Some(128), 104)),
    ((25, 25), (144, Some(272), 280, 296, 104, Some(120), 96)),
    ((26, 27), (144, Some(280), 288, 304, 104, Some(120), 96)),
];

fn lookup<T: Copy>(table: &[((u32, u32), T)], version: GoVersion) -> Result<T, UnsupportedGo> {
    table
        .iter()
        .find(|((first, last), _)| version.major == 1 && (*first..=*last).contains(&version.minor))
        .map(|(_, row)| *row)
        .ok_or(UnsupportedGo { version })
}

/// Goroutine states (`atomicstatus` without the `_Gscan` bit 0x1000), as Go's dumps name the
/// ones that are not waiting.
pub mod status {
    pub const SCAN_BIT: u32 = 0x1000;
    pub const IDLE: u32 = 0;
    pub const RUNNABLE: u32 = 1;
    pub const RUNNING: u32 = 2;
    pub const SYSCALL: u32 = 3;
    pub const WAITING: u32 = 4;
    pub const DEAD: u32 = 6;
    /// The stack is being moved: its fields are not to be trusted.
    pub const COPYSTACK: u32 = 8;
    /// Suspended for preemption (1.14+): runnable.
    pub const PREEMPTED: u32 = 9;
    /// Found by the goroutine-leak detector (1.26+): still blocked.
    pub const LEAKED: u32 = 10;
    /// A dead g kept for cgo callbacks on an extra M (1.26+).
    pub const DEAD_EXTRA: u32 = 11;

    /// Whether a goroutine in state `s` exists for Go's goroutine profile.
    pub fn is_live(s: u32) -> bool {
        !matches!(s, IDLE | DEAD | DEAD_EXTRA | 5 | 7) && s <= DEAD_EXTRA
    }

    /// The word goroutine dumps put in brackets for a goroutine that is not waiting.
    pub fn name(s: u32) -> &'static str {
        match s {
            RUNNABLE | PREEMPTED => "runnable",
            RUNNING => "running",
            SYSCALL => "syscall",
            WAITING | LEAKED => "waiting",
            COPYSTACK => "copystack",
            _ => "unknown",
        }
    }
}

#[rustfmt::skip]
const WAIT_1_12: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "chan receive", "chan send",
    "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "timer goroutine (idle)", "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)",
];
#[rustfmt::skip]
const WAIT_1_13: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "timer goroutine (idle)", "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)",
];
#[rustfmt::skip]
const WAIT_1_14: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "timer goroutine (idle)", "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)",
    "preempted",
];
#[rustfmt::skip]
const WAIT_1_15: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "timer goroutine (idle)", "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)",
    "preempted", "debug call",
];
#[rustfmt::skip]
const WAIT_1_20: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "sync.Mutex.Lock", "sync.RWMutex.RLock", "sync.RWMutex.Lock", "trace reader (blocked)",
    "wait for GC cycle", "GC worker (idle)", "GC worker (active)", "preempted", "debug call",
    "GC mark termination", "stopping the world",
];
#[rustfmt::skip]
const WAIT_1_22: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "sync.Mutex.Lock", "sync.RWMutex.RLock", "sync.RWMutex.Lock", "trace reader (blocked)",
    "wait for GC cycle", "GC worker (idle)", "GC worker (active)", "preempted", "debug call",
    "GC mark termination", "stopping the world", "flushing proc caches",
    "trace goroutine status", "trace proc status", "page trace flush", "coroutine",
];
#[rustfmt::skip]
const WAIT_1_23: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "sync.Mutex.Lock", "sync.RWMutex.RLock", "sync.RWMutex.Lock", "trace reader (blocked)",
    "wait for GC cycle", "GC worker (idle)", "GC worker (active)", "preempted", "debug call",
    "GC mark termination", "stopping the world", "flushing proc caches",
    "trace goroutine status", "trace proc status", "page trace flush", "coroutine",
    "GC weak to strong wait",
];
#[rustfmt::skip]
const WAIT_1_24: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "semacquire", "sleep", "sync.Cond.Wait",
    "sync.Mutex.Lock", "sync.RWMutex.RLock", "sync.RWMutex.Lock", "sync.WaitGroup.Wait",
    "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)", "GC worker (active)",
    "preempted", "debug call", "GC mark termination", "stopping the world",
    "flushing proc caches", "trace goroutine status", "trace proc status", "page trace flush",
    "coroutine", "GC weak to strong wait", "synctest.Run", "synctest.Wait",
    "chan receive (synctest)", "chan send (synctest)", "select (synctest)",
];
#[rustfmt::skip]
const WAIT_1_25: &[&str] = &[
    "", "GC assist marking", "IO wait", "chan receive (nil chan)", "chan send (nil chan)",
    "dumping heap", "garbage collection", "garbage collection scan", "panicwait", "select",
    "select (no cases)", "GC assist wait", "GC sweep wait", "GC scavenge wait", "chan receive",
    "chan send", "finalizer wait", "force gc (idle)", "GOMAXPROCS updater (idle)", "semacquire",
    "sleep", "sync.Cond.Wait", "sync.Mutex.Lock", "sync.RWMutex.RLock", "sync.RWMutex.Lock",
    "sync.WaitGroup.Wait", "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)",
    "GC worker (active)", "preempted", "debug call", "GC mark termination",
    "stopping the world", "flushing proc caches", "trace goroutine status", "trace proc status",
    "page trace flush", "coroutine", "GC weak to strong wait", "synctest.Run", "synctest.Wait",
    "chan receive (durable)", "chan send (durable)", "select (durable)",
    "sync.WaitGroup.Wait (durable)", "cleanup wait",
];
// 1.26 reordered the whole enum.
#[rustfmt::skip]
const WAIT_1_26: &[&str] = &[
    "", "GC assist marking", "IO wait", "dumping heap", "garbage collection",
    "garbage collection scan", "panicwait", "GC assist wait", "GC sweep wait",
    "GC scavenge wait", "finalizer wait", "force gc (idle)", "GOMAXPROCS updater (idle)",
    "semacquire", "sleep", "chan receive (nil chan)", "chan send (nil chan)",
    "select (no cases)", "select", "chan receive", "chan send", "sync.Cond.Wait",
    "sync.Mutex.Lock", "sync.RWMutex.RLock", "sync.RWMutex.Lock", "sync.WaitGroup.Wait",
    "trace reader (blocked)", "wait for GC cycle", "GC worker (idle)", "GC worker (active)",
    "preempted", "debug call", "GC mark termination", "stopping the world",
    "flushing proc caches", "trace goroutine status", "trace proc status", "page trace flush",
    "coroutine", "GC weak to strong wait", "synctest.Run", "synctest.Wait",
    "chan receive (durable)", "chan send (durable)", "select (durable)",
    "sync.WaitGroup.Wait (durable)", "cleanup wait",
];

/// docs/go-runtime.md, "Wait reasons".
const WAIT_REASONS: &[((u32, u32), &[&str])] = &[
    ((12, 12), WAIT_1_12),
    ((13, 13), WAIT_1_13),
    ((14, 14), WAIT_1_14),
    ((15, 19), WAIT_1_15),
    ((20, 21), WAIT_1_20),
    ((22, 22), WAIT_1_22),
    ((23, 23), WAIT_1_23),
    ((24, 24), WAIT_1_24),
    ((25, 25), WAIT_1_25),
    ((26, 27), WAIT_1_26),
];

/// Where the figures of `runtime.ReadMemStats` live without stopping the world (Go 1.19+; the
/// derivations are in docs/go-runtime.md, "Memory statistics in memory").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStatsLayout {
    /// Members of `runtime.gcControllerState` (global `runtime.gcController`), all uint64.
    pub heap_in_use: u32,
    pub heap_released: u32,
    pub heap_free: u32,
    pub total_alloc: u32,
    pub total_free: u32,
    /// Members of `runtime.mstats` (global `runtime.memstats`), all uint64.
    pub stacks_sys: u32,
    pub mspan_sys: u32,
    pub mcache_sys: u32,
    pub buckhash_sys: u32,
    pub gc_misc_sys: u32,
    pub other_sys: u32,
    /// `memstats.numgc` (uint32).
    pub numgc: u32,
    /// `memstats.heapStats`, a `consistentHeapStats{stats [3]heapStatsDelta; gen}`.
    pub heap_stats: u32,
    /// Size of one `heapStatsDelta`.
    pub delta_size: u32,
    /// Members of `heapStatsDelta` (int64).
    pub in_stacks: u32,
    pub in_work_bufs: u32,
    /// `inPtrScalarBits`, counted in `Sys` (1.19-1.24).
    pub in_ptr_scalar_bits: Option<u32>,
    pub source: LayoutSource,
}

/// (gcController.heapInUse, memstats.stacks_sys, memstats.numgc, heapStatsDelta size,
/// inPtrScalarBits).
type MemStatsRow = (u32, u32, u32, u32, Option<u32>);

/// docs/go-runtime.md, "Memory statistics in memory". `gcController`: heapInUse, heapReleased,
/// heapFree, totalAlloc, totalFree are consecutive words; `memstats`: stacks_sys, mspan_sys,
/// mcache_sys, buckhash_sys, gcMiscSys, other_sys too; `heapStats` is at 0.
const MEMSTATS_TABLE: &[((u32, u32), MemStatsRow)] = &[
    ((19, 19), (304, 3544, 7704, 1176, Some(40))),
    ((20, 20), (248, 3544, 7704, 1176, Some(40))),
    ((21, 24), (272, 3544, 7704, 1176, Some(40))),
    ((25, 27), (272, 3520, 7680, 1168, None)),
];

impl MemStatsLayout {
    /// The table's layout for a Go release; releases before 1.19 keep these figures elsewhere
    /// (`memstats` only), which timerscope does not read.
    pub fn of_version(version: GoVersion) -> Result<Self, UnsupportedGo> {
        let (gc, sys, numgc, delta_size, in_ptr_scalar_bits) = lookup(MEMSTATS_TABLE, version)?;
        Ok(Self {
            heap_in_use: gc,
            heap_released: gc + 8,
            heap_free: gc + 16,
            total_alloc: gc + 24,
            total_free: gc + 32,
            stacks_sys: sys,
            mspan_sys: sys + 8,
            mcache_sys: sys + 16,
            buckhash_sys: sys + 24,
            gc_misc_sys: sys + 32,
            other_sys: sys + 40,
            numgc,
            heap_stats: 0,
            delta_size,
            in_stacks: 24,
            in_work_bufs: 32,
            in_ptr_scalar_bits,
            source: LayoutSource::Table,
        })
    }

    /// The layout of one binary: its DWARF's when that has every member, else the table's.
    pub fn of_binary(binary: &GoBinary) -> Result<Self, UnsupportedGo> {
        let table = Self::of_version(binary.version())?;
        Ok(binary
            .dwarf()
            .and_then(|dwarf| {
                let offsets = dwarf.struct_offsets(&[
                    "runtime.gcControllerState",
                    "runtime.mstats",
                    "runtime.consistentHeapStats",
                    "runtime.heapStatsDelta",
                ]);
                let member = |strukt: &str, name: &str| {
                    offsets
                        .get(strukt)?
                        .get(name)
                        .and_then(|&o| u32::try_from(o).ok())
                };
                let gc = |name| member("runtime.gcControllerState", name);
                let stats = |name| member("runtime.mstats", name);
                let delta = |name| member("runtime.heapStatsDelta", name);
                let consistent = |name| member("runtime.consistentHeapStats", name);
                let stats_array = consistent("stats")?;
                let delta_size = (consistent("gen")? - stats_array) / 3;
                Some(Self {
                    heap_in_use: gc("heapInUse")?,
                    heap_released: gc("heapReleased")?,
                    heap_free: gc("heapFree")?,
                    total_alloc: gc("totalAlloc")?,
                    total_free: gc("totalFree")?,
                    stacks_sys: stats("stacks_sys")?,
                    mspan_sys: stats("mspan_sys")?,
                    mcache_sys: stats("mcache_sys")?,
                    buckhash_sys: stats("buckhash_sys")?,
                    gc_misc_sys: stats("gcMiscSys")?,
                    other_sys: stats("other_sys")?,
                    numgc: stats("numgc")?,
                    heap_stats: stats("heapStats")? + stats_array,
                    delta_size,
                    in_stacks: delta("inStacks")?,
                    in_work_bufs: delta("inWorkBufs")?,
                    in_ptr_scalar_bits: match table.in_ptr_scalar_bits {
                        Some(_) => Some(delta("inPtrScalarBits")?),
                        None => None,
                    },
                    source: LayoutSource::Dwarf,
                })
            })
            .unwrap_or(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_has_one_row_and_old_memstats_are_refused() {
        for minor in 12..=27 {
            let version = GoVersion::new(1, minor, 0);
            let g = GoroutineLayout::of_version(version).unwrap();
            assert_eq!(g.parent_goid.is_some(), minor >= 21, "1.{minor}");
            assert_eq!(g.syscall_bp.is_some(), minor >= 23, "1.{minor}");
            assert!(g.read_len() < 512, "1.{minor}");
            assert_eq!(MemStatsLayout::of_version(version).is_ok(), minor >= 19);
        }
        assert!(GoroutineLayout::of_version(GoVersion::new(1, 28, 0)).is_err());
    }

    #[test]
    fn wait_reasons_follow_each_releases_order() {
        let reason = |minor, value| {
            GoroutineLayout::of_version(GoVersion::new(1, minor, 0))
                .unwrap()
                .wait_reason(value)
        };
        assert_eq!(reason(19, 9), Some("select"));
        assert_eq!(reason(25, 9), Some("select"));
        // 1.26 reordered the enum.
        assert_eq!(reason(26, 18), Some("select"));
        assert_eq!(reason(27, 14), Some("sleep"));
        assert_eq!(reason(19, 21), Some("timer goroutine (idle)"));
        assert_eq!(reason(21, 21), Some("sync.Mutex.Lock"));
        assert_eq!(reason(21, 0), None);
        assert_eq!(reason(21, 200), None);
        for (_, table) in WAIT_REASONS {
            assert_eq!(table[0], "");
            assert!(table.contains(&"select") && table.contains(&"chan receive"));
        }
    }
}
