//! timerscope's analyzer: the pprof model (prost messages, a builder with interning and
//! validation, a reader) and the analysis on top of it: diff, leak classification with trends,
//! flame graphs. Runs without root on any machine; see API.md.

pub mod classify;
pub mod cli_args;
pub mod diff;
pub mod flamegraph;
pub mod gosym;
pub mod inspect;
pub mod pprof;
pub mod profile;
pub mod resolved;
pub mod trend;

pub use profile::{
    Frame, InvalidProfile, MappingSpec, ProfileBuilder, ProfileError, SampleLabel, decode,
    encode_gzip, read_file, validate, write_atomic, write_bytes_atomic,
};
pub use resolved::{ResolvedFrame, ResolvedProfile, ResolvedSample, ValueKind};
