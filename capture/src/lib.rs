//! Capture: attaching to one Go process and turning what its runtime does into a profile, in
//! stages that run one way: [`plan`] (hooks and struct offsets for the binary) -> [`attach`]
//! (eBPF, aya) -> [`collect`] (read the kernel maps) -> [`symbolize`] -> [`encode`] (pprof).
//! [`session`] wires them for one process; [`launch`] starts a command stopped at exec;
//! [`preflight`] refuses early with one line per cause; [`process_profiles`] reads Go's own
//! profiles from a live process's memory. The binary itself is read by the
//! `gobinary` crate.

pub mod attach;
mod batch;
pub mod budget;
pub mod calibrate;
pub mod cgo;
pub mod cheap;
pub mod collect;
pub mod encode;
pub mod goroutine_probes;
pub mod goroutines;
pub mod launch;
pub mod libraries;
pub mod mappings;
pub mod pending;
pub mod plan;
pub mod preflight;
pub mod process_profiles;
pub mod session;
pub mod symbolize;

/// The compiled eBPF object (probe-ebpf), built by build.rs with aya-build.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));
