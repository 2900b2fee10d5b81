//! Decoding and reading profiles, gzipped or raw, validated, in bounded memory: the inflated
//! protobuf and the decoded model are each held to [`DecodeLimits::max_size`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use bytesize::ByteSize;
use flate2::read::MultiGzDecoder;
use prost::Message;

use crate::error::ProfileError;
use crate::footprint::footprint;
use crate::proto::Profile;
use crate::validate::validate;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// `--max-profile-size` default: far above any real profile (Go's are rarely above a few MiB),
/// far below what takes a host down.
pub const DEFAULT_MAX_PROFILE_SIZE: u64 = 1 << 30;

/// How much memory decoding one profile may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Bytes of protobuf after gunzip, and bytes the decoded model takes (estimated from the
    /// wire form before decoding); peak memory of a decode stays within about twice this.
    pub max_size: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_PROFILE_SIZE,
        }
    }
}

/// Decodes a gzipped or raw pprof protobuf within the default limits and validates it.
pub fn decode(bytes: &[u8]) -> Result<Profile, ProfileError> {
    decode_with(bytes, &DecodeLimits::default())
}

/// Decodes a gzipped or raw pprof protobuf within `limits` and validates it.
pub fn decode_with(bytes: &[u8], limits: &DecodeLimits) -> Result<Profile, ProfileError> {
    decode_reader(bytes, limits)
}

/// Reads and decodes a profile file within the default limits.
pub fn read_file(path: &Path) -> Result<Profile, ProfileError> {
    read_file_with(path, &DecodeLimits::default())
}

/// Reads and decodes a profile file within `limits`; the file is streamed, never read whole
/// before the limit is checked.
pub fn read_file_with(path: &Path, limits: &DecodeLimits) -> Result<Profile, ProfileError> {
    let read_error = |source| ProfileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    decode_reader(io::BufReader::new(file), limits).map_err(|e| match e {
        ProfileError::ReadInput(source) => read_error(source),
        other => other,
    })
}

fn decode_reader(input: impl io::BufRead, limits: &DecodeLimits) -> Result<Profile, ProfileError> {
    let (raw, gzipped) = inflate_reader(input, limits)?;
    let not_a_profile = if gzipped {
        ProfileError::GzipNotAProfile
    } else {
        ProfileError::NotAProfile
    };
    let decoded = footprint(&raw).map_err(not_a_profile)?;
    if decoded.bytes > limits.max_size {
        return Err(ProfileError::DecodedTooLarge {
            estimate: ByteSize(decoded.bytes),
            samples: decoded.samples,
            locations: decoded.locations,
            strings: decoded.strings,
            limit: ByteSize(limits.max_size),
        });
    }
    let profile = Profile::decode(raw.as_slice()).map_err(not_a_profile)?;
    drop(raw);
    validate(&profile)?;
    Ok(profile)
}

/// The protobuf bytes of a gzipped or raw profile, at most `limits.max_size` of them, and
/// whether the input was gzipped.
pub(crate) fn inflate_reader(
    mut input: impl io::BufRead,
    limits: &DecodeLimits,
) -> Result<(Vec<u8>, bool), ProfileError> {
    let head = input.fill_buf().map_err(ProfileError::ReadInput)?;
    if head.is_empty() {
        return Err(ProfileError::EmptyInput);
    }
    let gzipped = head.starts_with(&GZIP_MAGIC);
    // One byte past the limit tells "exactly at the limit" from "beyond it".
    let cap = limits.max_size.saturating_add(1);
    let mut raw = Vec::new();
    if gzipped {
        MultiGzDecoder::new(input)
            .take(cap)
            .read_to_end(&mut raw)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ProfileError::TruncatedGzip(e),
                _ => ProfileError::CorruptGzip(e),
            })?;
    } else {
        input
            .take(cap)
            .read_to_end(&mut raw)
            .map_err(ProfileError::ReadInput)?;
    }
    if raw.len() as u64 > limits.max_size {
        return Err(ProfileError::TooLarge {
            limit: ByteSize(limits.max_size),
        });
    }
    Ok((raw, gzipped))
}
