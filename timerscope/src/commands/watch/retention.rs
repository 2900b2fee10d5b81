//! Keeping the profile directory within `--keep` files and `--max-disk` bytes, oldest first.

use std::{fs, io, path::Path};

/// Deletes the oldest profiles (by name: names start with a sortable start time after the
/// process part, so sort by modification time) until at most `keep` remain and they use at most
/// `max_bytes`. Returns how many were deleted.
pub fn enforce(dir: &Path, keep: Option<usize>, max_bytes: Option<u64>) -> io::Result<usize> {
    let mut profiles = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let meta = entry.metadata()?;
        if meta.is_file() && name.to_string_lossy().ends_with(".pb.gz") {
            profiles.push((meta.modified()?, entry.path(), meta.len()));
        }
    }
    profiles.sort();
    let mut total: u64 = profiles.iter().map(|(_, _, len)| len).sum();
    let mut count = profiles.len();
    let mut deleted = 0;
    for (_, path, len) in profiles {
        let over_count = keep.is_some_and(|keep| count > keep);
        let over_size = max_bytes.is_some_and(|max| total > max);
        if !over_count && !over_size {
            break;
        }
        fs::remove_file(&path)?;
        total -= len;
        count -= 1;
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::{thread::sleep, time::Duration};

    use super::*;

    #[test]
    fn deletes_oldest_first_by_count_and_size() {
        let dir = tempfile::tempdir().unwrap();
        for (i, size) in [100, 200, 300, 400].into_iter().enumerate() {
            fs::write(dir.path().join(format!("p{i}.pb.gz")), vec![0; size]).unwrap();
            // Distinct modification times.
            sleep(Duration::from_millis(20));
        }
        fs::write(dir.path().join("notes.txt"), "not a profile").unwrap();
        assert_eq!(enforce(dir.path(), Some(3), None).unwrap(), 1);
        assert!(!dir.path().join("p0.pb.gz").exists());
        // 900 bytes left; at most 750 allowed: p1 (200) goes.
        assert_eq!(enforce(dir.path(), None, Some(750)).unwrap(), 1);
        assert!(!dir.path().join("p1.pb.gz").exists());
        assert!(dir.path().join("p3.pb.gz").exists());
        assert!(dir.path().join("notes.txt").exists());
    }
}
