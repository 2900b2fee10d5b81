//! The goroutine snapshot and the runtime's memory figures, read from the target's memory
//! (`gobinary::runtime::{goroutines, memstats}`) with no probes: at the end of a recording and
//! of each watch interval, the goroutines at their current stacks (sample type `goroutines`);
//! at both ends, [`MemoryNumbers`] (RSS from `/proc`, `MemStats` figures, goroutine count) for
//! the `memory_start`/`memory_end` comments and the watch metrics.

use gobinary::{
    GoBinary,
    layout::{GoroutineLayout, MemStatsLayout},
    process,
    runtime::{
        ReadError, RuntimeImage,
        goroutines::{self, Goroutine, GoroutineStack},
        memstats,
    },
};
use pprof::vocabulary::{CommentKey, MemoryNumbers};

use crate::symbolize::Symbolizer;

/// What the last goroutine read gave.
#[derive(Clone, Debug, Default)]
pub enum GoroutineRead {
    /// No read was asked for.
    #[default]
    NotTaken,
    Ok(GoroutineSnapshot),
    /// The binary's layout or globals cannot be read: no read was made.
    Refused(String),
    /// The read failed (the process exited, or kept changing under every read).
    Failed(String),
}

/// The user goroutines of one read (the runtime's own left out, as Go's goroutine profile
/// does), and what could not be read.
#[derive(Clone, Debug, Default)]
pub struct GoroutineSnapshot {
    pub goroutines: Vec<Goroutine>,
    /// CLOCK_MONOTONIC ns when read: `waitsince`'s clock.
    pub now: i64,
    /// Goroutines whose `g` or stack kept changing under every read, or could not be read.
    pub torn: u64,
    pub unreadable: u64,
    /// Stacks cut at `goroutines::MAX_FRAMES`.
    pub truncated: u64,
}

impl GoroutineSnapshot {
    /// Goroutines running on a thread (no stack in memory) and in a system call on a release
    /// that saves no frame pointer for it.
    pub fn unwalked(&self) -> (u64, u64) {
        let count = |f: fn(&GoroutineStack) -> bool| {
            self.goroutines.iter().filter(|g| f(&g.stack)).count() as u64
        };
        (
            count(|s| matches!(s, GoroutineStack::Running)),
            count(|s| matches!(s, GoroutineStack::Syscall { .. })),
        )
    }
}

impl GoroutineRead {
    /// The `goroutines=...` profile comment; none when no read was asked for.
    pub fn comment(&self) -> Option<String> {
        let value = match self {
            Self::NotTaken => return None,
            Self::Ok(read) => {
                let (running, syscall) = read.unwalked();
                format!(
                    "ok goroutines={} running={running} syscall_unwalked={syscall} torn={} \
                     unreadable={} truncated={}",
                    read.goroutines.len(),
                    read.torn,
                    read.unreadable,
                    read.truncated
                )
            }
            Self::Refused(reason) => format!("refused: {reason}"),
            Self::Failed(reason) => format!("failed: {reason}"),
        };
        Some(CommentKey::GoroutineSnapshot.comment(value))
    }

    pub fn snapshot(&self) -> Option<&GoroutineSnapshot> {
        match self {
            Self::Ok(read) => Some(read),
            _ => None,
        }
    }
}

/// The runtime reader of one session: the binary's layouts, or why it has none.
pub struct RuntimeReader {
    pid: u32,
    goroutines: Result<GoroutineLayout, String>,
    memstats: Result<MemStatsLayout, String>,
}

impl RuntimeReader {
    pub fn new(binary: &GoBinary, pid: u32) -> Self {
        Self {
            pid,
            goroutines: GoroutineLayout::of_binary(binary).map_err(|e| e.to_string()),
            memstats: MemStatsLayout::of_binary(binary).map_err(|e| e.to_string()),
        }
    }

    /// Every user goroutine now, with its stack (the process keeps running).
    pub fn goroutines(&self, binary: &GoBinary) -> GoroutineRead {
        let layout = match &self.goroutines {
            Ok(layout) => layout,
            Err(reason) => return GoroutineRead::Refused(reason.clone()),
        };
        let result = RuntimeImage::attach(binary, self.pid).and_then(|image| {
            let read = goroutines::read(&image, layout)?;
            Ok((image, read))
        });
        let (image, read) = match result {
            Ok(ok) => ok,
            Err(error @ ReadError::MissingGlobal(_)) => {
                return GoroutineRead::Refused(error.to_string());
            }
            Err(error) => return GoroutineRead::Failed(error.to_string()),
        };
        let goroutines = read
            .goroutines
            .into_iter()
            .filter(|g| {
                !image
                    .function_name(g.startpc)
                    .is_some_and(|start| goroutines::is_system(&start))
            })
            .collect();
        GoroutineRead::Ok(GoroutineSnapshot {
            goroutines,
            now: monotonic_now(),
            torn: read.torn,
            unreadable: read.unreadable,
            truncated: read.truncated,
        })
    }

    /// RSS, the runtime's memory figures and the goroutine count now; what cannot be read is
    /// absent (said once at debug level: the profile shows it by its absence).
    pub fn memory_numbers(&self, binary: &GoBinary, goroutines: &GoroutineRead) -> MemoryNumbers {
        let mut numbers = MemoryNumbers {
            rss: process::rss_bytes(self.pid),
            goroutines: goroutines
                .snapshot()
                .map(|read| read.goroutines.len() as u64),
            ..MemoryNumbers::default()
        };
        let stats = self
            .memstats
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|layout| {
                let image = RuntimeImage::attach(binary, self.pid).map_err(|e| e.to_string())?;
                memstats::read(&image, layout).map_err(|e| e.to_string())
            });
        match stats {
            Ok(stats) => {
                numbers.heap_alloc = Some(stats.heap_alloc);
                numbers.heap_inuse = Some(stats.heap_inuse);
                numbers.heap_sys = Some(stats.heap_sys);
                numbers.heap_released = Some(stats.heap_released);
                numbers.stack_inuse = Some(stats.stack_inuse);
                numbers.sys = Some(stats.sys);
            }
            Err(reason) => tracing::debug!("memstats: pid {}: {reason}", self.pid),
        }
        numbers
    }
}

/// `function (file:line)` of the `go` statement that created `g`, as Go's dumps print it (the
/// physical function, the line of the innermost inlined code at the call); empty where they
/// name none (the main goroutine, goroutines the runtime's own code started).
pub fn created_by(symbolizer: &mut Symbolizer, g: &Goroutine) -> String {
    // `gopc` is the return address of the `go` statement's call: look up the call.
    let frames = symbolizer.frames(g.gopc.saturating_sub(1));
    match (frames.first(), frames.last()) {
        (Some(inner), Some(outer)) if goroutines::shows_creator(g.goid, &outer.function) => {
            let file = inner.file.rsplit('/').next().unwrap_or(&inner.file);
            format!("{} ({file}:{})", outer.function, inner.line)
        }
        _ => String::new(),
    }
}

/// Whether a function is the wrapper the compiler makes for `go f(x)` (Go 1.22+ names it
/// `f.gowrapN`), which Go's unwinder leaves out of stacks.
pub fn is_go_statement_wrapper(function: &str) -> bool {
    function
        .rsplit_once(".gowrap")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(crate) fn monotonic_now() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_go_statement_wrappers_are_left_out() {
        assert!(is_go_statement_wrapper("main.spawnLeaks.gowrap1"));
        assert!(is_go_statement_wrapper("main.startBackground.gowrap12"));
        assert!(!is_go_statement_wrapper("main.spawnLeaks.func1"));
        assert!(!is_go_statement_wrapper("main.gowrap"));
        assert!(!is_go_statement_wrapper("main.blockForever"));
    }
}
