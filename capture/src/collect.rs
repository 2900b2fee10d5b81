//! Stage 3, collect: read the kernel maps into a [`Snapshot`]. Aggregation already happened in
//! the kernel; this only sums per-CPU values and fetches the stacks the sites refer to.

use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
};
use probe_common::{
    CHeapBlock, CHeapSite, CHeapTotals, DELAY_BUCKETS, LiveTimer, MmapEvent, NO_STACK, SiteKey,
    SiteValue, TimerCreation, TimerWorker, UserStack, drop, site_flag,
};

use pprof::vocabulary::CommentKey;

use crate::{batch, goroutines::GoroutineRead, mappings::LiveMappings, pending::PendingRead};

#[derive(Debug, thiserror::Error)]
#[error("reading eBPF map {name}")]
pub struct CollectError {
    name: &'static str,
    source: aya::maps::MapError,
}

/// Everything the probes gathered so far.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub sites: Vec<(SiteKey, SiteValue)>,
    /// Live timers by runtime timer address.
    pub live: Vec<(u64, LiveTimer)>,
    /// Live mappings and per-origin mmap totals.
    pub mappings: LiveMappings,
    /// User stacks by key, leaf first, as runtime addresses.
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Probe hits per hook index.
    pub hook_hits: Vec<u64>,
    /// Hits whose stack walk was sampled out, per hook index (`watch --max-overhead`).
    pub stacks_sampled_out: Vec<u64>,
    /// Losses per `probe_common::drop` reason.
    pub drops: [u64; drop::COUNT as usize],
    /// Timer fires by lateness: bucket `b` counts delays in `[2^(b-1), 2^b)` ns.
    pub fire_delays: Vec<u64>,
    /// Go <= 1.13: callback time of each timer goroutine (`runtime.timerproc`) seen running a
    /// callback, by its timer bucket's address.
    pub timer_workers: Vec<(u64, TimerWorker)>,
    pub c_heap: CHeap,
    /// The pending timers read from the runtime's heaps, when a read was asked for.
    pub pending: PendingRead,
    /// The goroutines read from the runtime, when a read was asked for.
    pub goroutines: GoroutineRead,
    /// Where the creation hooks saw the pending timers created, by timer address (filled with
    /// `pending`, by [`join_creations`]).
    pub creations: HashMap<u64, TimerCreation>,
    /// Creations the creation map evicted to make room for newer ones, so far.
    pub creations_evicted: u64,
}

/// What the C heap probes saw, by allocation site.
#[derive(Clone, Debug, Default)]
pub struct CHeap {
    /// Allocations and their bytes.
    pub allocated: HashMap<CHeapSite, CHeapTotals>,
    /// Blocks allocated while the probes ran and not freed since: their count and bytes.
    pub live: HashMap<CHeapSite, CHeapTotals>,
}

impl CHeap {
    /// Live bytes over every site.
    pub fn live_bytes(&self) -> u64 {
        self.live.values().map(|t| t.bytes).sum()
    }

    fn since(&self, earlier: &CHeap) -> CHeap {
        let allocated = self
            .allocated
            .iter()
            .map(|(site, now)| {
                let then = earlier.allocated.get(site).copied().unwrap_or_default();
                let delta = CHeapTotals {
                    allocs: now.allocs - then.allocs,
                    bytes: now.bytes - then.bytes,
                };
                (*site, delta)
            })
            .filter(|(_, delta)| delta.allocs > 0)
            .collect();
        CHeap {
            allocated,
            live: self.live.clone(),
        }
    }

    fn stacks(&self) -> impl Iterator<Item = u64> + '_ {
        self.allocated
            .keys()
            .chain(self.live.keys())
            .flat_map(|site| [site.stack, site.cgo_stack])
    }
}

impl Snapshot {
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn total_events(&self) -> u64 {
        self.hook_hits.iter().sum()
    }

    /// Profile comments on Go <= 1.13's timer goroutines, none on other releases:
    /// `timerproc_goroutines` (that ran a callback while recorded), `timerproc_callbacks`,
    /// `timerproc_busy_ns` (total time inside callbacks) and `timerproc_busy_ns_each` (per
    /// goroutine, busiest first).
    pub fn timer_worker_comments(&self) -> Vec<String> {
        let mut busy: Vec<u64> = self
            .timer_workers
            .iter()
            .filter(|(_, w)| w.callbacks > 0)
            .map(|(_, w)| w.busy_ns)
            .collect();
        if busy.is_empty() {
            return Vec::new();
        }
        busy.sort_unstable_by(|a, b| b.cmp(a));
        let callbacks: u64 = self.timer_workers.iter().map(|(_, w)| w.callbacks).sum();
        let each: Vec<String> = busy.iter().map(u64::to_string).collect();
        vec![
            CommentKey::TimerprocGoroutines.comment(busy.len()),
            CommentKey::TimerprocCallbacks.comment(callbacks),
            CommentKey::TimerprocBusyNs.comment(busy.iter().sum::<u64>()),
            CommentKey::TimerprocBusyNsEach.comment(each.join(",")),
        ]
    }

    /// What happened since `earlier` (a snapshot of the same probes): counts become the
    /// difference, while live timers and live mappings stay as they are now.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let before: HashMap<SiteKey, SiteValue> = earlier.sites.iter().copied().collect();
        let sites = self
            .sites
            .iter()
            .map(|(key, now)| {
                let then = before.get(key).copied().unwrap_or_default();
                let delta = SiteValue {
                    count: now.count - then.count,
                    delay_ns: now.delay_ns - then.delay_ns,
                };
                (*key, delta)
            })
            .filter(|(_, delta)| delta.count > 0)
            .collect();
        let minus = |now: &[u64], then: &[u64]| -> Vec<u64> {
            now.iter()
                .enumerate()
                .map(|(i, n)| n - then.get(i).copied().unwrap_or(0))
                .collect()
        };
        let mut drops = self.drops;
        for (drop, then) in drops.iter_mut().zip(earlier.drops) {
            *drop -= then;
        }
        let workers_before: HashMap<u64, TimerWorker> =
            earlier.timer_workers.iter().copied().collect();
        let timer_workers = self
            .timer_workers
            .iter()
            .map(|(key, now)| {
                let then = workers_before.get(key).copied().unwrap_or_default();
                let delta = TimerWorker {
                    busy_ns: now.busy_ns - then.busy_ns,
                    callbacks: now.callbacks - then.callbacks,
                    running_since: now.running_since,
                };
                (*key, delta)
            })
            .collect();
        Snapshot {
            sites,
            live: self.live.clone(),
            mappings: self.mappings.totals_since(&earlier.mappings),
            stacks: self.stacks.clone(),
            hook_hits: minus(&self.hook_hits, &earlier.hook_hits),
            stacks_sampled_out: minus(&self.stacks_sampled_out, &earlier.stacks_sampled_out),
            drops,
            fire_delays: minus(&self.fire_delays, &earlier.fire_delays),
            timer_workers,
            c_heap: self.c_heap.since(&earlier.c_heap),
            pending: self.pending.clone(),
            goroutines: self.goroutines.clone(),
            creations: self.creations.clone(),
            // Counted from the map's size while it changes: it may lag by a few.
            creations_evicted: self
                .creations_evicted
                .saturating_sub(earlier.creations_evicted),
        }
    }

    /// Fills in callbacks the probe could not read (static funcvals on pages the target had not
    /// touched): `read_funcval` maps a funcval's runtime address to the code address it holds.
    pub fn resolve_unread_callbacks(&mut self, read_funcval: impl Fn(u64) -> Option<u64>) {
        let resolve = |site: &mut SiteKey| {
            for (flag, address) in [
                (site_flag::CALLBACK_UNREAD, &mut site.callback),
                (site_flag::USER_CALLBACK_UNREAD, &mut site.user_callback),
            ] {
                if site.flags & flag != 0 {
                    *address = read_funcval(*address).unwrap_or(0);
                    site.flags &= !flag;
                }
            }
        };
        self.sites.iter_mut().for_each(|(site, _)| resolve(site));
        self.live
            .iter_mut()
            .for_each(|(_, live)| resolve(&mut live.site));
    }

    /// The profile comment on forgotten creations; none while the map forgot nothing.
    pub fn creations_comment(&self) -> Option<String> {
        (self.creations_evicted > 0)
            .then(|| CommentKey::CreationsEvicted.comment(self.creations_evicted))
    }
}

/// Where the collect functions find the probe's maps: the running probe, or the maps kept
/// after it was detached ([`crate::attach::ProbeMaps`]).
pub trait Maps {
    fn get_map(&self, name: &'static str) -> &aya::maps::Map;
}

impl Maps for Ebpf {
    fn get_map(&self, name: &'static str) -> &aya::maps::Map {
        self.map(name).expect("map is defined in probe-ebpf")
    }
}

fn map<'a>(maps: &'a impl Maps, name: &'static str) -> &'a aya::maps::Map {
    maps.get_map(name)
}

fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> CollectError {
    move |source| CollectError { name, source }
}

/// Sums of a per-CPU counter array.
fn per_cpu_sums(ebpf: &impl Maps, name: &'static str, len: u32) -> Result<Vec<u64>, CollectError> {
    let array = PerCpuArray::<_, u64>::try_from(map(ebpf, name)).map_err(err(name))?;
    (0..len)
        .map(|i| Ok(array.get(&i, 0).map_err(err(name))?.iter().sum()))
        .collect()
}

/// The live-timer count alone, cheap enough for a status line.
pub fn live_count(ebpf: &impl Maps) -> usize {
    BpfHashMap::<_, u64, LiveTimer>::try_from(map(ebpf, "LIVE"))
        .map(|live| live.keys().count())
        .unwrap_or(0)
}

/// Probe hits per hook so far.
pub fn hook_hits(ebpf: &impl Maps, hooks: usize) -> Result<Vec<u64>, CollectError> {
    per_cpu_sums(ebpf, "HOOK_HITS", hooks as u32)
}

/// Hits of each goroutine hook so far (`probe_common::goroutine_hook`).
pub fn goroutine_hits(ebpf: &impl Maps) -> Result<Vec<u64>, CollectError> {
    per_cpu_sums(ebpf, "GOROUTINE_HITS", probe_common::goroutine_hook::COUNT)
}

/// Probe hits and drops alone, for the status line.
pub fn counters(ebpf: &impl Maps, hooks: usize) -> Result<(u64, u64), CollectError> {
    let hits = per_cpu_sums(ebpf, "HOOK_HITS", hooks as u32)?.iter().sum();
    let drops = per_cpu_sums(ebpf, "DROPS", drop::COUNT)?.iter().sum();
    Ok((hits, drops))
}

/// Applies the mmap-family calls completed since the last drain to `mappings`.
pub fn drain_mmap_events(ring: &mut RingBuf<MapData>, mappings: &mut LiveMappings) {
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<MmapEvent>() {
            // SAFETY: the probe writes whole MmapEvents; ring entries are only 8-byte aligned.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<MmapEvent>()) };
            mappings.apply(&event);
        }
    }
}

/// Reads every map; `mappings` (drained by the caller) is moved into the snapshot.
pub fn snapshot(
    ebpf: &impl Maps,
    hooks: usize,
    mappings: LiveMappings,
) -> Result<Snapshot, CollectError> {
    let sites_map = PerCpuHashMap::<_, SiteKey, SiteValue>::try_from(map(ebpf, "SITES"))
        .map_err(err("SITES"))?;
    let mut sites = Vec::new();
    for item in sites_map.iter() {
        let (key, per_cpu) = item.map_err(err("SITES"))?;
        let total = per_cpu
            .iter()
            .fold(SiteValue::default(), |acc, v| SiteValue {
                count: acc.count + v.count,
                delay_ns: acc.delay_ns + v.delay_ns,
            });
        sites.push((key, total));
    }
    let live: Vec<(u64, LiveTimer)> = batch::entries(map(ebpf, "LIVE"))
        .map_err(err("LIVE"))?
        .into_iter()
        .collect();

    let c_heap = c_heap(ebpf)?;
    let stack_map =
        BpfHashMap::<_, u64, UserStack>::try_from(map(ebpf, "STACKS")).map_err(err("STACKS"))?;
    let wanted = sites
        .iter()
        .map(|(k, _)| k.stack)
        .chain(live.iter().map(|(_, l)| l.site.stack))
        .chain(mappings.stacks())
        .chain(c_heap.stacks())
        .filter(|&key| key != NO_STACK);
    let mut stacks = HashMap::new();
    for key in wanted {
        if stacks.contains_key(&key) {
            continue;
        }
        // Stacks are never removed, so every key the probes wrote is there.
        let stack = stack_map.get(&key, 0).map_err(err("STACKS"))?;
        let len = (stack.len as usize).min(stack.frames.len());
        stacks.insert(key, stack.frames[..len].to_vec());
    }

    let hook_hits = per_cpu_sums(ebpf, "HOOK_HITS", hooks as u32)?;
    let stacks_sampled_out = per_cpu_sums(ebpf, "STACKS_SAMPLED_OUT", hooks as u32)?;
    let drop_sums = per_cpu_sums(ebpf, "DROPS", drop::COUNT)?;
    let mut drops = [0; drop::COUNT as usize];
    drops.copy_from_slice(&drop_sums);
    let fire_delays = per_cpu_sums(ebpf, "DELAY_HIST", DELAY_BUCKETS)?;
    let timer_workers = BpfHashMap::<_, u64, TimerWorker>::try_from(map(ebpf, "TIMER_WORKERS"))
        .map_err(err("TIMER_WORKERS"))?
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(err("TIMER_WORKERS"))?;
    tracing::debug!(
        "collect: {} sites, {} live timers, {} stacks, {} probe hits, {} drops",
        sites.len(),
        live.len(),
        stacks.len(),
        hook_hits.iter().sum::<u64>(),
        drops.iter().sum::<u64>()
    );
    Ok(Snapshot {
        sites,
        live,
        mappings,
        stacks,
        hook_hits,
        stacks_sampled_out,
        drops,
        fire_delays,
        timer_workers,
        c_heap,
        pending: PendingRead::NotTaken,
        goroutines: GoroutineRead::NotTaken,
        creations: HashMap::new(),
        creations_evicted: creations_evicted(ebpf)?,
    })
}

/// Keys added to the creation map less the keys it holds: what its least-recently-used
/// eviction took (nothing else removes a key).
fn creations_evicted(ebpf: &impl Maps) -> Result<u64, CollectError> {
    let added: u64 = per_cpu_sums(ebpf, "CREATIONS_ADDED", 1)?.iter().sum();
    if added == 0 {
        return Ok(0);
    }
    let held = batch::entries::<u64, TimerCreation>(map(ebpf, "CREATIONS"))
        .map_err(err("CREATIONS"))?
        .len();
    Ok(added.saturating_sub(held as u64))
}

/// Looks up where each pending timer of `snapshot` was created (the creation hooks key the map
/// by the same `*runtime.timer` address the heaps hold) and fetches those stacks; in `frozen`
/// instead of the kernel map when given (a creation hook was detached). The kernel map is read
/// whole, in a few system calls, rather than looked up once per pending timer.
pub fn join_creations(
    ebpf: &impl Maps,
    frozen: Option<&HashMap<u64, TimerCreation>>,
    snapshot: &mut Snapshot,
) -> Result<(), CollectError> {
    let Some(pending) = snapshot.pending.timers() else {
        return Ok(());
    };
    let addresses: Vec<u64> = pending.timers.iter().map(|t| t.address).collect();
    let whole;
    let creations = match frozen {
        Some(frozen) => frozen,
        None => {
            whole = batch::entries(map(ebpf, "CREATIONS")).map_err(err("CREATIONS"))?;
            &whole
        }
    };
    let stack_map =
        BpfHashMap::<_, u64, UserStack>::try_from(map(ebpf, "STACKS")).map_err(err("STACKS"))?;
    let mut joined = HashMap::new();
    for &address in &addresses {
        let Some(&creation) = creations.get(&address) else {
            continue;
        };
        if creation.stack != NO_STACK && !snapshot.stacks.contains_key(&creation.stack) {
            // Stacks are never removed, so every key the probes wrote is there.
            let stack = stack_map.get(&creation.stack, 0).map_err(err("STACKS"))?;
            let len = (stack.len as usize).min(stack.frames.len());
            snapshot
                .stacks
                .insert(creation.stack, stack.frames[..len].to_vec());
        }
        joined.insert(address, creation);
    }
    tracing::debug!(
        "collect: {} of {} pending timers at their creation stacks",
        joined.len(),
        addresses.len()
    );
    snapshot.creations = joined;
    Ok(())
}

/// The most C heap blocks the live map can be sized for (`--max-c-blocks`).
pub const MAX_C_BLOCKS: u32 = 1 << 21;

/// The C heap maps: per-site totals, and the live blocks summed per site.
fn c_heap(ebpf: &impl Maps) -> Result<CHeap, CollectError> {
    let sites = PerCpuHashMap::<_, CHeapSite, CHeapTotals>::try_from(map(ebpf, "C_HEAP_SITES"))
        .map_err(err("C_HEAP_SITES"))?;
    let mut allocated = HashMap::new();
    for item in sites.iter() {
        let (site, per_cpu) = item.map_err(err("C_HEAP_SITES"))?;
        let total = per_cpu
            .iter()
            .fold(CHeapTotals::default(), |a, v| CHeapTotals {
                allocs: a.allocs + v.allocs,
                bytes: a.bytes + v.bytes,
            });
        allocated.insert(site, total);
    }
    let blocks: HashMap<u64, CHeapBlock> =
        batch::entries(map(ebpf, "C_HEAP_BLOCKS")).map_err(err("C_HEAP_BLOCKS"))?;
    let mut live: HashMap<CHeapSite, CHeapTotals> = HashMap::new();
    for block in blocks.values() {
        let totals = live.entry(block.site).or_default();
        totals.allocs += 1;
        totals.bytes += block.size;
    }
    Ok(CHeap { allocated, live })
}
