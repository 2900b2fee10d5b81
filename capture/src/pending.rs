//! The snapshot tier: the pending timers read from the runtime's own heaps in the target's
//! memory (`gobinary::runtime::timers`), no probes involved. Its status goes into every profile
//! (comment `snapshot`), and a binary whose layout cannot be read is refused once, on stderr,
//! with the probes carrying on alone.

use std::time::Instant;

use gobinary::{
    GoBinary,
    runtime::{
        RuntimeImage,
        timers::{SnapshotError, TimerReader, TimerSnapshot},
    },
};
use pprof::vocabulary::{CommentKey, snapshot_ok};

/// What the last read of the timer heaps gave.
#[derive(Clone, Debug, Default)]
pub enum PendingRead {
    /// No read was asked for (status lines, metrics).
    #[default]
    NotTaken,
    Ok(TimerSnapshot),
    /// The binary's layout cannot be read: no read was made.
    Refused(String),
    /// The read failed (the process exited, or kept changing under every read).
    Failed(String),
}

impl PendingRead {
    /// The `snapshot=...` profile comment; none when no read was asked for.
    pub fn comment(&self) -> Option<String> {
        let value = match self {
            Self::NotTaken => return None,
            Self::Ok(snapshot) => snapshot_ok(snapshot.timers.len(), snapshot.inconsistent),
            Self::Refused(reason) => format!("refused: {reason}"),
            Self::Failed(reason) => format!("failed: {reason}"),
        };
        Some(CommentKey::Snapshot.comment(value))
    }

    pub fn timers(&self) -> Option<&TimerSnapshot> {
        match self {
            Self::Ok(snapshot) => Some(snapshot),
            _ => None,
        }
    }
}

/// The snapshot reader of one session: the binary's heap layout, or why it has none.
pub struct PendingReader {
    reader: Result<TimerReader, String>,
    pid: u32,
}

impl PendingReader {
    /// Resolves the heap layout; a refusal is said once, here, on stderr.
    pub fn new(binary: &GoBinary, pid: u32) -> Self {
        let reader = TimerReader::new(binary).map_err(|error| {
            eprintln!(
                "timerscope: snapshot of pid {pid}'s timer heaps refused: {error}; pending \
                 timers come from the probes alone"
            );
            error.to_string()
        });
        Self { reader, pid }
    }

    /// Reads the pending timers now (the process keeps running).
    pub fn read(&self, binary: &GoBinary) -> PendingRead {
        let reader = match &self.reader {
            Ok(reader) => reader,
            Err(reason) => return PendingRead::Refused(reason.clone()),
        };
        let started = Instant::now();
        let result = RuntimeImage::attach(binary, self.pid)
            .map_err(SnapshotError::from)
            .and_then(|image| reader.read(&image));
        match result {
            Ok(snapshot) => {
                tracing::debug!(
                    "snapshot: pid {}: {} pending timers in {} heaps, {} inconsistent, {:?}",
                    self.pid,
                    snapshot.timers.len(),
                    snapshot.heaps,
                    snapshot.inconsistent,
                    started.elapsed()
                );
                PendingRead::Ok(snapshot)
            }
            Err(error) if error.is_refusal() => {
                eprintln!(
                    "timerscope: snapshot of pid {}'s timer heaps refused: {error}; pending \
                     timers come from the probes alone",
                    self.pid
                );
                PendingRead::Refused(error.to_string())
            }
            Err(error) => {
                tracing::warn!("snapshot: pid {}: {error}", self.pid);
                PendingRead::Failed(error.to_string())
            }
        }
    }
}
