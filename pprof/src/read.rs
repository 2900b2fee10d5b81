//! Decoding and reading profiles, gzipped or raw, validated.

use std::borrow::Cow;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use prost::Message;

use crate::error::ProfileError;
use crate::proto::Profile;
use crate::validate::validate;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes a gzipped or raw pprof protobuf and validates it.
pub fn decode(bytes: &[u8]) -> Result<Profile, ProfileError> {
    let raw = inflate(bytes)?;
    let profile = if bytes.starts_with(&GZIP_MAGIC) {
        Profile::decode(&*raw).map_err(ProfileError::GzipNotAProfile)?
    } else {
        Profile::decode(&*raw).map_err(ProfileError::NotAProfile)?
    };
    validate(&profile)?;
    Ok(profile)
}

/// The protobuf bytes of a gzipped or raw profile.
pub(crate) fn inflate(bytes: &[u8]) -> Result<Cow<'_, [u8]>, ProfileError> {
    if bytes.is_empty() {
        return Err(ProfileError::EmptyInput);
    }
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut raw = Vec::with_capacity(bytes.len() * 4);
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ProfileError::TruncatedGzip(e),
            _ => ProfileError::CorruptGzip(e),
        })?;
    Ok(Cow::Owned(raw))
}

/// Reads and decodes a profile file.
pub fn read_file(path: &Path) -> Result<Profile, ProfileError> {
    let bytes = fs::read(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    decode(&bytes)
}
