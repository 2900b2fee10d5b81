//! The figures of `runtime.ReadMemStats` read from a live process's memory without stopping its
//! world (Go 1.19+; docs/go-runtime.md, "Memory statistics in memory"): the footprint figures
//! are kept up to date by the runtime and read exactly; `HeapAlloc` lags by what the per-P
//! caches have not flushed yet.

use super::memory::{ReadError, ReadMemory, RuntimeImage, STABLE_ATTEMPTS};
use crate::layout::MemStatsLayout;

/// The runtime's own memory figures, bytes, as `runtime.MemStats` names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    pub heap_alloc: u64,
    pub heap_inuse: u64,
    pub heap_sys: u64,
    pub heap_released: u64,
    pub stack_inuse: u64,
    pub sys: u64,
    pub num_gc: u32,
}

/// Reads the figures: `gcController`'s heap counters, `memstats`' `*_sys` words, and the sum of
/// the three generations of `memstats.heapStats`, re-read until its generation counter stays
/// the same across the read (the runtime rotates generations while merging them).
pub fn read(image: &RuntimeImage<'_>, layout: &MemStatsLayout) -> Result<MemStats, ReadError> {
    let memory = &image.memory;
    let controller = image.global("runtime.gcController")?;
    let stats = image.global("runtime.memstats")?;
    let gc = |member: u32| memory.u64(controller + u64::from(member));
    let heap_in_use = gc(layout.heap_in_use)?;
    let heap_free = gc(layout.heap_free)?;
    let heap_released = gc(layout.heap_released)?;
    let total_alloc = gc(layout.total_alloc)?;
    let total_free = gc(layout.total_free)?;
    let other_sys: u64 = [
        layout.stacks_sys,
        layout.mspan_sys,
        layout.mcache_sys,
        layout.buckhash_sys,
        layout.gc_misc_sys,
        layout.other_sys,
    ]
    .into_iter()
    .map(|member| memory.u64(stats + u64::from(member)))
    .sum::<Result<u64, ReadError>>()?;
    let num_gc = memory.u32(stats + u64::from(layout.numgc))?;
    let (in_stacks, in_other) = heap_stats(image, layout, stats)?;
    let heap_sys = heap_in_use + heap_free + heap_released;
    Ok(MemStats {
        heap_alloc: total_alloc.saturating_sub(total_free),
        heap_inuse: heap_in_use,
        heap_sys,
        heap_released,
        stack_inuse: in_stacks,
        sys: heap_sys + other_sys + in_stacks + in_other,
        num_gc,
    })
}

/// `(inStacks, inWorkBufs + inPtrScalarBits)` summed over the three generations.
fn heap_stats(
    image: &RuntimeImage<'_>,
    layout: &MemStatsLayout,
    stats: u64,
) -> Result<(u64, u64), ReadError> {
    let memory = &image.memory;
    let base = stats + u64::from(layout.heap_stats);
    let generation = base + 3 * u64::from(layout.delta_size);
    for _ in 0..STABLE_ATTEMPTS {
        let before = memory.u32(generation)?;
        let (mut stacks, mut other) = (0i64, 0i64);
        for index in 0..3u64 {
            let delta = base + index * u64::from(layout.delta_size);
            let member = |at: u32| memory.u64(delta + u64::from(at)).map(|v| v as i64);
            stacks += member(layout.in_stacks)?;
            other += member(layout.in_work_bufs)?;
            if let Some(bits) = layout.in_ptr_scalar_bits {
                other += member(bits)?;
            }
        }
        if memory.u32(generation)? == before {
            return Ok((stacks.max(0) as u64, other.max(0) as u64));
        }
    }
    Err(ReadError::Inconsistent {
        what: "runtime.memstats.heapStats",
        attempts: STABLE_ATTEMPTS,
    })
}
