//! The target's live memory mappings, kept as an interval map from its mmap, munmap and mremap
//! calls: a partial munmap splits a mapping, mremap moves and resizes it, MAP_FIXED replaces
//! what was there. Mappings that predate the attach come from `/proc/PID/maps`.

use std::collections::{BTreeMap, HashMap};

use probe_common::{MmapEvent, mmap_op};

use gobinary::process::MapEntry;
use pprof::vocabulary::MappingClass;

const PAGE: u64 = 4096;
const MAP_ANONYMOUS: u32 = 0x20;
const MAP_GROWSDOWN: u32 = 0x100;
const MAP_STACK: u32 = 0x20000;

/// What a mapping made by a call holds, as far as its flags and file say.
fn class_of_call(flags: u32, fd: i32) -> MappingClass {
    if flags & (MAP_STACK | MAP_GROWSDOWN) != 0 {
        MappingClass::Stack
    } else if flags & MAP_ANONYMOUS != 0 || fd < 0 {
        MappingClass::Anon
    } else {
        MappingClass::File
    }
}

/// What a mapping `/proc/PID/maps` lists holds.
fn class_of_proc_entry(entry: &MapEntry) -> MappingClass {
    match entry.path.as_str() {
        "[stack]" => MappingClass::Stack,
        "[heap]" => MappingClass::Brk,
        path if path.is_empty() || path.starts_with('[') => MappingClass::Anon,
        _ => MappingClass::File,
    }
}

/// The stacks of one call: the user stack, and for calls from C called by Go, the Go stack of
/// the cgo call (`probe_common::NO_STACK` otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallStack {
    pub stack: u64,
    pub cgo_stack: u64,
}

impl CallStack {
    fn of(event: &MmapEvent) -> Self {
        Self {
            stack: event.stack,
            cgo_stack: event.cgo_stack,
        }
    }
}

/// Who made a mapping, or unmapped one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// A call the probe saw.
    Call {
        stack: CallStack,
        class: MappingClass,
    },
    /// Mapped before the probe attached, or listed from /proc/PID/maps without mmap probes.
    PreExisting(MappingClass),
}

/// Totals per origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginTotals {
    pub mmap_calls: u64,
    pub mapped_bytes: u64,
    pub unmapped_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interval {
    end: u64,
    origin: Origin,
}

#[derive(Clone, Debug, Default)]
pub struct LiveMappings {
    /// Start address -> interval; intervals never overlap.
    intervals: BTreeMap<u64, Interval>,
    pub totals: HashMap<Origin, OriginTotals>,
    /// The program break (page-rounded), once known: brk calls report only the new one.
    program_break: Option<u64>,
}

fn page_round_up(len: u64) -> u64 {
    len.div_ceil(PAGE) * PAGE
}

impl LiveMappings {
    /// Starts from the mappings a process already has (vDSO and friends left out).
    pub fn from_proc_maps(entries: &[MapEntry]) -> Self {
        let mut live = Self::default();
        for entry in entries.iter().filter(|e| {
            !matches!(
                e.path.as_str(),
                "[vvar]" | "[vdso]" | "[vsyscall]" | "[vvar_vclock]"
            )
        }) {
            live.insert(
                entry.start,
                entry.end,
                Origin::PreExisting(class_of_proc_entry(entry)),
            );
            if entry.path == "[heap]" {
                live.program_break = Some(entry.end);
            }
        }
        live
    }

    /// The program break where `/proc/PID/maps` shows no `[heap]` yet: its start
    /// (`start_brk`, field 47 of `/proc/PID/stat`).
    pub fn start_program_break(&mut self, pid: u32) {
        if self.program_break.is_some() {
            return;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3.
        let start_brk = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(47 - 3))
            .and_then(|field| field.parse::<u64>().ok());
        self.program_break = start_brk.map(page_round_up);
    }

    /// Applies one completed call.
    pub fn apply(&mut self, event: &MmapEvent) {
        match event.op {
            mmap_op::MMAP => {
                let origin = Origin::Call {
                    stack: CallStack::of(event),
                    class: class_of_call(event.flags, event.fd),
                };
                let len = page_round_up(event.len);
                // MAP_FIXED over existing mappings unmaps them implicitly, at this call.
                self.unmap(event.addr, len, CallStack::of(event));
                self.insert(event.addr, event.addr + len, origin);
                let totals = self.totals.entry(origin).or_default();
                totals.mmap_calls += 1;
                totals.mapped_bytes += len;
            }
            mmap_op::MUNMAP => {
                self.unmap(event.addr, page_round_up(event.len), CallStack::of(event));
            }
            mmap_op::MREMAP => self.remap(event),
            mmap_op::BRK => self.move_break(event),
            _ => {}
        }
    }

    /// brk: the heap between the old and the new break is mapped (at the call's stack, class
    /// `brk`) or unmapped.
    fn move_break(&mut self, event: &MmapEvent) {
        let new = page_round_up(event.addr);
        let Some(old) = self.program_break.replace(new) else {
            return;
        };
        let stack = CallStack::of(event);
        if new > old {
            let origin = Origin::Call {
                stack,
                class: MappingClass::Brk,
            };
            self.insert(old, new, origin);
            self.totals.entry(origin).or_default().mapped_bytes += new - old;
        } else if new < old {
            self.unmap(new, old - new, stack);
        }
    }

    fn insert(&mut self, start: u64, end: u64, origin: Origin) {
        self.remove_range(start, end);
        self.intervals.insert(start, Interval { end, origin });
    }

    /// Unmaps `[addr, addr + len)`, counting the bytes at the unmapping call's stack.
    fn unmap(&mut self, addr: u64, len: u64, stack: CallStack) {
        for (class, bytes) in self.remove_range(addr, addr + len) {
            let origin = Origin::Call { stack, class };
            self.totals.entry(origin).or_default().unmapped_bytes += bytes;
        }
    }

    /// mremap: the mapping keeps its origin at its new place and size; growth counts as mapped
    /// there, shrinking as unmapped.
    fn remap(&mut self, event: &MmapEvent) {
        let old_len = page_round_up(event.len);
        let new_len = page_round_up(event.new_len);
        let origin = self
            .intervals
            .range(..=event.addr)
            .next_back()
            .filter(|(_, interval)| interval.end > event.addr)
            .map(|(_, interval)| interval.origin)
            .unwrap_or(Origin::Call {
                stack: CallStack::of(event),
                class: MappingClass::Anon,
            });
        self.remove_range(event.addr, event.addr + old_len);
        self.remove_range(event.new_addr, event.new_addr + new_len);
        self.intervals.insert(
            event.new_addr,
            Interval {
                end: event.new_addr + new_len,
                origin,
            },
        );
        let totals = self.totals.entry(origin).or_default();
        if new_len > old_len {
            totals.mapped_bytes += new_len - old_len;
        } else {
            totals.unmapped_bytes += old_len - new_len;
        }
    }

    /// Removes `[start, end)` from every interval it overlaps, splitting those it cuts; returns
    /// the removed bytes by class.
    fn remove_range(&mut self, start: u64, end: u64) -> Vec<(MappingClass, u64)> {
        let mut removed = Vec::new();
        let overlapping: Vec<u64> = self
            .intervals
            .range(..end)
            .rev()
            .take_while(|(_, interval)| interval.end > start)
            .map(|(&s, _)| s)
            .collect();
        for interval_start in overlapping {
            let interval = self
                .intervals
                .remove(&interval_start)
                .expect("listed above");
            if interval_start < start {
                self.intervals.insert(
                    interval_start,
                    Interval {
                        end: start,
                        ..interval
                    },
                );
            }
            if interval.end > end {
                self.intervals.insert(end, interval);
            }
            let cut = interval.end.min(end) - interval_start.max(start);
            let class = match interval.origin {
                Origin::Call { class, .. } | Origin::PreExisting(class) => class,
            };
            removed.push((class, cut));
        }
        removed
    }

    /// Bytes still mapped, by origin.
    pub fn live_bytes(&self) -> HashMap<Origin, u64> {
        let mut live = HashMap::new();
        for (start, interval) in &self.intervals {
            *live.entry(interval.origin).or_default() += interval.end - start;
        }
        live
    }

    /// The same live mappings, with totals counting only what happened since `earlier`.
    pub fn totals_since(&self, earlier: &LiveMappings) -> LiveMappings {
        let totals = self
            .totals
            .iter()
            .map(|(origin, now)| {
                let then = earlier.totals.get(origin).copied().unwrap_or_default();
                let delta = OriginTotals {
                    mmap_calls: now.mmap_calls - then.mmap_calls,
                    mapped_bytes: now.mapped_bytes - then.mapped_bytes,
                    unmapped_bytes: now.unmapped_bytes - then.unmapped_bytes,
                };
                (*origin, delta)
            })
            .filter(|(_, delta)| *delta != OriginTotals::default())
            .collect();
        LiveMappings {
            intervals: self.intervals.clone(),
            totals,
            program_break: self.program_break,
        }
    }

    /// Every stack an origin refers to.
    pub fn stacks(&self) -> impl Iterator<Item = u64> + '_ {
        self.totals
            .keys()
            .chain(self.intervals.values().map(|i| &i.origin))
            .filter_map(|o| match o {
                Origin::Call { stack, .. } => Some([stack.stack, stack.cgo_stack]),
                Origin::PreExisting(_) => None,
            })
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn mmap(addr: u64, len: u64, stack: u64) -> MmapEvent {
        MmapEvent {
            op: mmap_op::MMAP,
            addr,
            len,
            stack,
            cgo_stack: probe_common::NO_STACK,
            flags: MAP_ANONYMOUS,
            fd: -1,
            ..Default::default()
        }
    }

    fn munmap(addr: u64, len: u64, stack: u64) -> MmapEvent {
        MmapEvent {
            op: mmap_op::MUNMAP,
            addr,
            len,
            stack,
            cgo_stack: probe_common::NO_STACK,
            fd: -1,
            ..Default::default()
        }
    }

    fn call(stack: u64) -> Origin {
        Origin::Call {
            stack: CallStack {
                stack,
                cgo_stack: probe_common::NO_STACK,
            },
            class: MappingClass::Anon,
        }
    }

    #[test]
    fn partial_unmap_splits_and_counts_at_the_unmapper() {
        let mut live = LiveMappings::default();
        live.apply(&mmap(0x10_0000, 4 * MIB, 1));
        live.apply(&munmap(0x10_0000 + MIB, MIB, 2));
        assert_eq!(live.live_bytes()[&call(1)], 3 * MIB);
        assert_eq!(live.intervals.len(), 2, "the hole splits the mapping");
        assert_eq!(live.totals[&call(2)].unmapped_bytes, MIB);
        live.apply(&munmap(0, 64 * MIB, 3));
        assert!(live.live_bytes().is_empty());
        assert_eq!(live.totals[&call(3)].unmapped_bytes, 3 * MIB);
    }

    #[test]
    fn lengths_are_page_rounded_and_fixed_maps_replace() {
        let mut live = LiveMappings::default();
        live.apply(&mmap(0x10_0000, 100, 1));
        assert_eq!(live.live_bytes()[&call(1)], PAGE);
        live.apply(&mmap(0x10_0000, 2 * PAGE, 2));
        assert_eq!(live.live_bytes().get(&call(1)), None);
        assert_eq!(live.live_bytes()[&call(2)], 2 * PAGE);
        assert_eq!(
            live.totals[&call(2)].unmapped_bytes,
            PAGE,
            "the replaced page"
        );
    }

    #[test]
    fn mremap_moves_and_grows_keeping_the_origin() {
        let mut live = LiveMappings::default();
        live.apply(&mmap(0x10_0000, MIB, 1));
        live.apply(&MmapEvent {
            op: mmap_op::MREMAP,
            addr: 0x10_0000,
            len: MIB,
            new_addr: 0x90_0000,
            new_len: 3 * MIB,
            stack: 5,
            ..Default::default()
        });
        assert_eq!(live.live_bytes()[&call(1)], 3 * MIB);
        assert_eq!(live.totals[&call(1)].mapped_bytes, 3 * MIB);
        live.apply(&munmap(0x90_0000, 3 * MIB, 2));
        assert!(live.live_bytes().is_empty());
    }

    #[test]
    fn brk_maps_and_unmaps_the_heap_between_breaks() {
        let brk = |addr, stack| MmapEvent {
            op: mmap_op::BRK,
            addr,
            stack,
            fd: -1,
            ..Default::default()
        };
        let mut live = LiveMappings::default();
        live.apply(&brk(0x50_0000, 1));
        assert!(live.live_bytes().is_empty(), "the first break only teaches");
        live.apply(&brk(0x52_0100, 1));
        assert_eq!(live.live_bytes()[&call_brk(1)], 0x21000, "page-rounded");
        live.apply(&brk(0x52_0100, 2));
        assert_eq!(
            live.live_bytes().len(),
            1,
            "a query (brk(0)) changes nothing"
        );
        live.apply(&brk(0x51_0000, 3));
        assert_eq!(live.live_bytes()[&call_brk(1)], 0x10000);
        assert_eq!(live.totals[&call_brk(3)].unmapped_bytes, 0x11000);
    }

    fn call_brk(stack: u64) -> Origin {
        Origin::Call {
            stack: CallStack {
                stack,
                cgo_stack: probe_common::NO_STACK,
            },
            class: MappingClass::Brk,
        }
    }

    #[test]
    fn pre_existing_mappings_are_classified() {
        let entry = |start, end, path: &str| MapEntry {
            start,
            end,
            perms: "rw-p".into(),
            offset: 0,
            inode: 0,
            path: path.into(),
        };
        let live = LiveMappings::from_proc_maps(&[
            entry(0x1000, 0x3000, "/usr/bin/app"),
            entry(0x3000, 0x4000, ""),
            entry(0x7000, 0x9000, "[stack]"),
            entry(0x9000, 0xa000, "[vdso]"),
        ]);
        let bytes = live.live_bytes();
        assert_eq!(bytes[&Origin::PreExisting(MappingClass::File)], 0x2000);
        assert_eq!(bytes[&Origin::PreExisting(MappingClass::Anon)], 0x1000);
        assert_eq!(bytes[&Origin::PreExisting(MappingClass::Stack)], 0x2000);
        assert_eq!(bytes.len(), 3);
    }
}
