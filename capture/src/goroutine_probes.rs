//! Whether the goroutine probes ran (comment `goroutine_probes`). They count goroutines created
//! and exited by creating stack (`goroutines_created`, `goroutines_exited`); where they sit is
//! [`crate::plan::GoroutinePlan`], the eBPF side `probe-ebpf/src/goroutines.rs`.

use std::fmt;

/// Whether the goroutine probes ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoroutineCapture {
    /// Attached.
    On,
    /// Not asked for (`--no-goroutine-probes`, or `top`).
    Off,
    /// Detached while the capture ran (over the overhead budget); counts until then are kept.
    Detached,
    /// Asked for but not possible or not attached; why.
    Failed(String),
}

impl fmt::Display for GoroutineCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GoroutineCapture::On => "on",
            GoroutineCapture::Off => "off",
            GoroutineCapture::Detached => "detached",
            GoroutineCapture::Failed(_) => "failed",
        })
    }
}
