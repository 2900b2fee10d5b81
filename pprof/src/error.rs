//! What can go wrong building, reading or writing a profile.

use std::io;
use std::path::PathBuf;

use bytesize::ByteSize;

use crate::validate::InvalidProfile;

/// What can go wrong building, reading or writing a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "empty input: the profile file has no bytes (was the recorder stopped before it wrote?)"
    )]
    EmptyInput,
    #[error("truncated gzip stream: the file was cut short; copy or record it again")]
    TruncatedGzip(#[source] io::Error),
    #[error("corrupt gzip stream: the file is damaged; copy or record it again")]
    CorruptGzip(#[source] io::Error),
    #[error("not a profile: input is neither gzip nor a pprof protobuf; pass a .pb.gz or .pb file")]
    NotAProfile(#[source] prost::DecodeError),
    #[error(
        "not a profile: the gzip content is not a pprof protobuf; pass a pprof file, not another gzip file"
    )]
    GzipNotAProfile(#[source] prost::DecodeError),
    #[error(
        "profile too large: more than {limit} of protobuf once gunzipped, the --max-profile-size limit; raise --max-profile-size if the profile is genuine"
    )]
    TooLarge { limit: ByteSize },
    #[error(
        "profile too large: its {samples} samples, {locations} locations and {strings} strings would take about {estimate} decoded, more than {limit}, the --max-profile-size limit; raise --max-profile-size if the profile is genuine"
    )]
    DecodedTooLarge {
        estimate: ByteSize,
        samples: u64,
        locations: u64,
        strings: u64,
        limit: ByteSize,
    },
    #[error("cannot read the profile")]
    ReadInput(#[source] io::Error),
    #[error(transparent)]
    Invalid(#[from] InvalidProfile),
    #[error("default sample type {0:?} is not one of the profile's sample types; name one of them")]
    UnknownDefaultSampleType(String),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to write {0}: it is a symbolic link; remove it or choose another path")]
    OutputIsSymlink(PathBuf),
    #[error("refusing to write {0}: it exists and is not a regular file; choose another path")]
    OutputNotRegularFile(PathBuf),
    #[error("cannot write {0}: its directory does not exist; create it first")]
    OutputDirMissing(PathBuf),
}
