//! Encoding and writing profiles: gzip, and atomic replacement of the output file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use crate::error::ProfileError;
use crate::proto::Profile;

/// Serializes and gzips a profile, the on-disk form `go tool pprof` expects.
pub fn encode_gzip(profile: &Profile) -> Vec<u8> {
    let raw = profile.encode_to_vec();
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    encoder
        .write_all(&raw)
        .and_then(|()| encoder.try_finish())
        .expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Writes `profile` gzipped to `path` atomically (see [`write_bytes_atomic`]).
pub fn write_atomic(path: &Path, profile: &Profile) -> Result<(), ProfileError> {
    write_bytes_atomic(path, &encode_gzip(profile))
}

/// Checks that `path` can take a profile (its directory exists; it is absent or a regular file,
/// not a symbolic link) and returns its directory. Recorders call this before they start, so a
/// bad `--output` fails at once instead of after the recording.
pub fn check_output_path(path: &Path) -> Result<&Path, ProfileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(ProfileError::OutputDirMissing(path.to_owned()));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(ProfileError::OutputIsSymlink(path.to_owned()));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(ProfileError::OutputNotRegularFile(path.to_owned()));
        }
        _ => {}
    }
    Ok(dir)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written, synced
/// and renamed over `path`, so readers never see a half-written file. Refuses symbolic links and
/// non-regular files at `path`, and a missing directory.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let dir = check_output_path(path)?;
    let write_error = |source| ProfileError::Write {
        path: path.to_owned(),
        source,
    };
    // Temporary files are private (0600); the result should be readable like any output file,
    // or keep the mode of the file it replaces.
    let permissions = match fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => fs::Permissions::from_mode(0o644),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".timerscope-")
        .suffix(".tmp")
        .permissions(permissions)
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(write_error)?;
    temp.persist(path).map_err(|e| write_error(e.error))?;
    // The rename is durable only once the directory entry is synced too.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(())
}
