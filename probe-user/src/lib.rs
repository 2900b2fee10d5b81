//! timerscope's userspace, one module per stage: `target` (inspect a binary), `hooks` (plan),
//! `attach`, `collect`, `symbolize`, `encode`; `record` wires them; `cli` is the front end.

pub mod attach;
pub mod cgo;
pub mod cli;
pub mod collect;
pub mod encode;
pub mod exit;
pub mod hooks;
pub mod libraries;
pub mod mappings;
pub mod preflight;
pub mod record;
pub mod session;
pub mod status;
pub mod summary;
pub mod symbolize;
pub mod target;
pub mod watch;

/// The compiled eBPF object (probe-ebpf), built by build.rs with aya-build.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));
