//! The runtime's heap profile read from a live process's memory: the memory-profile buckets on
//! `runtime.mbuckets`, published as `runtime.MemProfile` would (docs/go-runtime.md, "Heap
//! profile in memory"). Buckets are never freed, so walking the list while the process runs is
//! safe; their counters move, and are read once per bucket with frees clamped to allocations.

use super::memory::{ReadError, ReadMemory as _, RuntimeImage};
use crate::GoVersion;

/// A bucket header: `next, allnext, typ, hash, size, nstk` (48 bytes on every release).
const BUCKET_HEADER: u64 = 48;
const ALLNEXT: usize = 1;
const TYP: usize = 2;
const SIZE: usize = 4;
const NSTK: usize = 5;
/// `bucketType` of memory-profile buckets.
const MEM_PROFILE: u64 = 1;
/// Deepest stack a bucket holds: `maxProfStackDepth` (1024) plus the two extra frames of 1.26+.
const MAX_STACK: u64 = 1026;
/// Far more buckets than a program has distinct allocation sites: a longer list is garbage.
const MAX_BUCKETS: usize = 4 << 20;

/// `memRecordCycle` by release: `{allocs, frees, alloc_bytes, free_bytes}` words, or from Go
/// 1.27 only `{allocs, frees}` (bytes are counts times the bucket's object size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordLayout {
    cycle_words: usize,
}

impl RecordLayout {
    fn of(version: GoVersion) -> Self {
        Self {
            cycle_words: if version.minor >= 27 { 2 } else { 4 },
        }
    }

    /// `memRecord` = `active` then `future[3]`, all cycles.
    fn words(self) -> usize {
        4 * self.cycle_words
    }
}

/// One allocation site: what `runtime.MemProfile` reports for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapRecord {
    /// Return addresses (runtime, leaf first), as `runtime.Callers` gives them.
    pub stack: Vec<u64>,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
    pub free_objects: u64,
    pub free_bytes: u64,
}

impl HeapRecord {
    pub fn inuse_objects(&self) -> u64 {
        self.alloc_objects - self.free_objects
    }

    pub fn inuse_bytes(&self) -> u64 {
        self.alloc_bytes - self.free_bytes
    }
}

/// The heap profile of a process, as of its last completed garbage collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapProfile {
    /// `runtime.MemProfileRate`: on average one sample per this many bytes allocated (0:
    /// profiling is off; the linker turns it off in programs that cannot read the profile).
    pub rate: u64,
    pub records: Vec<HeapRecord>,
}

/// One bucket's counters: `(allocs, frees, alloc_bytes, free_bytes)` of a cycle.
type Cycle = [u64; 4];

fn cycle(words: &[u64], index: usize, layout: RecordLayout, object_size: u64) -> Cycle {
    let c = &words[index * layout.cycle_words..][..layout.cycle_words];
    match c {
        [allocs, frees, alloc_bytes, free_bytes] => [*allocs, *frees, *alloc_bytes, *free_bytes],
        [allocs, frees] => [
            *allocs,
            *frees,
            allocs.wrapping_mul(object_size),
            frees.wrapping_mul(object_size),
        ],
        _ => unreachable!("a cycle is 2 or 4 words"),
    }
}

fn add(a: Cycle, b: Cycle) -> Cycle {
    std::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

/// Reads the heap profile the way `runtime.MemProfile` publishes it: each bucket's `active`
/// cycle plus `future[C % 3]` (C the profiling cycle), or, before the first collection (every
/// `active` empty), all three futures.
pub fn read(image: &RuntimeImage) -> Result<HeapProfile, ReadError> {
    let memory = image.memory;
    let version = image.binary.version();
    let layout = RecordLayout::of(version);
    let rate = memory.u64(image.global("runtime.MemProfileRate")?)?;
    // Go 1.19+: `mProfCycle.value` holds cycle<<1 | flushed; before, `mProf.cycle` is a plain
    // uint32 at the start of `mProf`.
    let cycle_now = if version.minor >= 19 {
        memory.u32(image.global("runtime.mProfCycle")?)? >> 1
    } else {
        memory.u32(image.global("runtime.mProf")?)?
    } as usize;
    let mut bucket = memory.pointer(image.global("runtime.mbuckets")?)?;
    let mut sites: Vec<(Vec<u64>, Cycle, [Cycle; 3])> = Vec::new();
    while bucket != 0 {
        if sites.len() >= MAX_BUCKETS {
            return Err(ReadError::TooLong {
                address: bucket,
                len: sites.len() as u64,
                max: MAX_BUCKETS as u64,
            });
        }
        let header = memory.words(bucket, BUCKET_HEADER / 8)?;
        let depth = header[NSTK];
        if depth > MAX_STACK {
            return Err(ReadError::TooLong {
                address: bucket,
                len: depth,
                max: MAX_STACK,
            });
        }
        if header[TYP] == MEM_PROFILE {
            // The stack and the record that follows it, in one read.
            let words = memory.words(
                bucket.wrapping_add(BUCKET_HEADER),
                depth + layout.words() as u64,
            )?;
            let (stack, record) = words.split_at(depth as usize);
            let size = header[SIZE];
            let active = cycle(record, 0, layout, size);
            let future = std::array::from_fn(|i| cycle(record, 1 + i, layout, size));
            sites.push((stack.to_vec(), active, future));
        }
        bucket = header[ALLNEXT];
    }
    let before_first_gc = sites
        .iter()
        .all(|(_, active, _)| active[0] == 0 && active[1] == 0);
    let records = sites
        .into_iter()
        .filter_map(|(stack, active, future)| {
            let [allocs, frees, alloc_bytes, free_bytes] = if before_first_gc {
                future.into_iter().fold(active, add)
            } else {
                add(active, future[cycle_now % 3])
            };
            // Counters the process moved between our reads of one record: never more freed
            // than allocated.
            let record = HeapRecord {
                stack,
                alloc_objects: allocs,
                alloc_bytes,
                free_objects: frees.min(allocs),
                free_bytes: free_bytes.min(alloc_bytes),
            };
            (record.alloc_objects > 0).then_some(record)
        })
        .collect();
    Ok(HeapProfile { rate, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_1_27_derives_bytes_from_counts() {
        let layout = RecordLayout::of(GoVersion::new(1, 27, 0));
        assert_eq!(layout.words(), 8);
        let record = [3, 1, 5, 2, 0, 0, 0, 0];
        assert_eq!(cycle(&record, 1, layout, 64), [5, 2, 320, 128]);
        let layout = RecordLayout::of(GoVersion::new(1, 26, 0));
        assert_eq!(layout.words(), 16);
        let record: Vec<u64> = (0..16).collect();
        assert_eq!(cycle(&record, 2, layout, 64), [8, 9, 10, 11]);
    }
}
