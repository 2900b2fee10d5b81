//! The Go runtime's own state read from a live process's memory (`process_vm_readv`), without
//! stopping it: [`memory`] reads words, slices and strings and resolves runtime globals;
//! [`goroutines`] walks `runtime.allgs` and the stacks of parked goroutines; [`heap_profile`]
//! reads the memory-profile buckets; [`memstats`] the runtime's own memory figures.
//! Every read of a structure the process keeps changing is re-read until two reads agree
//! (bounded), else counted as inconsistent.

pub mod goroutines;
pub mod heap_profile;
pub mod memory;
pub mod memstats;
pub mod timers;

pub use memory::{ProcessMemory, ReadError, RuntimeImage, SliceHeader};
