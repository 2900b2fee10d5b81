//! `timerscope watch`: interval profiles that add up, across a restart of the target, and pushes
//! to a profile store that survive the store being down.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::{Fixture, SYSCALL_MMAP, count, cum, cum_through, read_profile, timerscope};
use pprof::ResolvedProfile;
use timerscope_tests::{
    Variant, cache_dir, fixture_path, fixture_sources_root, go_binary, reference_go,
};

/// A running `timerscope watch` whose stderr lines arrive on a channel.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watcher {
    fn start(args: &[&str]) -> Self {
        Self::start_with_env(&[], args)
    }

    fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = Command::new(timerscope())
            .arg("watch")
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("watch: {line}");
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a stderr line containing `needle`, and returns it.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("timerscope watch never said {needle:?}");
    }

    /// SIGTERM, then the exit status must be success.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watch exits 0 on SIGTERM: {status}");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The profiles in `dir` by pid, each list in time order.
fn profiles_by_pid(dir: &Path) -> BTreeMap<u32, Vec<(PathBuf, ResolvedProfile)>> {
    let mut by_pid: BTreeMap<u32, Vec<(PathBuf, ResolvedProfile)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with(".pb.gz") {
            continue;
        }
        let profile = read_profile(&path);
        let pid = profile.comment_value("pid").unwrap().parse().unwrap();
        by_pid.entry(pid).or_default().push((path, profile));
    }
    for profiles in by_pid.values_mut() {
        profiles.sort_by_key(|(_, p)| p.time_nanos);
    }
    by_pid
}

/// Runs one churn process under the watcher: started once the watcher has attached, so every
/// timer call of it is seen.
fn run_churn_under(watcher: &Watcher, seconds: &str) -> (u32, serde_json::Value) {
    let go = reference_go();
    let mut fixture = Fixture::spawn(
        "timers",
        go,
        Variant::Normal,
        &["churn", "-n", "0", "-duration", seconds],
    );
    let pid = fixture.pid();
    watcher.wait_for(&format!("watching pid {pid}"));
    fixture.start_scenario();
    let summary = fixture.summary();
    watcher.wait_for(&format!("pid {pid} exited"));
    (pid, summary)
}

#[test]
fn intervals_add_up_across_a_restart_of_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fixture_path("timers", reference_go(), Variant::Normal).unwrap();
    // Churn runs flat out, far over the default budget of 1% of a CPU, which would sample its
    // stacks: exact counts at main.churn need a budget that never steps down. Probes on every
    // thread can cost more than one CPU (101% was seen on 2 cores), so the budget is more than
    // all of the machine's CPUs together.
    let cpus = std::thread::available_parallelism().map_or(64, |n| n.get());
    let unreachable_budget = (100 * (cpus + 1)).to_string();
    let watcher = Watcher::start(&[
        "--exe",
        binary.to_str().unwrap(),
        "--events",
        "all",
        "--max-overhead",
        &unreachable_budget,
        "--interval",
        "1s",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let (first, first_summary) = run_churn_under(&watcher, "2500ms");
    // The same binary again, as after a restart: a new pid, picked up by itself.
    let (second, second_summary) = run_churn_under(&watcher, "2500ms");
    watcher.stop();

    let by_pid = profiles_by_pid(dir.path());
    assert_eq!(
        by_pid.keys().copied().collect::<Vec<_>>(),
        vec![first.min(second), first.max(second)]
    );
    for (pid, summary) in [(first, first_summary), (second, second_summary)] {
        let profiles = &by_pid[&pid];
        assert!(
            profiles.len() >= 3,
            "pid {pid}: several intervals, got {}",
            profiles.len()
        );
        // No interval missing or duplicated: each starts where the previous one ended.
        for pair in profiles.windows(2) {
            let (earlier, later) = (&pair[0].1, &pair[1].1);
            assert_eq!(
                earlier.time_nanos + earlier.duration_nanos,
                later.time_nanos,
                "pid {pid}: {} and {} do not touch",
                pair[0].0.display(),
                pair[1].0.display()
            );
        }
        for (sample_type, key) in [
            ("timers_created", "created"),
            ("timers_reset", "reset"),
            ("timers_stopped", "stopped"),
        ] {
            let total: i64 = profiles
                .iter()
                .map(|(_, p)| cum(p, sample_type, "main.churn", None))
                .sum();
            assert_eq!(
                total,
                count(&summary, key),
                "pid {pid}: {sample_type} over all intervals"
            );
        }
    }
}

/// One request the fake profile store received.
struct Ingest {
    request_line: String,
    /// Header names lowercased.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Pyroscope's push API messages, written here from push/v1/push.proto and types/v1/types.proto
/// (not shared with timerscope's encoder, so a wrong tag fails this test).
mod push_api {
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

/// A minimal HTTP server on `listener` that answers 200 to everything and reports each request.
fn profile_store(listener: TcpListener, received: mpsc::Sender<Ingest>) {
    profile_store_answering(listener, received, "200 OK", None);
}

/// The same, answering every request with `status`, over TLS with `tls`.
fn profile_store_answering(
    listener: TcpListener,
    received: mpsc::Sender<Ingest>,
    status: &'static str,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(tls::Stream::accept(stream, tls.as_ref()));
            let mut request_line = String::new();
            // A client that gave up on the TLS handshake sends no request.
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = BTreeMap::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                }
            }
            let length = headers
                .get("content-length")
                .map_or(0, |l| l.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            // Reported before the answer: a test that saw the client act on the answer finds
            // the request already here.
            let request = Ingest {
                request_line: request_line.trim().to_owned(),
                headers,
                body,
            };
            if received.send(request).is_err() {
                return;
            }
            let stream = reader.get_mut();
            stream
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .unwrap();
            stream.finish().unwrap();
        }
    });
}

#[test]
fn pushes_reach_the_profile_store_even_after_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let go = reference_go();
    // The PIE build: a different file from the one the --exe test watches concurrently.
    let mut fixture = Fixture::spawn(
        "timers",
        go,
        Variant::Pie,
        &["afterfunc-leak", "-n", "30", "-hold", "60s"],
    );
    // A port nobody listens on yet: the store is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Basic auth from the URL; the tenant header from the environment.
    let url = format!("http://agent:s3cret@127.0.0.1:{port}");
    let watcher = Watcher::start_with_env(
        &[("TS_TEST_TENANT", "team-a")],
        &[
            "--pid",
            &fixture.pid().to_string(),
            "--interval",
            "1s",
            "--dir",
            dir.path().to_str().unwrap(),
            "--push",
            &url,
            "--push-header",
            "X-Scope-OrgID: env:TS_TEST_TENANT",
            "--label",
            "env=test",
            "--events",
            "all",
        ],
    );
    watcher.wait_for(&format!("watching pid {}", fixture.pid()));
    fixture.start_scenario();
    let summary = fixture.summary();
    watcher.wait_for("push to");
    thread::sleep(Duration::from_secs(2));
    let spooled = std::fs::read_dir(dir.path().join("spool")).unwrap().count();
    assert!(
        spooled >= 2,
        "profiles wait in the spool while the store is down: {spooled}"
    );

    let (send, received) = mpsc::channel();
    profile_store(TcpListener::bind(("127.0.0.1", port)).unwrap(), send);
    // The pusher retries with backoff (at most 60 s); give it time to drain the spool.
    let deadline = Instant::now() + Duration::from_secs(45);
    while std::fs::read_dir(dir.path().join("spool")).unwrap().count() > 0
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(200));
    }
    watcher.stop();

    let written = profiles_by_pid(dir.path()).remove(&fixture.pid()).unwrap();
    let requests: Vec<Ingest> = received.try_iter().collect();
    assert_eq!(
        requests.len(),
        written.len(),
        "every interval pushed once, none lost"
    );
    let mut live_total = 0;
    for request in &requests {
        let (method, rest) = request.request_line.split_once(' ').unwrap();
        let target = rest.split(' ').next().unwrap();
        assert_eq!(method, "POST");
        assert_eq!(target, "/push.v1.PusherService/Push");
        let header = |name: &str| request.headers.get(name).map(String::as_str);
        assert_eq!(header("content-type"), Some("application/proto"));
        assert_eq!(header("connect-protocol-version"), Some("1"));
        assert_eq!(header("x-scope-orgid"), Some("team-a"));
        // base64("agent:s3cret")
        assert_eq!(header("authorization"), Some("Basic YWdlbnQ6czNjcmV0"));
        let push: push_api::PushRequest = prost::Message::decode(&request.body[..]).unwrap();
        assert_eq!(push.series.len(), 1);
        let series = &push.series[0];
        let labels: BTreeMap<&str, &str> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "labels sorted by name");
        assert_eq!(labels.get("__name__"), Some(&"timerscope"));
        assert_eq!(labels.get("env"), Some(&"test"));
        let exe = labels["exe"];
        assert!(exe.starts_with("timers"), "{labels:?}");
        assert_eq!(labels.get("service_name"), Some(&exe));
        assert!(!labels.get("hostname").unwrap_or(&"").is_empty());
        assert!(
            !labels.contains_key("pid"),
            "no pid in the series: {labels:?}"
        );
        assert_eq!(series.samples.len(), 1);
        assert_eq!(series.samples[0].id.len(), 36);
        let raw = &series.samples[0].raw_profile;
        assert_eq!(raw[..2], [0x1f, 0x8b], "gzip pprof as written");
        let profile = ResolvedProfile::new(&pprof::decode(raw).unwrap());
        live_total = live_total.max(cum(&profile, "timers_live", "main.leakAfterFuncs", None));
    }
    assert_eq!(live_total, count(&summary, "pending"));
}

#[test]
fn sighup_rotates_now_and_sigterm_writes_the_last_interval() {
    let dir = tempfile::tempdir().unwrap();
    // The stripped build: a different file from the ones the other tests watch by --exe.
    let mut fixture = Fixture::spawn(
        "timers",
        reference_go(),
        Variant::Stripped,
        &["afterfunc-leak", "-n", "10", "-hold", "60s"],
    );
    let watcher = Watcher::start(&[
        "--pid",
        &fixture.pid().to_string(),
        "--interval",
        "1h",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    watcher.wait_for(&format!("watching pid {}", fixture.pid()));
    fixture.start_scenario();
    fixture.summary();
    let profiles = || {
        profiles_by_pid(dir.path())
            .remove(&fixture.pid())
            .unwrap_or_default()
    };
    let hangup = |expected: usize| {
        let pid = nix::unistd::Pid::from_raw(watcher.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while profiles().len() < expected && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            profiles().len(),
            expected,
            "SIGHUP wrote an interval at once"
        );
    };
    hangup(1);
    hangup(2);
    watcher.stop();
    let profiles = profiles();
    assert_eq!(profiles.len(), 3, "SIGTERM wrote the last interval");
    for pair in profiles.windows(2) {
        assert_eq!(
            pair[0].1.time_nanos + pair[0].1.duration_nanos,
            pair[1].1.time_nanos
        );
    }
    let created: i64 = profiles
        .iter()
        .map(|(_, p)| cum(p, "timers_created", "main.leakAfterFuncs", None))
        .sum();
    assert_eq!(created, 10);
}

/// A free loopback address for `--metrics-addr`.
fn free_metrics_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The metrics page at `addr`.
fn metrics_page(addr: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut page = String::new();
    let _ = stream.read_to_string(&mut page);
    page
}

/// The value of the first metrics line that starts with `prefix`.
fn metric(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls the metrics page until `ready` accepts it (the page is re-rendered every 5 s).
fn metrics_when(addr: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = metrics_page(addr);
        if ready(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{page}"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn watch_by_default_probes_creation_only_and_still_names_the_leaking_site() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_metrics_addr();
    // PIE-stripped: a file no other test watches by --exe.
    let mut fixture = Fixture::spawn(
        "timers",
        reference_go(),
        Variant::PieStripped,
        &["afterfunc-leak", "-n", "40", "-hold", "60s"],
    );
    let pid = fixture.pid().to_string();
    let watcher = Watcher::start(&[
        "--pid",
        &pid,
        "--interval",
        "1s",
        "--dir",
        dir.path().to_str().unwrap(),
        "--metrics-addr",
        &addr,
    ]);
    let started = watcher.wait_for(&format!("watching pid {pid}"));
    assert!(started.contains("capture tier create"), "{started}");
    fixture.start_scenario();
    let summary = fixture.summary();
    let labels = format!("{{pid=\"{pid}\",exe=\"timers\"");
    let page = metrics_when(&addr, |page| {
        page.contains(&format!("timerscope_probe_overhead_ratio{labels}"))
    });
    assert!(
        page.contains(&format!(
            "timerscope_capture_tier{labels},tier=\"create\"}} 1"
        )),
        "{page}"
    );
    let ratio = metric(&page, &format!("timerscope_probe_overhead_ratio{labels}")).unwrap();
    // An idle target after 40 creations: far under the default budget of 1% of a CPU.
    assert!((0.0..0.01).contains(&ratio), "overhead {ratio}");
    assert_eq!(
        metric(&page, &format!("timerscope_capture_steps_total{labels}")),
        Some(0.0)
    );
    watcher.stop();

    let profiles = profiles_by_pid(dir.path()).remove(&fixture.pid()).unwrap();
    let sum = |sample_type: &str, function: &str| -> i64 {
        profiles
            .iter()
            .map(|(_, p)| cum(p, sample_type, function, None))
            .sum()
    };
    assert_eq!(
        sum("timers_created", "main.leakAfterFuncs"),
        count(&summary, "created")
    );
    // The creation tier has no stop hooks: the stops the fixture made are not probed.
    assert!(count(&summary, "stopped") > 0);
    assert_eq!(sum("timers_stopped", "main.stopSome"), 0);
    for (path, profile) in &profiles {
        assert_eq!(
            profile.comment_value("capture_tier"),
            Some("create"),
            "{}",
            path.display()
        );
        assert!(profile.comment_value("probe_overhead_ratio").is_some() || path == &profiles[0].0);
        assert!(profile.comment_value("uprobe_trap_ns").is_some());
    }
}

#[test]
fn an_overhead_budget_too_small_steps_down_and_says_so_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_metrics_addr();
    let mut fixture = Fixture::spawn(
        "timers",
        reference_go(),
        Variant::PieStripped,
        &["churn", "-n", "0", "-duration", "8s"],
    );
    let pid = fixture.pid().to_string();
    let watcher = Watcher::start(&[
        "--pid",
        &pid,
        "--events",
        "all",
        "--max-overhead",
        "0.01",
        "--interval",
        "1s",
        "--dir",
        dir.path().to_str().unwrap(),
        "--metrics-addr",
        &addr,
    ]);
    let started = watcher.wait_for(&format!("watching pid {pid}"));
    assert!(started.contains("capture tier all"), "{started}");
    fixture.start_scenario();
    // First the busiest reset or stop hook's stack walks are sampled, then hooks go.
    let sampled = watcher.wait_for("walking the stack of");
    assert!(sampled.contains("over the budget of 0.010%"), "{sampled}");
    let measured: f64 = sampled
        .split("probe overhead ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|pct| pct.parse().ok())
        .unwrap_or_else(|| panic!("no measured overhead in {sampled:?}"));
    assert!(measured > 0.01, "{sampled}");
    watcher.wait_for("detached");
    let labels = format!("{{pid=\"{pid}\",exe=\"timers\"");
    let page = metrics_when(&addr, |page| {
        metric(page, &format!("timerscope_capture_steps_total{labels}")).unwrap_or(0.0) >= 2.0
    });
    assert!(
        !page.contains(&format!("timerscope_capture_tier{labels},tier=\"all\"}}")),
        "{page}"
    );
    // Over the last second: the steps take a check each (100 ms), so by now it may be 0.
    assert!(metric(&page, &format!("timerscope_probe_overhead_ratio{labels}")).is_some());
    assert!(
        metric(
            &page,
            &format!("timerscope_stacks_sampled_out_total{labels}")
        )
        .unwrap()
            > 0.0
    );
    fixture.summary();
    watcher.wait_for(&format!("pid {pid} exited"));

    let profiles = profiles_by_pid(dir.path()).remove(&fixture.pid()).unwrap();
    let (_, last) = profiles.last().unwrap();
    let steps: Vec<&String> = last
        .comments
        .iter()
        .filter(|c| c.starts_with("capture_step="))
        .collect();
    assert!(steps.len() >= 2, "{:?}", last.comments);
    assert!(steps[0].contains("walking the stack of"), "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("detached")), "{steps:?}");
    assert!(
        last.comment_value("detached_hooks")
            .is_some_and(|h| !h.is_empty())
    );
    assert_ne!(last.comment_value("capture_tier"), Some("all"));
    // Sampled-out events are still counted, at their caller under a frame that says so.
    let sampled_out: i64 = profiles
        .iter()
        .flat_map(|(_, p)| {
            ["timers_reset", "timers_stopped", "timers_created"]
                .map(|t| cum(p, t, "[stack sampled out]", None))
        })
        .sum();
    assert!(sampled_out > 0);
    let reported: i64 = profiles
        .iter()
        .filter_map(|(_, p)| p.comment_value("stacks_sampled_out")?.parse::<i64>().ok())
        .sum();
    assert_eq!(reported, sampled_out);
}

/// `tests/fixtures/bench/paced` (not a fixture of the matrix: the bench builds it too), built with
/// the reference toolchain into `dir`.
fn build_paced(dir: &Path) -> PathBuf {
    let go = reference_go();
    let src = dir.join("paced-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(
        fixture_sources_root().join("bench/paced/main.go"),
        src.join("main.go"),
    )
    .unwrap();
    std::fs::write(
        src.join("go.mod"),
        format!("module timerscope.bench/paced\n\ngo {}\n", go.language()),
    )
    .unwrap();
    let binary = dir.join("paced");
    let built = Command::new(go_binary(go))
        .current_dir(&src)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", cache_dir().join("gocache").join(go.version))
        .status()
        .unwrap();
    assert!(built.success(), "go build tests/fixtures/bench/paced");
    binary
}

/// The acceptance: `watch` in its default (creation) tier on a program doing 10k timer
/// operations a second and 200 leaked AfterFuncs: the pending timers read from memory land at their
/// creation stacks, so `classify` names the leaking line, and /metrics show the tier and the
/// measured overhead.
#[test]
fn watch_by_default_on_a_busy_program_names_the_leaking_site_from_pending_timers() {
    let dir = tempfile::tempdir().unwrap();
    let paced = build_paced(dir.path());
    let mut program = Command::new(&paced)
        .args(["-ops-per-sec", "10000", "-leak-per-sec", "200"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(program.stdout.take().unwrap());
    let ready = common::read_json_line(&mut stdout);
    assert_eq!(ready["event"], "ready", "{ready}");
    let pid = program.id().to_string();
    let profiles_dir = dir.path().join("watch");
    std::fs::create_dir(&profiles_dir).unwrap();
    let addr = free_metrics_addr();
    let watcher = Watcher::start(&[
        "--pid",
        &pid,
        "--interval",
        "1s",
        "--dir",
        profiles_dir.to_str().unwrap(),
        "--metrics-addr",
        &addr,
    ]);
    let started = watcher.wait_for(&format!("watching pid {pid}"));
    assert!(started.contains("capture tier create"), "{started}");
    let labels = format!("{{pid=\"{pid}\",exe=\"paced\"");
    let page = metrics_when(&addr, |page| {
        page.contains(&format!("timerscope_probe_overhead_ratio{labels}"))
    });
    // About 4000 creations a second cost close to the default budget of 1% of a CPU on two
    // shared cores: the budget may step down (detach the creation hook), and says so.
    let tier_prefix = format!("timerscope_capture_tier{labels},tier=\"");
    let tier = page
        .lines()
        .find(|l| l.starts_with(&tier_prefix) && l.ends_with("} 1"))
        .and_then(|l| l[tier_prefix.len()..].split('"').next())
        .unwrap_or_else(|| panic!("no capture tier in {page}"))
        .to_owned();
    let steps = metric(&page, &format!("timerscope_capture_steps_total{labels}")).unwrap();
    assert!(
        tier == "create" || steps > 0.0,
        "tier {tier} without a step: {page}"
    );
    let ratio = metric(&page, &format!("timerscope_probe_overhead_ratio{labels}")).unwrap();
    assert!(
        tier != "create" || ratio > 0.0,
        "4000 creations a second cost something: {ratio}"
    );
    // Three more intervals, so the leak's pending count rises over the series.
    let deadline = Instant::now() + Duration::from_secs(30);
    let intervals = || {
        profiles_by_pid(&profiles_dir)
            .get(&program.id())
            .map_or(0, Vec::len)
    };
    while intervals() < 4 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    watcher.stop();
    drop(program.stdin.take());
    let summary = common::read_json_line(&mut stdout);
    assert_eq!(summary["event"], "summary", "{summary}");
    let _ = program.wait();
    println!("paced under watch: {summary}, tier {tier}, overhead ratio {ratio}");
    assert!(
        summary["ops_per_sec"].as_f64().unwrap() > 9000.0,
        "{summary}"
    );

    let profiles = profiles_by_pid(&profiles_dir)
        .remove(&program.id())
        .unwrap();
    assert!(profiles.len() >= 4, "{} intervals", profiles.len());
    let (last_path, last) = profiles.last().unwrap();
    // The leaked timers are pending at the function that created them, read from memory (those
    // created while the creation hook was attached: at least the first second's).
    // (A heap that kept changing under every read is skipped whole, and counted: the most of
    // any interval.)
    let at_site = profiles
        .iter()
        .map(|(_, p)| cum(p, "timers_pending", "main.leakSessions", Some("afterfunc")))
        .max()
        .unwrap();
    assert!(at_site >= 100, "{at_site} pending at main.leakSessions");
    assert!(at_site <= summary["leaked"].as_i64().unwrap());
    // The churn stops every timer it makes: pending there are at most the few a snapshot caught
    // between creation and stop (a 10 ms batch makes 40).
    let churning = cum(last, "timers_pending", "main.churn", None);
    assert!(churning < 50, "{churning} pending at main.churn");

    let paths: Vec<&Path> = profiles.iter().map(|(p, _)| p.as_path()).collect();
    let output = Command::new(timerscope())
        .args(["classify", "--json"])
        .args(&paths)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("classify: {e}: {}", String::from_utf8_lossy(&output.stderr)));
    let findings = report["findings"].as_array().unwrap();
    let source =
        std::fs::read_to_string(fixture_sources_root().join("bench/paced/main.go")).unwrap();
    let line = 1 + source
        .lines()
        .position(|l| l.ends_with("// SITE: leak"))
        .unwrap() as i64;
    assert!(
        findings.iter().any(|f| f["kind"] == "afterfunc-pending"
            && f["function"] == "main.leakSessions"
            && f["line"] == line),
        "{} findings of {}: {findings:?}",
        findings.len(),
        last_path.display()
    );
}

/// GETs `path` from a loopback address; the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    // The server may answer (and close) before the whole request is written.
    let _ = stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_rejected_push_is_moved_aside_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let go = reference_go();
    let fixture = Fixture::spawn(
        "timers",
        go,
        Variant::Pie,
        &["afterfunc-leak", "-n", "5", "-hold", "60s"],
    );
    let store = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", store.local_addr().unwrap());
    let (send, received) = mpsc::channel();
    profile_store_answering(store, send, "401 Unauthorized", None);
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let watcher = Watcher::start(&[
        "--pid",
        &fixture.pid().to_string(),
        "--interval",
        "1s",
        "--dir",
        dir.path().to_str().unwrap(),
        "--push",
        &url,
        "--metrics-addr",
        &metrics,
    ]);
    watcher.wait_for("rejected");
    let rejected = std::fs::read_dir(dir.path().join("spool/rejected"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".pb.gz")
        })
        .count();
    assert!(rejected >= 1, "the refused profile is kept aside");
    assert!(received.try_iter().count() >= 1);
    // The metrics page is re-rendered every 5 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let page = http_get(&metrics, "/metrics");
        let count = page
            .lines()
            .find_map(|l| l.strip_prefix("timerscope_push_rejected_total "))
            .map(|v| v.trim().parse::<u64>().unwrap());
        if count.is_some_and(|n| n >= 1) || Instant::now() > deadline {
            break page;
        }
        thread::sleep(Duration::from_millis(500));
    };
    assert!(page.contains("timerscope_push_rejected_total "), "{page}");
    let failures: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("timerscope_push_failures_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(failures >= 1, "{page}");
    // The scrape endpoint serves the latest interval as a decodable profile, 404 elsewhere.
    let listing = http_get(&metrics, "/debug/pprof/");
    assert!(
        listing.contains(&format!("/debug/pprof/timers?pid={}", fixture.pid())),
        "{listing}"
    );
    let mut stream = std::net::TcpStream::connect(&metrics).unwrap();
    stream
        .write_all(
            format!(
                "GET /debug/pprof/timers?pid={} HTTP/1.1\r\n\r\n",
                fixture.pid()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200"));
    pprof::decode(&response[split + 4..]).unwrap();
    assert!(http_get(&metrics, "/nope").starts_with("HTTP/1.1 404"));
    // promtool (Debian's prometheus package) judges the page by Prometheus' own rules.
    if let Ok(promtool) = which_promtool() {
        let body = page.split_once("\r\n\r\n").unwrap().1.to_owned();
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let output = check.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    watcher.stop();
}

/// promtool, required in CI (xtask setup installs it).
fn which_promtool() -> Result<PathBuf, String> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    match found {
        Some(path) => Ok(path),
        None if std::env::var_os("CI").is_some() => panic!("promtool missing: cargo xtask setup"),
        None => Err("promtool not installed".into()),
    }
}

/// The goroutine probes are on in watch and obey the budget: over it (with no timer hook to
/// sample in the creation tier), they are detached together, and the profiles say so.
#[test]
fn goroutine_probes_are_detached_over_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Rounds of 100 goroutines that exit at once, for longer than the test needs.
    let mut fixture = Fixture::spawn(
        "goroutines",
        reference_go(),
        Variant::Normal,
        &["churn", "-n", "100", "-exit", "100", "-repeat", "1000000"],
    );
    let pid = fixture.pid().to_string();
    let watcher = Watcher::start(&[
        "--pid",
        &pid,
        "--max-overhead",
        "0.01",
        "--interval",
        "1s",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    watcher.wait_for(&format!("watching pid {pid}"));
    fixture.start_scenario();
    let step = watcher.wait_for("detached the goroutine probes");
    assert!(step.contains("over the budget of 0.010%"), "{step}");
    // One more interval, written after the step.
    thread::sleep(Duration::from_millis(1500));
    watcher.stop();
    let profiles = profiles_by_pid(dir.path()).remove(&fixture.pid()).unwrap();
    let (_, last) = profiles.last().unwrap();
    assert_eq!(last.comment_value("goroutine_probes"), Some("detached"));
    assert!(
        last.comments
            .iter()
            .any(|c| c.starts_with("capture_step=") && c.contains("goroutine probes")),
        "{:?}",
        last.comments
    );
    // Counted while they ran, at the `go` statement; nothing after.
    let created = |p: &ResolvedProfile| cum(p, "goroutines_created", "main.spawnChurn", None);
    assert!(profiles.iter().any(|(_, p)| created(p) > 0));
    assert_eq!(created(last), 0);
}

#[test]
fn pushes_go_over_https_to_a_store_trusted_through_ca_file_and_an_untrusted_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::TestCa::new(dir.path());
    // Watched by --pid: the PIE build, which no test watches by --exe.
    let fixture = Fixture::spawn(
        "timers",
        reference_go(),
        Variant::Pie,
        &["afterfunc-leak", "-n", "5", "-hold", "60s"],
    );
    let store = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", store.local_addr().unwrap());
    let (send, received) = mpsc::channel();
    profile_store_answering(store, send, "200 OK", Some(ca.server.clone()));

    // Without --ca-file the store's certificate is trusted by nothing: refused at start-up.
    let started = Instant::now();
    let refused = Command::new(timerscope())
        .args([
            "watch",
            "--pid",
            &fixture.pid().to_string(),
            "--interval",
            "1s",
        ])
        .args(["--dir", dir.path().join("refused").to_str().unwrap()])
        .args(["--push", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("TLS handshake failed") && stderr.contains("--ca-file"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "not retried");

    let watcher = Watcher::start(&[
        "--pid",
        &fixture.pid().to_string(),
        "--interval",
        "1s",
        "--dir",
        dir.path().join("pushed").to_str().unwrap(),
        "--push",
        &url,
        "--ca-file",
        ca.ca_file.to_str().unwrap(),
        "--push-header",
        "X-Scope-OrgID: tenant-tls",
    ]);
    watcher.wait_for(&format!("watching pid {}", fixture.pid()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let push = loop {
        let request = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a push over https");
        if request.request_line.starts_with("POST ") {
            break request;
        }
    };
    watcher.stop();
    assert!(
        push.request_line
            .starts_with("POST /push.v1.PusherService/Push "),
        "{}",
        push.request_line
    );
    assert_eq!(
        push.headers.get("x-scope-orgid").map(String::as_str),
        Some("tenant-tls")
    );
    let request: push_api::PushRequest = prost::Message::decode(&push.body[..]).unwrap();
    let raw = &request.series[0].samples[0].raw_profile;
    let profile = ResolvedProfile::new(&pprof::decode(raw).unwrap());
    assert!(
        profile
            .sample_types
            .iter()
            .any(|t| t.ty == "timers_created"),
        "the pushed body decodes as the profile written"
    );
}

/// One watch of the mmap fixture's leak (`n` MiB, one every 250 ms), its first interval written
/// before the leak starts; the profiles in time order.
fn watch_mmap_leak(extra: &[&str], n: u32) -> (String, Vec<ResolvedProfile>) {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::spawn(
        "mmap",
        reference_go(),
        Variant::Normal,
        &[
            "leak",
            "-n",
            &n.to_string(),
            "-every",
            "250ms",
            "-hold",
            "60s",
        ],
    );
    let pid = fixture.pid().to_string();
    let mut args = vec!["--pid", &pid, "--interval", "1s", "--dir"];
    args.push(dir.path().to_str().unwrap());
    args.extend_from_slice(extra);
    let watcher = Watcher::start(&args);
    let started = watcher.wait_for(&format!("watching pid {pid}"));
    let first = std::time::Instant::now();
    while profiles_by_pid(dir.path()).is_empty() {
        assert!(
            first.elapsed() < Duration::from_secs(10),
            "no first interval"
        );
        thread::sleep(Duration::from_millis(50));
    }
    fixture.start_scenario();
    fixture.summary();
    // One more interval after the last mmap, then the last one on SIGTERM.
    thread::sleep(Duration::from_millis(1200));
    watcher.stop();
    let profiles = profiles_by_pid(dir.path())
        .remove(&fixture.pid())
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    (started, profiles)
}

#[test]
fn watch_by_default_lists_mappings_without_mmap_probes_and_probes_them_with_mmap() {
    const LEAKED_MIB: u32 = 8;
    let mib = 1 << 20;
    // Default: no syscall tracepoints, the mappings listed from /proc/PID/maps each interval.
    let (started, profiles) = watch_mmap_leak(&[], LEAKED_MIB);
    assert!(started.contains("mmap probes off"), "{started}");
    assert!(profiles.len() >= 3, "{} profiles", profiles.len());
    for profile in &profiles {
        assert_eq!(profile.comment_value("mmap_probes"), Some("off"));
        assert_eq!(cum(profile, "mmap_calls", "main.leakMappings", None), 0);
    }
    let listed = |p: &ResolvedProfile| cum(p, "mmap_live_bytes", "[pre-existing]", None);
    let (before, after) = (listed(&profiles[0]), listed(profiles.last().unwrap()));
    assert!(
        after - before >= i64::from(LEAKED_MIB) * mib,
        "listed mappings grew by {} bytes, the leak is {LEAKED_MIB} MiB",
        after - before
    );

    // --mmap: every call at its stack, exactly once over the intervals.
    let (started, profiles) = watch_mmap_leak(&["--mmap"], LEAKED_MIB);
    assert!(started.contains("mmap probes on"), "{started}");
    assert!(
        profiles
            .iter()
            .all(|p| p.comment_value("mmap_probes") == Some("on"))
    );
    // Through the fixture's own syscall: the heap growth an allocation under leakMappings can
    // cause is the runtime's mapping, not the leak's.
    let leaked = ["main.leakMappings", SYSCALL_MMAP];
    let calls: i64 = profiles
        .iter()
        .map(|p| cum_through(p, "mmap_calls", &leaked))
        .sum();
    assert_eq!(calls, i64::from(LEAKED_MIB));
    let live = cum_through(profiles.last().unwrap(), "mmap_live_bytes", &leaked);
    assert_eq!(live, i64::from(LEAKED_MIB) * mib);
}
