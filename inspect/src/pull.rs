//! Pulling profiles from services' `net/http/pprof` endpoints over HTTP or HTTPS, or reading them
//! from local processes' memory: a few services at a time, each with timeouts and retries. A
//! service that does not answer (or a process that does not run) is reported as unreachable and
//! the others go on.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use pprof::Profile;
use pprof::{DecodeLimits, ProfileError, decode_with};

use crate::client::ClientSettings;
use crate::local::{self, LocalError, ProcessProfiles};
use crate::targets::{ProfileKind, Service, Target};

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
    /// What one profile may take: its body as served, inflated, and decoded.
    pub limits: DecodeLimits,
    /// Follow redirects to other hosts (`--follow-redirects`); a redirect within the service's
    /// own scheme, host and port is always followed.
    pub follow_redirects: bool,
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
            limits: DecodeLimits::default(),
            follow_redirects: false,
            client: ClientSettings::default(),
        }
    }
}

/// Response headers larger than this are refused (Go's net/http sends well under 1 KiB).
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Redirects followed per request.
const MAX_REDIRECTS: u32 = 5;

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
    #[error(
        "{url} sent more than {limit}, the --max-profile-size limit; raise --max-profile-size if the profile is genuine"
    )]
    TooLarge {
        url: String,
        limit: bytesize::ByteSize,
    },
    #[error("{url} redirects to {location}, another host; pass --follow-redirects to follow it")]
    RedirectElsewhere { url: String, location: String },
    #[error("{url} answered, but not as an HTTP server should")]
    Misbehaved {
        url: String,
        #[source]
        source: ureq::Error,
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
    /// A TLS handshake that failed: not retried, it would fail the same way.
    #[error(transparent)]
    Tls(crate::client::ClientError),
    #[error(transparent)]
    Local(#[from] LocalError),
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
        /// The process read, for `pid` and `exe` targets.
        pid: Option<u32>,
    },
}

/// Pulls every service's profiles, `settings.concurrency` services at a time; results are in the
/// order of `services`. `processes` reads those of `pid` and `exe` targets.
pub fn pull_all(
    services: &[Service],
    settings: &PullSettings,
    processes: &dyn ProcessProfiles,
) -> Vec<ServicePull> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(settings.connect_timeout))
        .max_response_header_size(MAX_HEADER_BYTES)
        // Redirects come back as responses: `fetch` follows those that stay on the host.
        .max_redirects(if settings.follow_redirects {
            MAX_REDIRECTS
        } else {
            0
        })
        .max_redirects_will_error(settings.follow_redirects)
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
    // One decode at a time: each may take up to the limit, and pulls run concurrently.
    let decoding = Mutex::new(());
    let queue = Mutex::new((0..services.len()).collect::<VecDeque<_>>());
    let results = Mutex::new((0..services.len()).map(|_| None).collect::<Vec<_>>());
    thread::scope(|scope| {
        for _ in 0..settings.concurrency.clamp(1, services.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let Some(index) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let service = &services[index];
                    let pulled = match service.target {
                        Target::Url(_) => pull_service(&agent, service, settings, &decoding),
                        Target::Pid(_) | Target::Exe(_) => read_process(service, processes),
                    };
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

fn pull_service(
    agent: &ureq::Agent,
    service: &Service,
    settings: &PullSettings,
    decoding: &Mutex<()>,
) -> ServicePull {
    let started = SystemTime::now();
    let mut profiles = Vec::new();
    let mut failures = Vec::new();
    for &kind in &service.profiles {
        match pull_profile(agent, service, kind, settings, decoding) {
            Ok(pulled) => profiles.push(pulled),
            Err(error @ (PullError::NoAnswer { .. } | PullError::Tls(_))) => {
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
        pid: None,
    }
}

/// Reads a local target's profiles from its process's memory.
fn read_process(service: &Service, processes: &dyn ProcessProfiles) -> ServicePull {
    let pid = match local::resolve(&service.target) {
        Ok(pid) => pid,
        Err(error) => return ServicePull::Unreachable(error.into()),
    };
    let started = SystemTime::now();
    let mut profiles = Vec::new();
    let mut failures = Vec::new();
    for &kind in &service.profiles {
        match processes.read(pid, kind) {
            Ok(profile) => profiles.push(PulledProfile {
                kind,
                bytes: pprof::encode_gzip(&profile),
                profile,
            }),
            Err(source) => {
                // It exited while read: like a service that went away mid-round.
                if local::resolve(&Target::Pid(pid)).is_err() {
                    if profiles.is_empty() && failures.is_empty() {
                        return ServicePull::Unreachable(LocalError::NoProcess(pid).into());
                    }
                    failures.push((kind, LocalError::NoProcess(pid).into()));
                    break;
                }
                failures.push((kind, LocalError::Read(source).into()));
            }
        }
    }
    ServicePull::Reached {
        started,
        profiles,
        failures,
        pid: Some(pid),
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
    decoding: &Mutex<()>,
) -> Result<PulledProfile, PullError> {
    let url = service
        .profile_url(kind, settings.cpu_seconds)
        .expect("pulled services have a URL");
    let endpoint = match settings.client.endpoint(&url) {
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
        match fetch(agent, &endpoint, timeout, attempt, &settings.limits) {
            Ok(bytes) => {
                let _decoding = decoding.lock().unwrap();
                return decode_with(&bytes, &settings.limits)
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

/// The scheme, host and port of an absolute URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(&url[..scheme.len() + 3 + authority.len()])
}

/// Where a redirect from `url` to `location` goes, if it stays on the same origin.
fn same_origin_target(url: &str, location: &str) -> Option<String> {
    let here = origin(url)?;
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(format!("{here}{location}"));
    }
    (origin(location)? == here).then(|| location.to_owned())
}

fn fetch(
    agent: &ureq::Agent,
    endpoint: &crate::client::Endpoint,
    timeout: Duration,
    attempt: u32,
    limits: &DecodeLimits,
) -> Result<Vec<u8>, Attempt> {
    let url = endpoint.url.as_str();
    let no_answer = |url: &str, source| {
        Attempt::Retry(PullError::NoAnswer {
            url: url.to_owned(),
            attempts: attempt,
            source,
        })
    };
    // A server that answers, but too big or malformed, or fails its TLS handshake, is not
    // retried.
    let answered_badly = |url: &str, source: ureq::Error| {
        if let Some(reason) = crate::client::tls_failure(&source) {
            return Attempt::Final(PullError::Tls(crate::client::ClientError::Tls {
                url: url.to_owned(),
                reason,
            }));
        }
        match source {
            ureq::Error::BodyExceedsLimit(_) => Attempt::Final(PullError::TooLarge {
                url: url.to_owned(),
                limit: bytesize::ByteSize(limits.max_size),
            }),
            ureq::Error::LargeResponseHeader(..)
            | ureq::Error::TooManyRedirects
            | ureq::Error::RedirectFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BadUri(_) => Attempt::Final(PullError::Misbehaved {
                url: url.to_owned(),
                source,
            }),
            other => no_answer(url, other),
        }
    };
    // One deadline for the whole request, redirects and body included: a server trickling a
    // byte a second is cut off at it.
    let deadline = Instant::now() + timeout;
    let mut current = url.to_owned();
    let mut redirects = 0;
    let mut response = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let response = endpoint
            .apply(agent.get(&current))
            .config()
            .timeout_global(Some(left))
            .build()
            .call()
            .map_err(|e| answered_badly(&current, e))?;
        if !response.status().is_redirection() {
            break response;
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match same_origin_target(&current, &location) {
            Some(next) if redirects < MAX_REDIRECTS => {
                redirects += 1;
                current = next;
            }
            Some(_) => {
                return Err(answered_badly(&current, ureq::Error::TooManyRedirects));
            }
            None => {
                return Err(Attempt::Final(PullError::RedirectElsewhere {
                    url: current,
                    location,
                }));
            }
        }
    };
    let status = response.status().as_u16();
    if status != 200 {
        let error = PullError::Status {
            url: current.clone(),
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
        .limit(limits.max_size)
        .read_to_vec()
        .map_err(|e| answered_badly(&current, e))
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
            target: Target::Url(format!("http://127.0.0.1:{port}")),
            profiles: profiles.to_vec(),
            threshold_pp: None,
            heap_slope_mib_per_s: None,
            goroutine_slope_per_s: None,
        }
    }

    /// URL targets only: these tests read no process.
    struct NoProcesses;

    impl ProcessProfiles for NoProcesses {
        fn read(&self, pid: u32, _: ProfileKind) -> Result<Profile, local::BoxError> {
            Err(format!("pid {pid}: not read in these tests").into())
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
            &NoProcesses,
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
            &NoProcesses,
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

    /// A loopback server running `misbehave` on each connection after reading its request
    /// head (the request line is passed), until the test ends.
    fn misbehaving(misbehave: fn(&mut std::net::TcpStream, &str)) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    reader.read_line(&mut request).unwrap();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0
                            || header.trim().is_empty()
                        {
                            break;
                        }
                    }
                    misbehave(&mut stream, request.trim_end());
                });
            }
        });
        port
    }

    fn pull_one(port: u16, settings: &PullSettings) -> (Duration, ServicePull) {
        let started = Instant::now();
        let mut pulls = pull_all(
            &[service(port, &[ProfileKind::Goroutine])],
            settings,
            &NoProcesses,
        );
        (started.elapsed(), pulls.remove(0))
    }

    #[test]
    fn a_server_trickling_a_byte_a_second_is_cut_off_at_the_deadline() {
        let port = misbehaving(|stream, _| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n");
            for _ in 0..120 {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs(1));
            }
        });
        let settings = PullSettings {
            request_timeout: Duration::from_secs(2),
            attempts: 1,
            ..quick()
        };
        let (took, pull) = pull_one(port, &settings);
        assert!(
            matches!(&pull, ServicePull::Unreachable(PullError::NoAnswer { .. })),
            "{pull:?}"
        );
        // Not a timing assertion on the code: the server would go on for two minutes.
        assert!(took < Duration::from_secs(60), "{took:?}");
    }

    #[test]
    fn an_endless_chunked_body_stops_at_the_limit() {
        let port = misbehaving(|stream, _| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "z".repeat(64 << 10));
            while stream.write_all(chunk.as_bytes()).is_ok() {}
        });
        let settings = PullSettings {
            limits: DecodeLimits { max_size: 1 << 20 },
            ..quick()
        };
        let (_, pull) = pull_one(port, &settings);
        let ServicePull::Reached { failures, .. } = &pull else {
            panic!("{pull:?}");
        };
        let error = &failures[0].1;
        assert!(matches!(error, PullError::TooLarge { .. }), "{error:?}");
        assert!(error.to_string().contains("--max-profile-size"), "{error}");
    }

    #[test]
    fn endless_headers_are_refused() {
        let port = misbehaving(|stream, _| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
            while stream
                .write_all(b"x-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
                .is_ok()
            {}
        });
        let (_, pull) = pull_one(port, &quick());
        let ServicePull::Reached { failures, .. } = &pull else {
            panic!("{pull:?}");
        };
        assert!(
            matches!(failures[0].1, PullError::Misbehaved { .. }),
            "{failures:?}"
        );
    }

    #[test]
    fn redirects_stay_on_the_host_unless_followed() {
        // The other host: a server of its own, on another port.
        let elsewhere = misbehaving(|stream, _| {
            let body = goroutine_profile();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        });
        static ELSEWHERE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        ELSEWHERE.store(elsewhere, std::sync::atomic::Ordering::Relaxed);
        let port = misbehaving(|stream, request| {
            if request.contains("/moved/") {
                let body = goroutine_profile();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            } else if request.contains("elsewhere") {
                let port = ELSEWHERE.load(std::sync::atomic::Ordering::Relaxed);
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/x\r\ncontent-length: 0\r\n\r\n"
                );
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 301 Moved\r\nlocation: /moved/goroutine\r\ncontent-length: 0\r\n\r\n",
                );
            }
        });
        // Within the host: followed.
        let (_, pull) = pull_one(port, &quick());
        let ServicePull::Reached {
            profiles, failures, ..
        } = &pull
        else {
            panic!("{pull:?}");
        };
        assert_eq!((profiles.len(), failures.len()), (1, 0), "{failures:?}");
        // To another host: refused, naming the flag; followed with it.
        let mut away = service(port, &[ProfileKind::Goroutine]);
        away.target = Target::Url(format!("http://127.0.0.1:{port}/elsewhere"));
        let pulls = pull_all(std::slice::from_ref(&away), &quick(), &NoProcesses);
        let ServicePull::Reached { failures, .. } = &pulls[0] else {
            panic!("{pulls:?}");
        };
        assert!(
            matches!(failures[0].1, PullError::RedirectElsewhere { .. }),
            "{failures:?}"
        );
        assert!(failures[0].1.to_string().contains("--follow-redirects"));
        let following = PullSettings {
            follow_redirects: true,
            ..quick()
        };
        let pulls = pull_all(&[away], &following, &NoProcesses);
        let ServicePull::Reached {
            profiles, failures, ..
        } = &pulls[0]
        else {
            panic!("{pulls:?}");
        };
        assert_eq!((profiles.len(), failures.len()), (1, 0), "{failures:?}");
    }
}
