//! The inspection store: every round's profiles of every service, plus a small index per service.
//!
//! ```text
//! STORE/<service>/index.json                      rounds (oldest first), pinned baseline
//! STORE/<service>/<profile>/<timestamp>.pb.gz     the profile as the service served it
//! ```
//! A round's timestamp is UTC, `YYYYmmddTHHMMSS.mmmZ`. A profile identical to one already stored
//! (ignoring its time fields) is not written again: the round's index entry names the earlier
//! file. Only the newest rounds are kept (retention by count), and always the pinned baseline;
//! files no round names any more are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use pprof::Profile;
use pprof::{DecodeLimits, ProfileError, encode_gzip, read_file_with, write_bytes_atomic};

use crate::pull::PulledProfile;
use crate::targets::ProfileKind;

/// The index file in each service's directory.
pub const INDEX_FILE: &str = "index.json";
/// `--keep` default: rounds kept per service.
pub const DEFAULT_KEEP_ROUNDS: usize = 100;

/// One service's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceIndex {
    pub service: String,
    /// The pinned baseline round's timestamp (`timerscope inspect baseline set`).
    pub baseline: Option<String>,
    /// Oldest first.
    pub rounds: Vec<Round>,
}

/// The profiles of one service pulled in one inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// `YYYYmmddTHHMMSS.mmmZ`, unique within the service; names the round's files.
    pub timestamp: String,
    /// When the pull started, in nanoseconds since the epoch: the time of the round's points in
    /// trends, also for a profile stored by an earlier round.
    pub time_nanos: i64,
    pub profiles: BTreeMap<ProfileKind, StoredProfile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProfile {
    /// Relative to the service's directory: `<profile>/<timestamp>.pb.gz`, an earlier round's
    /// file when the content was identical.
    pub file: String,
    /// SHA-256 of the profile with `time_nanos` and `duration_nanos` cleared.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store directory {0}")]
    CreateDir(PathBuf, #[source] io::Error),
    #[error("cannot read the store index {0}")]
    ReadIndex(PathBuf, #[source] io::Error),
    #[error(
        "the store index {0} is not readable JSON; move it away to start this service's history anew"
    )]
    CorruptIndex(PathBuf, #[source] serde_json::Error),
    #[error("cannot write to the store")]
    Write(#[source] ProfileError),
    #[error("cannot read a stored profile")]
    ReadProfile(#[source] ProfileError),
    #[error("cannot remove {0}, which retention dropped")]
    Remove(PathBuf, #[source] io::Error),
    #[error(
        "no inspection of service {service:?} is stored here; run `timerscope inspect` first, or check --store"
    )]
    NoRounds { service: String },
    #[error("service {service:?} has no round {timestamp:?}; stored rounds: {available}")]
    UnknownRound {
        service: String,
        timestamp: String,
        available: String,
    },
    #[error("{timestamp:?} matches several rounds of {service:?} ({matches}); give more digits")]
    AmbiguousRound {
        service: String,
        timestamp: String,
        matches: String,
    },
}

impl StoreError {
    /// Whether the error is the user's input (a service or round that does not exist, an index
    /// to move away) rather than a failing file system.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::CorruptIndex(..)
                | StoreError::NoRounds { .. }
                | StoreError::UnknownRound { .. }
                | StoreError::AmbiguousRound { .. }
        )
    }
}

impl ServiceIndex {
    pub fn round(&self, timestamp: &str) -> Option<&Round> {
        self.rounds.iter().find(|r| r.timestamp == timestamp)
    }

    /// The round a user means by `timestamp`: exact, in the RFC 3339 spelling
    /// (`2026-01-27T10:15:30.123Z`), or a unique prefix (`20260127T1015`).
    pub fn find_round(&self, timestamp: &str) -> Result<&Round, StoreError> {
        let wanted: String = timestamp
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        if let Some(round) = self.round(&wanted) {
            return Ok(round);
        }
        let matches: Vec<&Round> = self
            .rounds
            .iter()
            .filter(|r| !wanted.is_empty() && r.timestamp.starts_with(&wanted))
            .collect();
        let list = |rounds: &mut dyn Iterator<Item = &Round>| {
            rounds
                .map(|r| r.timestamp.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match matches.as_slice() {
            [round] => Ok(round),
            [] => Err(StoreError::UnknownRound {
                service: self.service.clone(),
                timestamp: timestamp.to_owned(),
                available: list(&mut self.rounds.iter().rev().take(10)),
            }),
            _ => Err(StoreError::AmbiguousRound {
                service: self.service.clone(),
                timestamp: timestamp.to_owned(),
                matches: list(&mut matches.iter().copied()),
            }),
        }
    }
}

/// The UTC timestamp naming a round: `20260127T101530.123Z`.
pub fn round_timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

fn nanos_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// SHA-256 of the profile without its time fields: two pulls of an unchanged service match.
pub fn content_hash(profile: &Profile) -> String {
    let mut timeless = profile.clone();
    timeless.time_nanos = 0;
    timeless.duration_nanos = 0;
    hex::encode(Sha256::digest(timeless.encode_to_vec()))
}

/// A store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
    limits: DecodeLimits,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            limits: DecodeLimits::default(),
        }
    }

    /// Stored profiles are read within `limits` (a store is a directory anyone with access
    /// may have written to).
    pub fn with_limits(self, limits: DecodeLimits) -> Self {
        Self { limits, ..self }
    }

    /// The store at `root`, created if missing, so that a bad `--store` fails before any pull.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Self::new(root);
        create_dir(&store.root)?;
        Ok(store)
    }

    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.root.join(service)
    }

    /// The service's index; empty when nothing is stored yet.
    pub fn index(&self, service: &str) -> Result<ServiceIndex, StoreError> {
        let path = self.service_dir(service).join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptIndex(path, e))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ServiceIndex {
                service: service.to_owned(),
                ..ServiceIndex::default()
            }),
            Err(e) => Err(StoreError::ReadIndex(path, e)),
        }
    }

    /// The services with an index in the store, sorted by name.
    pub fn services(&self) -> Result<Vec<String>, StoreError> {
        let entries =
            fs::read_dir(&self.root).map_err(|e| StoreError::ReadIndex(self.root.clone(), e))?;
        let mut services: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join(INDEX_FILE).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        services.sort();
        Ok(services)
    }

    fn save(&self, index: &ServiceIndex) -> Result<(), StoreError> {
        let dir = self.service_dir(&index.service);
        create_dir(&dir)?;
        let json = serde_json::to_vec_pretty(index).expect("the index serializes");
        write_bytes_atomic(&dir.join(INDEX_FILE), &json).map_err(StoreError::Write)
    }

    /// Reads a stored profile.
    pub fn load(&self, service: &str, stored: &StoredProfile) -> Result<Profile, StoreError> {
        read_file_with(&self.service_dir(service).join(&stored.file), &self.limits)
            .map_err(StoreError::ReadProfile)
    }

    /// Stores one round's profiles (reusing identical earlier files), appends it to the index,
    /// keeps the newest `keep` rounds plus the pinned baseline, and deletes files no round names
    /// any more. Returns the new round's timestamp.
    pub fn commit_round(
        &self,
        index: &mut ServiceIndex,
        started: SystemTime,
        profiles: &[PulledProfile],
        keep: usize,
    ) -> Result<String, StoreError> {
        let mut time = started;
        let mut timestamp = round_timestamp(time);
        // Two rounds within one millisecond (or a clock stepped back) still get distinct names.
        while index.round(&timestamp).is_some()
            || index.rounds.last().is_some_and(|r| r.timestamp > timestamp)
        {
            time += Duration::from_millis(1);
            timestamp = round_timestamp(time);
        }
        let dir = self.service_dir(&index.service);
        let mut stored = BTreeMap::new();
        for pulled in profiles {
            let sha256 = content_hash(&pulled.profile);
            let earlier = index
                .rounds
                .iter()
                .rev()
                .filter_map(|r| r.profiles.get(&pulled.kind))
                .find(|p| p.sha256 == sha256);
            let file = match earlier {
                Some(earlier) => earlier.file.clone(),
                None => {
                    let file = format!("{}/{timestamp}.pb.gz", pulled.kind);
                    create_dir(&dir.join(pulled.kind.name()))?;
                    let gzipped = if pulled.bytes.starts_with(&[0x1f, 0x8b]) {
                        pulled.bytes.clone()
                    } else {
                        encode_gzip(&pulled.profile)
                    };
                    write_bytes_atomic(&dir.join(&file), &gzipped).map_err(StoreError::Write)?;
                    file
                }
            };
            stored.insert(pulled.kind, StoredProfile { file, sha256 });
        }
        index.rounds.push(Round {
            timestamp: timestamp.clone(),
            time_nanos: nanos_since_epoch(time),
            profiles: stored,
        });

        let referenced_before = referenced_files(index);
        let excess = index.rounds.len().saturating_sub(keep.max(1));
        let mut position = 0;
        index.rounds.retain(|r| {
            position += 1;
            position > excess || index.baseline.as_deref() == Some(r.timestamp.as_str())
        });
        // The index first: a crash then leaves unreferenced files, never missing ones.
        self.save(index)?;
        let referenced = referenced_files(index);
        for file in referenced_before.difference(&referenced) {
            let path = dir.join(file);
            fs::remove_file(&path).map_err(|e| StoreError::Remove(path, e))?;
        }
        Ok(timestamp)
    }

    /// Pins the round `timestamp` (default: the newest) as the service's baseline.
    pub fn set_baseline(
        &self,
        service: &str,
        timestamp: Option<&str>,
    ) -> Result<Round, StoreError> {
        let mut index = self.index(service)?;
        let round = match timestamp {
            Some(timestamp) => index.find_round(timestamp)?,
            None => index.rounds.last().ok_or_else(|| StoreError::NoRounds {
                service: service.to_owned(),
            })?,
        }
        .clone();
        index.baseline = Some(round.timestamp.clone());
        self.save(&index)?;
        Ok(round)
    }
}

fn referenced_files(index: &ServiceIndex) -> BTreeSet<String> {
    index
        .rounds
        .iter()
        .flat_map(|r| r.profiles.values().map(|p| p.file.clone()))
        .collect()
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(|e| StoreError::CreateDir(dir.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pprof::ProfileBuilder;

    fn goroutines(count: i64, time_nanos: i64) -> PulledProfile {
        let mut b = ProfileBuilder::new(&[("goroutine", "count")], "");
        b.time_nanos(time_nanos);
        let loc = b.location(0, 0x10, &[]);
        b.add_sample(&[loc], &[count], &[]);
        let profile = b.build().unwrap();
        PulledProfile {
            kind: ProfileKind::Goroutine,
            bytes: encode_gzip(&profile),
            profile,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn timestamps_are_sortable_utc_names() {
        assert_eq!(round_timestamp(at(0)), "20270115T080000.000Z");
        assert_eq!(
            round_timestamp(at(0) + Duration::from_millis(1234)),
            "20270115T080001.234Z"
        );
    }

    #[test]
    fn identical_profiles_are_stored_once_and_retention_keeps_the_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut index = store.index("api").unwrap();
        assert!(index.rounds.is_empty());
        let goroutine_dir = dir.path().join("api/goroutine");

        let first = store
            .commit_round(&mut index, at(0), &[goroutines(5, 1)], 3)
            .unwrap();
        // Same goroutines, another time: deduplicated.
        let second = store
            .commit_round(&mut index, at(10), &[goroutines(5, 2)], 3)
            .unwrap();
        assert_eq!(files(&goroutine_dir), [format!("{first}.pb.gz")]);
        let file_of = |index: &ServiceIndex, round: usize| {
            index.rounds[round].profiles[&ProfileKind::Goroutine]
                .file
                .clone()
        };
        assert_eq!(file_of(&index, 1), file_of(&index, 0));
        assert_ne!(index.rounds[1].time_nanos, index.rounds[0].time_nanos);
        assert_eq!(index.rounds[1].timestamp, second);

        store.set_baseline("api", Some(&second[..15])).unwrap();
        let mut index = store.index("api").unwrap();
        assert_eq!(index.baseline.as_deref(), Some(second.as_str()));
        for (i, count) in [6, 7, 8].into_iter().enumerate() {
            store
                .commit_round(
                    &mut index,
                    at(20 + 10 * i as u64),
                    &[goroutines(count, 3)],
                    3,
                )
                .unwrap();
        }
        // 5 rounds, keep 3: the first is dropped, the pinned second stays, and its file (the
        // first round's, shared) survives.
        let kept: Vec<&str> = index.rounds.iter().map(|r| r.timestamp.as_str()).collect();
        assert_eq!(kept.len(), 4, "{kept:?}");
        assert_eq!(kept[0], second);
        assert_eq!(files(&goroutine_dir).len(), 4);
        assert_eq!(store.index("api").unwrap(), index, "the index is saved");
        let loaded = store
            .load("api", &index.rounds[0].profiles[&ProfileKind::Goroutine])
            .unwrap();
        assert_eq!(loaded.time_nanos, 1);

        // Unpinned (pinned elsewhere), the old round goes on the next commit.
        store.set_baseline("api", None).unwrap();
        let mut index = store.index("api").unwrap();
        store
            .commit_round(&mut index, at(60), &[goroutines(9, 4)], 3)
            .unwrap();
        assert_eq!(index.rounds.len(), 3);
        assert_eq!(files(&goroutine_dir).len(), 3);
    }

    #[test]
    fn rounds_are_found_by_spelling_or_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut index = store.index("api").unwrap();
        for s in [0, 1] {
            store
                .commit_round(&mut index, at(s), &[goroutines(s as i64 + 1, 0)], 10)
                .unwrap();
        }
        assert_eq!(
            index
                .find_round("2027-01-15T08:00:01.000Z")
                .unwrap()
                .timestamp,
            "20270115T080001.000Z"
        );
        assert!(matches!(
            index.find_round("20270115T0800"),
            Err(StoreError::AmbiguousRound { .. })
        ));
        let error = index.find_round("1999").unwrap_err();
        assert!(
            error.to_string().contains("20270115T080001.000Z"),
            "{error}"
        );
        assert!(error.is_bad_input());
        assert!(matches!(
            store.set_baseline("nobody", None),
            Err(StoreError::NoRounds { .. })
        ));
    }
}
