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
        }
    }
}
