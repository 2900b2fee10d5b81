//! The pprof profile model (google/pprof `profile.proto` as prost messages), a builder with
//! interning and validation, a reader, a symbolic view for analysis, and the [`vocabulary`] that
//! timerscope's recorder and analyzer share. See API.md.
// Dev-dependencies serve the integration tests and examples, not the unit tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod builder;
mod error;
mod footprint;
pub mod proto;
mod read;
mod resolved;
mod summary;
mod validate;
pub mod vocabulary;
mod write;

pub use builder::{Frame, MappingSpec, ProfileBuilder, SampleLabel};
pub use error::ProfileError;
pub use proto::Profile;
pub use read::{
    DEFAULT_MAX_PROFILE_SIZE, DecodeLimits, decode, decode_with, read_file, read_file_with,
};
pub use resolved::{FrameId, ResolvedFrame, ResolvedProfile, ResolvedSample, ValueKind};
pub use summary::FunctionSums;
pub use validate::{InvalidProfile, validate};
pub use write::{check_output_path, encode_gzip, write_atomic, write_bytes_atomic};

#[cfg(test)]
mod tests;
