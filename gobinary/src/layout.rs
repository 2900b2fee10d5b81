//! Where the runtime keeps what timerscope reads: offsets of `runtime` struct members, from the
//! binary's own DWARF when it has it, else from per-release tables (docs/go-runtime.md gives the
//! source of every number). A release the tables do not know is refused, never guessed.

use crate::{GoBinary, GoVersion};

mod goroutines;
pub use goroutines::{GoroutineLayout, MemStatsLayout, status as goroutine_status};

/// Where a binary's struct offsets came from (comment `struct_offsets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutSource {
    Dwarf,
    Table,
}

impl LayoutSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dwarf => "dwarf",
            Self::Table => "table",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{version} has no hook table (supported: Go 1.12 to 1.27): upgrade timerscope or rebuild \
     the program with a supported Go release"
)]
pub struct UnsupportedGo {
    pub version: GoVersion,
}

/// Members of `runtime.timer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerLayout {
    pub when: u32,
    pub period: u32,
    /// The callback, a `*funcval`.
    pub f: u32,
    /// The callback's argument, an `any`: its type word (the data word follows).
    pub arg: u32,
    /// Go 1.12-1.13: `tb`, the bucket the timer is in (nil until first added).
    pub bucket: Option<u32>,
}

/// The runtime struct members timerscope reads, for one binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeLayout {
    pub timer: TimerLayout,
    /// `runtime.g.goid`.
    pub g_goid: u32,
    pub source: LayoutSource,
}

/// One row of the tables: an inclusive range of Go 1.x minor releases.
struct Row {
    minors: (u32, u32),
    layout: RuntimeLayout,
}

const fn row(minors: (u32, u32), timer: TimerLayout, g_goid: u32) -> Row {
    Row {
        minors,
        layout: RuntimeLayout {
            timer,
            g_goid,
            source: LayoutSource::Table,
        },
    }
}

const fn timer(when: u32, bucket: Option<u32>) -> TimerLayout {
    // `when`, `period` and `f` are consecutive words, then the two-word `arg`.
    TimerLayout {
        when,
        period: when + 8,
        f: when + 16,
        arg: when + 24,
        bucket,
    }
}

/// docs/go-runtime.md, "Struct layouts".
const TABLE: &[Row] = &[
    // runtime.timer{tb, i, when, period, f, arg, seq}.
    row((12, 13), timer(16, Some(0)), 152),
    // runtime.timer{pp, when, period, f, arg, seq, nextwhen, status}.
    row((14, 22), timer(8, None), 152),
    // runtime.timer{mu, astate, state, isChan, [isFake], blocked, when, ...}; g.goid moved.
    row((23, 24), timer(16, None), 160),
    // 1.25 inserted `timer.rand`, shifting every later field by 8; g.goid moved back.
    row((25, 27), timer(24, None), 152),
];

impl RuntimeLayout {
    /// The table's layout for a Go release.
    pub fn of_version(version: GoVersion) -> Result<Self, UnsupportedGo> {
        TABLE
            .iter()
            .find(|r| version.major == 1 && (r.minors.0..=r.minors.1).contains(&version.minor))
            .map(|r| r.layout)
            .ok_or(UnsupportedGo { version })
    }

    /// The layout of one binary: its DWARF's when that has every member, else the table's.
    pub fn of_binary(binary: &GoBinary) -> Result<Self, UnsupportedGo> {
        let table = Self::of_version(binary.version())?;
        Ok(binary
            .dwarf()
            .and_then(|dwarf| {
                let offsets = dwarf.struct_offsets(&["runtime.timer", "runtime.g"]);
                let timer = offsets.get("runtime.timer")?;
                let member = |name: &str| timer.get(name).and_then(|&o| u32::try_from(o).ok());
                let bucket = match table.timer.bucket {
                    Some(_) => Some(member("tb")?),
                    None => None,
                };
                Some(Self {
                    timer: TimerLayout {
                        when: member("when")?,
                        period: member("period")?,
                        f: member("f")?,
                        arg: member("arg")?,
                        bucket,
                    },
                    g_goid: u32::try_from(*offsets.get("runtime.g")?.get("goid")?).ok()?,
                    source: LayoutSource::Dwarf,
                })
            })
            .unwrap_or(table))
    }
}

/// Where the pending timers are, per timer family (docs/go-runtime.md, "Timer heaps in memory").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerHeaps {
    /// Go 1.12-1.13: the global `runtime.timers`, an array of [`BUCKETS`] padded
    /// `timersBucket`s `stride` bytes apart, each with a 4-ary heap `t []*timer` at `heap`.
    Buckets { stride: u32, heap: u32 },
    /// Go 1.14-1.22: `p.timers []*timer` at `p_timers` of each `runtime.allp` entry; a timer's
    /// `status` word says whether it is pending, and at `when` or at `nextwhen`.
    StatusWord {
        p_timers: u32,
        pp: u32,
        status: u32,
        nextwhen: u32,
    },
    /// Go 1.23+: `p.timers` is a `runtime.timers` at `p_timers` whose `heap` (at `heap` in it)
    /// is a slice of 16-byte `timerWhen{timer, when}`; a timer's `state` has the zombie bit,
    /// `ts` points back at its heap.
    Locked {
        p_timers: u32,
        heap: u32,
        state: u32,
        ts: u32,
    },
}

/// Go 1.12-1.13: the number of timer buckets (`timersLen`).
pub const BUCKETS: u32 = 64;

/// Where the pending-timer heaps and their timers' bookkeeping fields are, for one binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapLayout {
    pub heaps: TimerHeaps,
    /// `runtime.p.id`.
    pub p_id: u32,
    /// The bytes of a `runtime.timer` to read: through its last field read.
    pub timer_bytes: u32,
    pub source: LayoutSource,
}

/// Why the pending-timer heaps of a binary cannot be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeapLayoutError {
    #[error(transparent)]
    Unsupported(#[from] UnsupportedGo),
    #[error(
        "{version} was built with GOEXPERIMENT {experiment} and has no DWARF: the offset tables \
         hold only for the default experiments; rebuild without -w to keep DWARF"
    )]
    Experiment {
        version: GoVersion,
        experiment: String,
    },
}

/// `runtime.p.timers` per release, default GOEXPERIMENTs (docs/go-runtime.md).
const P_TIMERS: &[((u32, u32), u32)] = &[
    ((14, 15), 10096),
    ((16, 17), 9952),
    ((18, 18), 8832),
    ((19, 19), 8840),
    ((20, 20), 8832),
    ((21, 21), 8840),
    ((22, 22), 8872),
    ((23, 24), 8840),
    ((25, 25), 9392),
    ((26, 27), 13672),
];

impl HeapLayout {
    /// The tables' layout for a Go release (default GOEXPERIMENTs).
    pub fn of_version(version: GoVersion) -> Result<Self, UnsupportedGo> {
        let timer = RuntimeLayout::of_version(version)?.timer;
        let heaps = match version.minor {
            // timersBucket{lock, gp, created, sleeping, rescheduling, sleepUntil, waitnote, t}
            // padded to a 128-byte cache line pair.
            12..=13 => TimerHeaps::Buckets {
                stride: 128,
                heap: 40,
            },
            minor => {
                let p_timers = P_TIMERS
                    .iter()
                    .find(|((lo, hi), _)| (*lo..=*hi).contains(&minor))
                    .map(|&(_, offset)| offset)
                    .ok_or(UnsupportedGo { version })?;
                if minor <= 22 {
                    // timer{pp, when, period, f, arg, seq, nextwhen, status}.
                    TimerHeaps::StatusWord {
                        p_timers,
                        pp: 0,
                        status: 64,
                        nextwhen: 56,
                    }
                } else {
                    // timer{mu, astate, state, ..., when, period, f, arg, seq, ts, ...}.
                    TimerHeaps::Locked {
                        p_timers,
                        heap: 8,
                        state: 9,
                        ts: timer.when + 48,
                    }
                }
            }
        };
        Ok(Self::with_heaps(heaps, 0, timer, LayoutSource::Table))
    }

    fn with_heaps(heaps: TimerHeaps, p_id: u32, timer: TimerLayout, source: LayoutSource) -> Self {
        let last = match heaps {
            TimerHeaps::Buckets { .. } => timer.arg + 16,
            TimerHeaps::StatusWord { status, .. } => status + 4,
            TimerHeaps::Locked { ts, .. } => ts + 8,
        };
        Self {
            heaps,
            p_id,
            timer_bytes: last.max(timer.arg + 16),
            source,
        }
    }

    /// The heaps of one binary: from its DWARF when that has every member, else from the
    /// tables, which a non-default GOEXPERIMENT (visible in the version string or the build
    /// settings) invalidates: then it is refused.
    pub fn of_binary(binary: &GoBinary) -> Result<Self, HeapLayoutError> {
        let version = binary.version();
        let table = Self::of_version(version)?;
        let timer = RuntimeLayout::of_binary(binary)?.timer;
        if let Some(layout) = binary
            .dwarf()
            .and_then(|dwarf| Self::from_dwarf(dwarf, table.heaps, timer))
        {
            return Ok(layout);
        }
        let experiment = binary
            .buildinfo
            .setting("GOEXPERIMENT")
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                let text = &binary.buildinfo.version_string;
                let at = text.find("X:")?;
                Some(text[at + 2..].split_whitespace().next()?.to_owned())
            });
        match experiment {
            // Go <= 1.13 has no `p` in the path, and its bucket layout has no experiment.
            Some(experiment) if version.minor >= 14 => Err(HeapLayoutError::Experiment {
                version,
                experiment,
            }),
            _ => Ok(table),
        }
    }

    fn from_dwarf(dwarf: &crate::Dwarf, table: TimerHeaps, timer: TimerLayout) -> Option<Self> {
        let offsets = dwarf.struct_offsets(&[
            "runtime.p",
            "runtime.timer",
            "runtime.timers",
            "runtime.timersBucket",
        ]);
        let member = |structure: &str, name: &str| {
            offsets
                .get(structure)?
                .get(name)
                .and_then(|&o| u32::try_from(o).ok())
        };
        let heaps = match table {
            // The padded bucket element is an unnamed struct: its stride stays the table's.
            TimerHeaps::Buckets { stride, .. } => TimerHeaps::Buckets {
                stride,
                heap: member("runtime.timersBucket", "t")?,
            },
            TimerHeaps::StatusWord { .. } => TimerHeaps::StatusWord {
                p_timers: member("runtime.p", "timers")?,
                pp: member("runtime.timer", "pp")?,
                status: member("runtime.timer", "status")?,
                nextwhen: member("runtime.timer", "nextwhen")?,
            },
            TimerHeaps::Locked { .. } => TimerHeaps::Locked {
                p_timers: member("runtime.p", "timers")?,
                heap: member("runtime.timers", "heap")?,
                state: member("runtime.timer", "state")?,
                ts: member("runtime.timer", "ts")?,
            },
        };
        let p_id = match heaps {
            TimerHeaps::Buckets { .. } => 0,
            _ => member("runtime.p", "id")?,
        };
        Some(Self::with_heaps(heaps, p_id, timer, LayoutSource::Dwarf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_outside_the_table_are_refused_by_name() {
        for version in [
            GoVersion::new(1, 11, 13),
            GoVersion::new(1, 28, 0),
            GoVersion::new(2, 0, 0),
        ] {
            let error = RuntimeLayout::of_version(version).unwrap_err();
            assert_eq!(error.version, version);
            assert!(error.to_string().contains(&version.to_string()), "{error}");
        }
        for minor in 12..=27 {
            let rows = TABLE
                .iter()
                .filter(|r| (r.minors.0..=r.minors.1).contains(&minor))
                .count();
            assert_eq!(rows, 1, "1.{minor}");
            let layout = RuntimeLayout::of_version(GoVersion::new(1, minor, 0)).unwrap();
            // Only Go <= 1.13 timers have a bucket pointer.
            assert_eq!(layout.timer.bucket.is_some(), minor <= 13, "1.{minor}");
            let heaps = HeapLayout::of_version(GoVersion::new(1, minor, 0)).unwrap();
            let family = match heaps.heaps {
                TimerHeaps::Buckets { .. } => 12,
                TimerHeaps::StatusWord { .. } => 14,
                TimerHeaps::Locked { .. } => 23,
            };
            assert_eq!(
                family,
                [12, 14, 23][usize::from(minor >= 14) + usize::from(minor >= 23)]
            );
        }
        let p_timers_rows = |minor| {
            P_TIMERS
                .iter()
                .filter(|((a, b), _)| (*a..=*b).contains(&minor))
                .count()
        };
        assert!((14..=27).all(|minor| p_timers_rows(minor) == 1));
    }
}
