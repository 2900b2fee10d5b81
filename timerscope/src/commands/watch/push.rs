//! `--push URL`: sending each profile to a Pyroscope server through its push API,
//! `POST URL/push.v1.PusherService/Push` (Connect protocol, unary, `application/proto` body
//! `PushRequest{series: [{labels, samples: [{raw_profile, ID}]}]}`; see docs/profile-stores.md).
//! Unlike the legacy `/ingest`, the push API keeps every sample type's name and unit.
//!
//! Capture never waits for the server: profiles to push are hard links in `DIR/spool/` (with
//! their series labels beside them in `NAME.labels.json`), which a pusher thread sends oldest
//! first, deleting each once the server accepted it. While the server is down the spool grows
//! within `--spool-max` and the pusher retries with jittered exponential backoff; on restart it
//! resumes from what is left. A permanent rejection (4xx other than 408 and 429) moves the
//! profile to `DIR/spool/rejected/` instead of blocking the queue.

use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, SystemTime},
};

use inspect::client::Endpoint;
use sha2::Digest as _;

/// The spool directory inside the profile directory.
pub fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool")
}

/// Where permanently rejected profiles are kept (for a look, and counted in `--max-disk`).
pub fn rejected_dir(dir: &Path) -> PathBuf {
    spool_dir(dir).join("rejected")
}

const LABELS_SUFFIX: &str = ".labels.json";

/// The push API path under the server's base URL.
pub const PUSH_PATH: &str = "/push.v1.PusherService/Push";

/// Series labels of one profile, sorted by name (as Pyroscope keeps them).
pub type Labels = Vec<(String, String)>;

/// Counters shared by the pusher and the metrics page.
#[derive(Debug, Default)]
pub struct PushCounters {
    /// Attempts that failed: no answer, a server error, or a rejection.
    pub failures: AtomicU64,
    /// Profiles the server refused for good (moved aside).
    pub rejected: AtomicU64,
    /// Profiles deleted from the spool unsent, to stay within `--spool-max` or `--max-disk`.
    pub evicted: AtomicU64,
    /// Profiles waiting in the spool now.
    pub spooled: AtomicU64,
}

/// `--spool-max`: how much the spool may hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolLimits {
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

impl std::str::FromStr for SpoolLimits {
    type Err = String;

    /// `SIZE`, `AGE` or `SIZE,AGE`, e.g. `512MiB,6h`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut limits = SpoolLimits::default();
        for part in text.split(',').map(str::trim) {
            if let Ok(age) = humantime::parse_duration(part) {
                limits.max_age = Some(age);
            } else if let Ok(size) = part.parse::<bytesize::ByteSize>() {
                limits.max_bytes = Some(size.as_u64());
            } else {
                return Err(format!(
                    "{part:?} is neither a size (512MiB) nor an age (6h); e.g. --spool-max 512MiB,6h"
                ));
            }
        }
        Ok(limits)
    }
}

/// Adds a written profile to the spool: a hard link (no copy, and retention of the profile
/// directory cannot take it away before it is pushed), its labels written first.
pub fn spool(dir: &Path, profile: &Path, labels: &Labels) -> io::Result<()> {
    let spool = spool_dir(dir);
    fs::create_dir_all(&spool)?;
    let name = profile
        .file_name()
        .ok_or_else(|| io::Error::other("profile path has no file name"))?;
    let link = spool.join(name);
    let labels_path = labels_path(&link);
    let json = serde_json::to_vec(labels).map_err(io::Error::other)?;
    let partial = labels_path.with_extension("partial");
    fs::write(&partial, json)?;
    fs::rename(&partial, &labels_path)?;
    fs::hard_link(profile, &link)
}

fn labels_path(profile: &Path) -> PathBuf {
    let name = profile.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.strip_suffix(".pb.gz").unwrap_or(&name);
    profile.with_file_name(format!("{stem}{LABELS_SUFFIX}"))
}

/// One spooled profile.
struct Spooled {
    path: PathBuf,
    modified: SystemTime,
    len: u64,
    /// Whether the profile directory still has this file (then the spool costs no disk).
    shared: bool,
}

/// Spooled profiles in `spool`, oldest first.
fn pending(spool: &Path) -> Vec<Spooled> {
    let mut items: Vec<_> = fs::read_dir(spool)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pb.gz"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| Spooled {
                path: e.path(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                len: meta.len(),
                shared: meta.nlink() > 1,
            })
        })
        .collect();
    items.sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
    items
}

fn remove_spooled(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(labels_path(path));
}

/// Bytes the spool (rejected profiles included) holds that the profile directory no longer
/// does: what the spool adds to the disk use `--max-disk` bounds.
pub fn spool_only_bytes(dir: &Path) -> u64 {
    [spool_dir(dir), rejected_dir(dir)]
        .iter()
        .flat_map(|d| pending(d))
        .filter(|s| !s.shared)
        .map(|s| s.len)
        .sum()
}

/// Deletes the oldest spooled profiles (rejected ones first) until the spool is within
/// `limits` and its own bytes within `max_disk`; each deletion is counted.
pub fn trim_spool(dir: &Path, limits: SpoolLimits, max_disk: Option<u64>, counters: &PushCounters) {
    let now = SystemTime::now();
    let mut items: Vec<Spooled> = pending(&rejected_dir(dir));
    items.extend(pending(&spool_dir(dir)));
    let mut total: u64 = items.iter().map(|s| s.len).sum();
    let mut own: u64 = items.iter().filter(|s| !s.shared).map(|s| s.len).sum();
    for item in items {
        let too_old = limits
            .max_age
            .is_some_and(|age| now.duration_since(item.modified).unwrap_or_default() > age);
        let too_big = limits.max_bytes.is_some_and(|max| total > max);
        let over_disk = max_disk.is_some_and(|max| own > max);
        if !too_old && !too_big && !over_disk {
            continue;
        }
        remove_spooled(&item.path);
        total -= item.len;
        if !item.shared {
            own -= item.len;
        }
        counters.evicted.fetch_add(1, Ordering::Relaxed);
    }
    counters
        .spooled
        .store(pending(&spool_dir(dir)).len() as u64, Ordering::Relaxed);
}

/// The push API's messages (push/v1/push.proto and types/v1/types.proto in Pyroscope).
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub series: Vec<RawProfileSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RawProfileSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<LabelPair>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<RawSample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RawSample {
        #[prost(bytes = "vec", tag = "1")]
        pub raw_profile: Vec<u8>,
        #[prost(string, tag = "2")]
        pub id: String,
    }
}

/// The request body for one profile. The sample ID is a UUID derived from the file name, so a
/// retried push of the same profile carries the same ID.
fn push_request(name: &str, labels: &Labels, profile: Vec<u8>) -> Vec<u8> {
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4 layout
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = hex::encode(uuid);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let request = wire::PushRequest {
        series: vec![wire::RawProfileSeries {
            labels: labels
                .iter()
                .map(|(name, value)| wire::LabelPair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: vec![wire::RawSample {
                raw_profile: profile,
                id,
            }],
        }],
    };
    prost::Message::encode_to_vec(&request)
}

/// What one push attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Try again later: no answer, 408, 429 or 5xx.
    Retry(String),
    /// The server refused this profile for good.
    Rejected(String),
}

/// Where pushes go, and how.
pub struct Pusher {
    /// The server's base URL (without user info) and the headers every push carries.
    pub endpoint: Endpoint,
    pub agent: ureq::Agent,
}

impl Pusher {
    pub fn new(endpoint: Endpoint, tls: ureq::tls::TlsConfig) -> Self {
        // One deadline per push (a server trickling its answer is cut off at it), bounded
        // headers, and no redirects: a profile goes only to the server named by --push.
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .max_response_header_size(64 << 10)
            .max_redirects(0)
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("timerscope/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self { endpoint, agent }
    }

    /// Pushes one spooled profile.
    pub fn push(&self, profile: &Path) -> Outcome {
        let name = profile.file_name().unwrap_or_default().to_string_lossy();
        let (Ok(body), Ok(labels)) = (fs::read(profile), fs::read(labels_path(profile))) else {
            return Outcome::Rejected(format!("{name}: spool entry unreadable"));
        };
        let Ok(labels) = serde_json::from_slice::<Labels>(&labels) else {
            return Outcome::Rejected(format!("{name}: labels unreadable"));
        };
        let url = format!("{}{PUSH_PATH}", self.endpoint.url.trim_end_matches('/'));
        let request = self
            .endpoint
            .apply(self.agent.post(&url))
            .header("Content-Type", "application/proto")
            .header("Connect-Protocol-Version", "1");
        match request.send(&push_request(&name, &labels, body)[..]) {
            Err(error) => Outcome::Retry(error.to_string()),
            Ok(response) => match response.status().as_u16() {
                200..=299 => Outcome::Accepted,
                status @ (408 | 429 | 500..) => Outcome::Retry(format!("HTTP {status}")),
                status => Outcome::Rejected(format!("HTTP {status}")),
            },
        }
    }
}

/// The wait before the next retry: `backoff` less up to half of it at random, so agents that
/// failed together do not retry together.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(1.0 - fastrand::f64() / 2.0)
}

/// Sends spooled profiles until `wake` is closed; each message on `wake` means "new profile".
/// Runs on its own thread: HTTP here is blocking, and capture must never wait for it.
pub fn run_pusher(
    pusher: Pusher,
    dir: PathBuf,
    counters: Arc<PushCounters>,
    wake: mpsc::Receiver<()>,
) {
    let spool = spool_dir(&dir);
    let shown = pusher.endpoint.url.clone();
    let mut backoff = Duration::from_secs(1);
    // Sends what is pending; whether an attempt must be retried later.
    let drain = |counters: &PushCounters| -> Option<String> {
        for item in pending(&spool) {
            let outcome = pusher.push(&item.path);
            if outcome != Outcome::Accepted {
                counters.failures.fetch_add(1, Ordering::Relaxed);
            }
            match outcome {
                Outcome::Accepted => remove_spooled(&item.path),
                Outcome::Rejected(why) => {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    let rejected = rejected_dir(&dir);
                    let name = item.path.file_name().unwrap_or_default();
                    let moved = fs::create_dir_all(&rejected)
                        .and_then(|()| fs::rename(&item.path, rejected.join(name)));
                    let labels = labels_path(&item.path);
                    let _ = fs::rename(&labels, labels_path(&rejected.join(name)));
                    if moved.is_err() {
                        remove_spooled(&item.path);
                    }
                    eprintln!(
                        "timerscope: push to {shown} rejected {} ({why}); moved to {}",
                        name.to_string_lossy(),
                        rejected.display()
                    );
                }
                Outcome::Retry(why) => {
                    counters
                        .spooled
                        .store(pending(&spool).len() as u64, Ordering::Relaxed);
                    return Some(why);
                }
            }
        }
        counters.spooled.store(0, Ordering::Relaxed);
        None
    };
    loop {
        let wait = match drain(&counters) {
            Some(why) => {
                let wait = jittered(backoff);
                eprintln!(
                    "timerscope: push to {shown} failed ({why}); {} profile(s) spooled, \
                     retrying in {:.1}s",
                    counters.spooled.load(Ordering::Relaxed),
                    wait.as_secs_f64()
                );
                backoff = (backoff * 2).min(Duration::from_secs(60));
                wait
            }
            None => {
                backoff = Duration::from_secs(1);
                Duration::from_secs(3600)
            }
        };
        match wake.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Shutting down: one last try for what is left, without waiting on failures.
                drain(&counters);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_limits_parse_sizes_and_ages() {
        assert_eq!(
            "512MiB,6h".parse::<SpoolLimits>().unwrap(),
            SpoolLimits {
                max_bytes: Some(512 << 20),
                max_age: Some(Duration::from_secs(6 * 3600)),
            }
        );
        assert_eq!(
            "1GiB".parse::<SpoolLimits>().unwrap().max_bytes,
            Some(1 << 30)
        );
        assert!("lots".parse::<SpoolLimits>().is_err());
    }

    #[test]
    fn the_spool_is_trimmed_oldest_first_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let counters = PushCounters::default();
        let labels: Labels = vec![("service_name".into(), "svc".into())];
        for i in 0..4 {
            let profile = dir.path().join(format!("svc-{i}.pb.gz"));
            fs::write(&profile, vec![0; 100]).unwrap();
            spool(dir.path(), &profile, &labels).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // All shared with the profile directory: the spool costs no disk of its own.
        assert_eq!(spool_only_bytes(dir.path()), 0);
        fs::remove_file(dir.path().join("svc-0.pb.gz")).unwrap();
        assert_eq!(spool_only_bytes(dir.path()), 100);
        let limits = SpoolLimits {
            max_bytes: Some(250),
            max_age: None,
        };
        trim_spool(dir.path(), limits, None, &counters);
        assert_eq!(counters.evicted.load(Ordering::Relaxed), 2);
        assert_eq!(counters.spooled.load(Ordering::Relaxed), 2);
        let left: Vec<_> = pending(&spool_dir(dir.path()))
            .into_iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["svc-2.pb.gz", "svc-3.pb.gz"]);
        assert!(!spool_dir(dir.path()).join("svc-0.labels.json").exists());
        let aged = SpoolLimits {
            max_bytes: None,
            max_age: Some(Duration::ZERO),
        };
        trim_spool(dir.path(), aged, None, &counters);
        assert_eq!(counters.spooled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn retried_pushes_of_a_profile_carry_the_same_uuid() {
        let labels: Labels = vec![("service_name".into(), "svc".into())];
        let a = push_request("svc-1.pb.gz", &labels, vec![1]);
        let b = push_request("svc-1.pb.gz", &labels, vec![1]);
        let c = push_request("svc-2.pb.gz", &labels, vec![1]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let decoded: wire::PushRequest = prost::Message::decode(&a[..]).unwrap();
        let id = &decoded.series[0].samples[0].id;
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
}
