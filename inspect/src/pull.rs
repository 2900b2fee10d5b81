//! Pulling profiles from services' `net/http/pprof` endpoints over HTTP or HTTPS: a few services at
//! a time, each with timeouts and retries. A service that does not answer is reported as
//! unreachable and the others go on.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, SystemTime};

use pprof::Profile;
use pprof::{ProfileError, decode};

use crate::client::ClientSettings;
use crate::targets::{ProfileKind, Service};

/// How pulls are made.
#[derive(Debug, Clone, PartialEq)]
pub struct PullSettings {
    /// Length of CPU profiles.
    pub cpu_seconds: u32,
    /// Services pulled at the same time.
    pub concurrency: usize,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time for a whole request of a snapshot profile; a CPU profile gets its seconds on top.
    pub request_timeout: Duration,
    /// Tries per profile; a connection that fails, or an HTTP 5xx, is tried again.
    pub attempts: u32,
    /// Wait before the second try; doubled before each further one.
    pub retry_delay: Duration,
    /// TLS roots, extra headers; basic auth comes from each service's URL.
    pub client: ClientSettings,
}

/// `--cpu-seconds` default, as `go tool pprof` uses.
pub const DEFAULT_CPU_SECONDS: u32 = 30;

impl Default for PullSettings {
    fn default() -> Self {
        Self {
            cpu_seconds: DEFAULT_CPU_SECONDS,
            concurrency: 4,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            attempts: 3,
            retry_delay: Duration::from_millis(250),
            client: ClientSettings::default(),
        }
    }
}

/// Profiles larger than this are refused (Go's are rarely above a few MiB).
const MAX_PROFILE_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("no answer from {url} after {attempts} attempt(s)")]
    NoAnswer {
        url: String,
        attempts: u32,
        #[source]
        source: ureq::Error,
    },
    #[error("{url} answered HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("service {service}: unusable URL")]
    BadUrl {
        service: String,
        #[source]
        source: crate::client::ClientError,
    },
    #[error("{url} did not send a pprof profile (is it a net/http/pprof endpoint?)")]
    NotAProfile {
        url: String,
        #[source]
        source: ProfileError,
    },
}

/// One profile as pulled: the bytes as served, and decoded.
#[derive(Debug, Clone)]
pub struct PulledProfile {
    pub kind: ProfileKind,
    pub bytes: Vec<u8>,
    pub profile: Profile,
}

/// What one service gave.
#[derive(Debug)]
pub enum ServicePull {
    /// Its first profile got no answer at all: the service is down or not there.
    Unreachable(PullError),
    Reached {
        /// When the pull started: the round's timestamp.
        started: SystemTime,
        profiles: Vec<PulledProfile>,
        /// Profiles that failed; after a profile got no answer, the rest are not tried.
        failures: Vec<(ProfileKind, PullError)>,
    },
}

/// Pulls every service's profiles, `settings.concurrency` services at a time; results are in the
/// order of `services`.
pub fn pull_all(services: &[Service], settings: &PullSettings) -> Vec<ServicePull> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(settings.connect_timeout))
        .user_agent(concat!("timerscope-inspect/", env!("CARGO_PKG_VERSION")))
        // Checked with the services' URLs by `run_inspect` before any pull.
        .tls_config(
            settings
                .client
                .tls_config(std::iter::empty())
                .unwrap_or_default(),
        )
        .build()
        .into();
    let queue = Mutex::new((0..services.len()).collect::<VecDeque<_>>());
    let results = Mutex::new((0..services.len()).map(|_| None).collect::<Vec<_>>());
    thread::scope(|scope| {
        for _ in 0..settings.concurrency.clamp(1, services.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let Some(index) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let pulled = pull_service(&agent, &services[index], settings);
                    results.lock().unwrap()[index] = Some(pulled);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every service was pulled"))
        .collect()
}

fn pull_service(agent: &ureq::Agent, service: &Service, settings: &PullSettings) -> ServicePull {
    let started = SystemTime::now();
    let mut profiles = Vec::new();
    let mut failures = Vec::new();
    for &kind in &service.profiles {
        match pull_profile(agent, service, kind, settings) {
            Ok(pulled) => profiles.push(pulled),
            Err(error @ PullError::NoAnswer { .. }) => {
                if profiles.is_empty() && failures.is_empty() {
                    return ServicePull::Unreachable(error);
                }
                // It went away mid-round: the remaining pulls would only time out.
                failures.push((kind, error));
                break;
            }
            Err(error) => failures.push((kind, error)),
        }
    }
    ServicePull::Reached {
        started,
        profiles,
        failures,
    }
}

/// What a failed attempt means for the next one.
enum Attempt {
    Retry(PullError),
    Final(PullError),
}

fn pull_profile(
    agent: &ureq::Agent,
    service: &Service,
    kind: ProfileKind,
    settings: &PullSettings,
) -> Result<PulledProfile, PullError> {
    let endpoint = match settings
        .client
        .endpoint(&service.profile_url(kind, settings.cpu_seconds))
    {
        Ok(endpoint) => endpoint,
        Err(source) => {
            return Err(PullError::BadUrl {
                service: service.name.clone(),
                source,
            });
        }
    };
    let url = endpoint.url.clone();
    let timeout = match kind {
        ProfileKind::Cpu => {
            settings.request_timeout + Duration::from_secs(settings.cpu_seconds.into())
        }
        _ => settings.request_timeout,
    };
    let mut delay = settings.retry_delay;
    let mut attempt = 1;
    loop {
        match fetch(agent, &endpoint, timeout, attempt) {
            Ok(bytes) => {
                return decode(&bytes)
                    .map(|profile| PulledProfile {
                        kind,
                        bytes,
                        profile,
                    })
                    .map_err(|source| PullError::NotAProfile { url, source });
            }
            Err(Attempt::Retry(_)) if attempt < settings.attempts.max(1) => {
                thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            Err(Attempt::Retry(error) | Attempt::Final(error)) => return Err(error),
        }
    }
}

fn fetch(
    agent: &ureq::Agent,
    endpoint: &crate::client::Endpoint,
    timeout: Duration,
    attempt: u32,
) -> Result<Vec<u8>, Attempt> {
    let url = endpoint.url.as_str();
    let no_answer = |source| {
        Attempt::Retry(PullError::NoAnswer {
            url: url.to_owned(),
            attempts: attempt,
            source,
        })
    };
    let mut response = endpoint
        .apply(agent.get(url))
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(no_answer)?;
    let status = response.status().as_u16();
    if status != 200 {
        let error = PullError::Status {
            url: url.to_owned(),
            status,
            hint: match status {
                404 => " (is net/http/pprof registered on this listener, under /debug/pprof/?)",
                500 if url.contains("/profile?") => {
                    " (a CPU profile may already be running in the service)"
                }
                _ => "",
            },
        };
        return Err(if status >= 500 {
            Attempt::Retry(error)
        } else {
            Attempt::Final(error)
        });
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_PROFILE_BYTES)
        .read_to_vec()
        .map_err(no_answer)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;
    use pprof::{ProfileBuilder, encode_gzip};

    fn service(port: u16, profiles: &[ProfileKind]) -> Service {
        Service {
            name: format!("svc-{port}"),
            url: format!("http://127.0.0.1:{port}"),
            profiles: profiles.to_vec(),
            threshold_pp: None,
            heap_slope_mib_per_s: None,
            goroutine_slope_per_s: None,
        }
    }

    fn goroutine_profile() -> Vec<u8> {
        let mut b = ProfileBuilder::new(&[("goroutine", "count")], "");
        let loc = b.location(0, 0x10, &[]);
        b.add_sample(&[loc], &[3], &[]);
        encode_gzip(&b.build().unwrap())
    }

    /// A loopback server answering each connection with the next canned response, then closing.
    fn serve(responses: Vec<(u16, Vec<u8>)>) -> (u16, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let mut request_lines = Vec::new();
            for (status, body) in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                request_lines.push(line.trim_end().to_owned());
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                }
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                stream.write_all(&body).unwrap();
            }
            request_lines
        });
        (port, handle)
    }

    fn quick() -> PullSettings {
        PullSettings {
            retry_delay: Duration::from_millis(10),
            request_timeout: Duration::from_secs(5),
            ..PullSettings::default()
        }
    }

    #[test]
    fn server_errors_are_retried_and_client_errors_are_not() {
        let (port, server) = serve(vec![
            (503, b"busy".to_vec()),
            (200, goroutine_profile()),
            (404, b"no".to_vec()),
        ]);
        let pulls = pull_all(
            &[service(port, &[ProfileKind::Goroutine, ProfileKind::Block])],
            &quick(),
        );
        let ServicePull::Reached {
            profiles, failures, ..
        } = &pulls[0]
        else {
            panic!("reached: {pulls:?}");
        };
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].kind, ProfileKind::Goroutine);
        assert_eq!(failures.len(), 1);
        assert!(
            matches!(failures[0].1, PullError::Status { status: 404, .. }),
            "{failures:?}"
        );
        assert_eq!(
            server.join().unwrap(),
            [
                "GET /debug/pprof/goroutine HTTP/1.1",
                "GET /debug/pprof/goroutine HTTP/1.1",
                "GET /debug/pprof/block HTTP/1.1"
            ]
        );
    }

    #[test]
    fn a_closed_port_is_unreachable_and_others_still_pulled() {
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let (port, server) = serve(vec![(200, b"not a profile".to_vec())]);
        let pulls = pull_all(
            &[
                service(closed, &[ProfileKind::Heap, ProfileKind::Goroutine]),
                service(port, &[ProfileKind::Goroutine]),
            ],
            &quick(),
        );
        match &pulls[0] {
            ServicePull::Unreachable(PullError::NoAnswer { attempts, .. }) => {
                assert_eq!(*attempts, quick().attempts)
            }
            other => panic!("unreachable: {other:?}"),
        }
        match &pulls[1] {
            ServicePull::Reached { failures, .. } => {
                assert!(matches!(failures[0].1, PullError::NotAProfile { .. }))
            }
            other => panic!("reached: {other:?}"),
        }
        server.join().unwrap();
    }
}
