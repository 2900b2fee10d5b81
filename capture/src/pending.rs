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
            Self::Ok(snapshot) => snapshot_ok(
                snapshot.timers.len(),
                snapshot.inconsistent,
                snapshot.moving,
            ),
            Self::Refused(reason) => format!("refused (probes only): {reason}"),
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

/// What the snapshot tier gives now (metric `timerscope_snapshot_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotState {
    /// No read yet.
    NotTaken,
    Ok,
    /// The binary's layout cannot be read: pending timers come from the probes alone.
    Refused,
    /// The last read failed; the next one tries again.
    Failed,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotTaken => "not_taken",
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// The snapshot reader of one session: the binary's heap layout, or why it has none. A refusal
/// is final: said once on stderr, in every later profile's comment, and no read is tried again.
pub struct PendingReader {
    reader: Result<TimerReader, String>,
    pid: u32,
    state: SnapshotState,
}

/// The one stderr line of a refusal, naming the fallback.
fn say_refused(pid: u32, reason: &str) {
    eprintln!(
        "timerscope: snapshot of pid {pid}'s timer heaps refused: {reason}; pending timers come \
         from the probes alone (timers_live)"
    );
}

impl PendingReader {
    /// Resolves the heap layout; a refusal is said here.
    pub fn new(binary: &GoBinary, pid: u32) -> Self {
        let reader = TimerReader::new(binary).map_err(|error| {
            let reason = error.to_string();
            say_refused(pid, &reason);
            reason
        });
        let state = match reader {
            Ok(_) => SnapshotState::NotTaken,
            Err(_) => SnapshotState::Refused,
        };
        Self { reader, pid, state }
    }

    pub fn state(&self) -> SnapshotState {
        self.state
    }

    /// Reads the pending timers now (the process keeps running).
    pub fn read(&mut self, binary: &GoBinary) -> PendingRead {
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
                    "snapshot: pid {}: {} pending timers in {} heaps ({} moving), {} inconsistent, {:?}",
                    self.pid,
                    snapshot.timers.len(),
                    snapshot.heaps,
                    snapshot.moving,
                    snapshot.inconsistent,
                    started.elapsed()
                );
                self.state = SnapshotState::Ok;
                PendingRead::Ok(snapshot)
            }
            // The layout was known but the heaps cannot be found in this binary (an anchor
            // function that does not decode): as final as a layout refusal.
            Err(error) if error.is_refusal() => {
                let reason = error.to_string();
                say_refused(self.pid, &reason);
                self.reader = Err(reason.clone());
                self.state = SnapshotState::Refused;
                PendingRead::Refused(reason)
            }
            Err(error) => {
                tracing::warn!("snapshot: pid {}: {error}", self.pid);
                self.state = SnapshotState::Failed;
                PendingRead::Failed(error.to_string())
            }
        }
    }
}
