//! `--push URL`: sending each profile to a Pyroscope server's ingest API
//! (`POST /ingest?name=APP{labels}&from=UNIX&until=UNIX&format=pprof`, the gzip pprof as body).
//!
//! Capture never waits for the server: profiles to push are hard links in `DIR/spool/`, which a
//! pusher thread sends oldest first, deleting each once the server accepted it. While the server
//! is down the spool grows and the pusher retries with exponential backoff; on restart it resumes
//! from what is left.

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

/// The spool directory inside the profile directory.
pub fn spool_dir(dir: &Path) -> PathBuf {
    dir.join("spool")
}

/// What the ingest API needs to know about one profile, encoded in its spool file name
/// (`<from>-<until>-<app>.pb.gz`) so the spool alone is enough after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushItem {
    pub from: u64,
    pub until: u64,
    /// Pyroscope application name with labels, e.g. `timerscope.server{pid=42}`.
    pub app: String,
}

impl PushItem {
    /// The spool file name; `copy` > 0 tells apart profiles of the same app and whole seconds
    /// (intervals shorter than a second).
    fn file_name(&self, copy: u32) -> String {
        let copy = if copy == 0 {
            String::new()
        } else {
            format!("-{copy}")
        };
        format!(
            "{:020}-{:020}-{}{copy}.pb.gz",
            self.from,
            self.until,
            encode_name(&self.app)
        )
    }

    fn from_file_name(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".pb.gz")?;
        let (from, rest) = stem.split_once('-')?;
        let (until, app) = rest.split_once('-')?;
        // The encoded app name has no '-', so one more is the copy number.
        let app = match app.split_once('-') {
            Some((app, copy)) if copy.parse::<u32>().is_ok() => app,
            Some(_) => return None,
            None => app,
        };
        Some(Self {
            from: from.parse().ok()?,
            until: until.parse().ok()?,
            app: decode_name(app)?,
        })
    }
}

/// File names cannot hold `/`; Pyroscope names can hold `{}=,`. Percent-encode the unsafe.
fn encode_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'{' | b'}' | b'=' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(name.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Adds a written profile to the spool (a hard link: no copy, and retention of the profile
/// directory cannot take it away before it is pushed).
pub fn spool(dir: &Path, profile: &Path, item: &PushItem) -> io::Result<()> {
    let spool = spool_dir(dir);
    fs::create_dir_all(&spool)?;
    let mut copy = 0;
    loop {
        match fs::hard_link(profile, spool.join(item.file_name(copy))) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => copy += 1,
            result => return result,
        }
    }
}

/// The ingest URL for one profile: `BASE/ingest?name=...&from=...&until=...&format=pprof`.
pub fn ingest_url(base: &str, item: &PushItem) -> String {
    let query_escape = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "{}/ingest?name={}&from={}&until={}&format=pprof",
        base.trim_end_matches('/'),
        query_escape(&item.app),
        item.from,
        item.until
    )
}

/// Spooled profiles, oldest first.
fn pending(spool: &Path) -> Vec<(PathBuf, PushItem)> {
    let mut items: Vec<_> = fs::read_dir(spool)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let item = PushItem::from_file_name(&entry.file_name().to_string_lossy())?;
            Some((entry.path(), item))
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

/// Sends spooled profiles until `wake` is closed; each message on `wake` means "new profile".
/// Runs on its own thread: HTTP here is blocking, and capture must never wait for it.
pub fn run_pusher(base_url: String, dir: PathBuf, wake: mpsc::Receiver<()>) {
    let spool = spool_dir(&dir);
    // One deadline per push (a server trickling its answer is cut off at it), bounded
    // headers, and no redirects: a profile goes only to the server named by --push.
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .timeout_connect(Some(Duration::from_secs(5)))
        .max_response_header_size(64 << 10)
        .max_redirects(0)
        .http_status_as_error(true)
        .build()
        .new_agent();
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut failed = false;
        for (path, item) in pending(&spool) {
            let Ok(body) = fs::read(&path) else { continue };
            let url = ingest_url(&base_url, &item);
            match agent
                .post(&url)
                .header("Content-Type", "application/octet-stream")
                .send(&body[..])
            {
                Ok(_) => {
                    let _ = fs::remove_file(&path);
                    backoff = Duration::from_secs(1);
                }
                Err(error) => {
                    eprintln!(
                        "timerscope: push to {base_url} failed ({error}); {} profile(s) spooled, \
                         retrying in {}s",
                        pending(&spool).len(),
                        backoff.as_secs()
                    );
                    failed = true;
                    break;
                }
            }
        }
        let wait = if failed {
            backoff
        } else {
            Duration::from_secs(3600)
        };
        if failed {
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        match wake.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Shutting down: one last try for what is left, without waiting on failures.
                for (path, item) in pending(&spool) {
                    let Ok(body) = fs::read(&path) else { continue };
                    if agent
                        .post(&ingest_url(&base_url, &item))
                        .send(&body[..])
                        .is_err()
                    {
                        break;
                    }
                    let _ = fs::remove_file(&path);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_names_round_trip() {
        let item = PushItem {
            from: 1700000000,
            until: 1700000060,
            app: "timerscope.my-svc{pid=42}".into(),
        };
        for copy in [0, 1, 12] {
            let name = item.file_name(copy);
            assert!(!name.contains('/'));
            assert_eq!(PushItem::from_file_name(&name), Some(item.clone()));
        }
        assert_ne!(item.file_name(0), item.file_name(1));
    }

    #[test]
    fn profiles_of_the_same_second_are_all_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let item = PushItem {
            from: 1700000000,
            until: 1700000001,
            app: "timerscope.svc{pid=42}".into(),
        };
        for i in 0..3 {
            let profile = dir.path().join(format!("p{i}.pb.gz"));
            fs::write(&profile, [i]).unwrap();
            spool(dir.path(), &profile, &item).unwrap();
        }
        let spooled = pending(&spool_dir(dir.path()));
        assert_eq!(spooled.len(), 3);
        assert!(spooled.iter().all(|(_, i)| *i == item));
    }

    #[test]
    fn ingest_urls_escape_the_name() {
        let item = PushItem {
            from: 1,
            until: 2,
            app: "timerscope.svc{pid=42}".into(),
        };
        assert_eq!(
            ingest_url("http://127.0.0.1:4040/", &item),
            "http://127.0.0.1:4040/ingest?name=timerscope.svc%7Bpid%3D42%7D&from=1&until=2&format=pprof"
        );
    }
}
