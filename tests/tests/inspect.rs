//! `timerscope inspect` against real Go services that serve net/http/pprof on loopback (fixture
//! pprofsvc, built by Go 1.22 and 1.25): several scheduled rounds into one store, a service that
//! stops halfway, a pinned baseline, and a hot function that moves between rounds; and the same
//! services inspected by pid and by exe, from their memory, with the findings their endpoints
//! give (Go 1.19 to 1.27, normal and PIE builds).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::{
    io::{BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Mutex, mpsc},
};

use common::{fixture_site, read_json_line, run_timerscope};
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant, fixture_path, go_version};

/// Both tests measure CPU shares from 2 s CPU profiles of services that burn CPU; on a 2-core
/// machine they run one after the other so each service gets the CPU its profile expects.
static CPU: Mutex<()> = Mutex::new(());

fn go(version: &str) -> &'static GoVersion {
    go_version(version).expect("known Go version")
}

/// A pprofsvc process serving on 127.0.0.1; killed when dropped (it also exits by itself).
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(go: &GoVersion, args: &[&str]) -> Self {
        let binary = fixture_path("pprofsvc", go, Variant::Normal).expect("fixture built");
        Self::start_binary(&binary, args)
    }

    fn start_binary(binary: &Path, args: &[&str]) -> Self {
        let spawn = || {
            Command::new(binary)
                .args(["-lifetime", "90s"])
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
        };
        // A binary copied just now may still be open for writing in a child another test
        // thread forked meanwhile (until it execs): ETXTBSY for a moment.
        let mut child = spawn();
        for _ in 0..50 {
            match &child {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    child = spawn();
                }
                _ => break,
            }
        }
        let mut child = child.unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let listening = read_json_line(&mut BufReader::new(child.stdout.take().unwrap()));
        assert_eq!(listening["event"], "listening", "pprofsvc said {listening}");
        let port = listening["port"].as_u64().expect("port") as u16;
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET path` on the service; the response body.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.0 200"), "GET {path}: {head}");
    body.to_owned()
}

/// One inspection round: its exit status and JSON report.
fn inspect_round(targets: &Path, store: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "inspect",
        "--targets",
        targets.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--cpu-seconds",
        "2",
        "--json",
    ];
    args.extend_from_slice(extra);
    let output = run_timerscope(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "inspect printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exit status"), report)
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {report}"))
}

fn status_of<'a>(entries: &'a Value, key: &str, value: &str) -> &'a str {
    entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[key] == value)
        .and_then(|e| e["status"].as_str())
        .unwrap_or_else(|| panic!("no {key}={value} in {entries}"))
}

#[test]
fn growing_service_is_flagged_healthy_one_is_not_stopped_one_is_unreachable() {
    let _cpu = CPU.lock().unwrap_or_else(|e| e.into_inner());
    let (old, new) = (go("1.22"), go("1.25"));
    let mut services = vec![
        (format!("healthy-{old}"), Service::start(old, &["healthy"])),
        (format!("healthy-{new}"), Service::start(new, &["healthy"])),
        (format!("grow-{old}"), Service::start(old, &["grow"])),
        (format!("grow-{new}"), Service::start(new, &["grow"])),
        (
            "stopped".to_owned(),
            Service::start(new, &["-busy", "0", "healthy"]),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let targets = dir.path().join("targets.toml");
    let mut toml = String::new();
    for (name, svc) in &services {
        let profiles = if name.starts_with("healthy") {
            r#"["cpu", "heap", "goroutine"]"#
        } else {
            r#"["heap", "goroutine"]"#
        };
        toml += &format!(
            "[[services]]\nname = \"{name}\"\nurl = \"{}\"\nprofiles = {profiles}\n\n",
            svc.url()
        );
    }
    std::fs::write(&targets, toml).unwrap();
    let (leaky, heap_line) = fixture_site("pprofsvc", "heap-growth");
    let (blocked_in, goroutine_line) = fixture_site("pprofsvc", "goroutine-growth");
    assert_eq!(leaky, blocked_in, "one function allocates and blocks");

    const ROUNDS: usize = 5;
    let mut report = Value::Null;
    for round in 1..=ROUNDS {
        if round == 3 {
            services[4].1.stop();
        }
        let last = round == ROUNDS;
        let (status, this) = inspect_round(
            &targets,
            &store,
            if last { &["--fail-on", "high"] } else { &[] },
        );
        assert_eq!(
            status,
            if last { 3 } else { 0 },
            "round {round}: an unreachable service does not fail the run; findings at \
             --fail-on do: {this}"
        );
        for name in [format!("healthy-{old}"), format!("healthy-{new}")] {
            let healthy = service(&this, &name);
            assert_eq!(healthy["reachability"], "reached", "{healthy}");
            assert_eq!(healthy["findings"], Value::Array(vec![]), "{healthy}");
            for entry in healthy["trends"]
                .as_array()
                .unwrap()
                .iter()
                .chain(healthy["shares"].as_array().unwrap())
            {
                assert_ne!(entry["status"], "alert", "round {round}, {name}: {entry}");
            }
        }
        let stopped = service(&this, "stopped");
        if round < 3 {
            assert_eq!(stopped["reachability"], "reached", "{stopped}");
        } else {
            assert_eq!(stopped["reachability"], "unreachable", "{stopped}");
            let error = stopped["error"].as_str().unwrap();
            assert!(error.contains("no answer"), "{error}");
            assert_eq!(stopped["rounds_stored"], 2);
            assert_eq!(stopped["round"], Value::Null);
        }
        report = this;
    }

    for name in [format!("grow-{old}"), format!("grow-{new}")] {
        let grow = service(&report, &name);
        assert_eq!(grow["rounds_stored"], ROUNDS, "{grow}");
        assert_eq!(
            status_of(&grow["trends"], "metric", "heap-inuse-bytes"),
            "alert"
        );
        assert_eq!(status_of(&grow["trends"], "metric", "goroutines"), "alert");
        let findings = grow["findings"].as_array().unwrap();
        let at_leak: Vec<&Value> = findings
            .iter()
            .filter(|f| f["function"] == leaky.as_str())
            .collect();
        assert_eq!(at_leak.len(), 1, "one finding at {leaky}: {findings:?}");
        let finding = at_leak[0];
        assert_eq!(
            finding["kinds"],
            serde_json::json!(["heap-growth", "goroutine-growth"]),
            "heap and goroutines of the same rounds are one finding: {finding}"
        );
        assert_eq!(finding["severity"], "high", "{finding}");
        let lines: Vec<i64> = finding["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["line"].as_i64().unwrap())
            .collect();
        assert_eq!(lines, [heap_line, goroutine_line], "{finding}");
    }
    for name in [format!("healthy-{old}"), format!("healthy-{new}")] {
        let healthy = service(&report, &name);
        assert_eq!(
            status_of(&healthy["shares"], "profile", "heap"),
            "ok",
            "the healthy heap was compared and did not move: {healthy}"
        );
        assert_eq!(status_of(&healthy["trends"], "metric", "goroutines"), "ok");
    }

    // The store: one file per round and profile, named by the round, listed in the index.
    let grow_new = format!("grow-{new}");
    let index: Value =
        serde_json::from_slice(&std::fs::read(store.join(&grow_new).join("index.json")).unwrap())
            .unwrap();
    let rounds = index["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), ROUNDS);
    for round in rounds {
        let file = round["profiles"]["heap"]["file"].as_str().unwrap();
        assert_eq!(
            file,
            format!("heap/{}.pb.gz", round["timestamp"].as_str().unwrap())
        );
        assert!(store.join(&grow_new).join(file).is_file());
    }
    let stopped_heaps = std::fs::read_dir(store.join("stopped/heap"))
        .unwrap()
        .count();
    assert!(
        (1..=2).contains(&stopped_heaps),
        "two rounds (identical heaps stored once): {stopped_heaps}"
    );

    // The same report as tables.
    let output = run_timerscope(&[
        "inspect",
        "--targets",
        targets.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--cpu-seconds",
        "1",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("== stopped  "), "{text}");
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(
        text.contains(&format!("heap-growth + goroutine-growth at {leaky}")),
        "{text}"
    );
    assert!(text.contains("heap in-use bytes"), "{text}");
}

#[test]
fn a_hot_function_that_moves_is_flagged_with_its_shares() {
    let _cpu = CPU.lock().unwrap_or_else(|e| e.into_inner());
    let svc = Service::start(go("1.22"), &["-busy", "8ms", "-idle", "2ms", "shift"]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let targets = dir.path().join("targets.yaml");
    std::fs::write(
        &targets,
        format!(
            "services:\n  - name: shift\n    url: {}\n    profiles: [cpu]\n",
            svc.url()
        ),
    )
    .unwrap();
    let (alpha, _) = fixture_site("pprofsvc", "cpu-alpha");
    let (beta, _) = fixture_site("pprofsvc", "cpu-beta");

    let (status, first) = inspect_round(&targets, &store, &[]);
    assert_eq!(status, 0, "{first}");
    let first = service(&first, "shift");
    assert_eq!(status_of(&first["shares"], "profile", "cpu"), "not-judged");
    let first_round = first["round"].as_str().unwrap().to_owned();

    let pin = run_timerscope(&[
        "inspect",
        "--store",
        store.to_str().unwrap(),
        "baseline",
        "set",
        "shift",
    ]);
    let said = String::from_utf8_lossy(&pin.stdout);
    assert!(pin.status.success(), "{said}");
    assert!(
        said.contains(&first_round),
        "pinned the newest round: {said}"
    );
    let unknown = run_timerscope(&[
        "inspect",
        "--store",
        store.to_str().unwrap(),
        "baseline",
        "set",
        "shift",
        "19990101",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    let complaint = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        complaint.contains(&first_round),
        "lists stored rounds: {complaint}"
    );

    let (status, second) = inspect_round(&targets, &store, &["--fail-on", "low"]);
    assert_eq!(status, 0, "nothing moved yet: {second}");
    let second = service(&second, "shift");
    assert_eq!(second["baseline"]["timestamp"], first_round.as_str());
    assert_eq!(second["baseline"]["pinned"], true);
    assert_eq!(
        status_of(&second["shares"], "profile", "cpu"),
        "ok",
        "{second}"
    );

    assert_eq!(http_get(svc.port, "/phase?hot=beta").trim(), "ok");
    let (status, third) = inspect_round(&targets, &store, &["--fail-on", "medium"]);
    assert_eq!(status, 3, "{third}");
    let third = service(&third, "shift");
    let cpu = third["shares"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["profile"] == "cpu")
        .unwrap();
    assert_eq!(cpu["status"], "alert", "{cpu}");
    let shift = |function: &str| {
        cpu["shifts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["function"] == function)
            .unwrap_or_else(|| panic!("{function} not flagged: {cpu}"))
            .clone()
    };
    let share = |s: &Value, key: &str| s[key].as_f64().unwrap();
    for (function, rose) in [(&beta, true), (&alpha, false)] {
        let s = shift(function);
        let (baseline, previous, current) = (
            share(&s, "baseline_share"),
            share(&s, "previous_share"),
            share(&s, "current_share"),
        );
        let (low, high) = if rose {
            (baseline.max(previous), current)
        } else {
            (current, baseline.min(previous))
        };
        assert!(low < 10.0 && high > 60.0, "{function}: {s}");
        let moved = share(&s, "points_vs_baseline");
        assert!((moved - (current - baseline)).abs() < 1e-9, "{s}");
        assert!(
            (share(&s, "points_vs_previous") - (current - previous)).abs() < 1e-9,
            "{s}"
        );
        assert_eq!(
            s["flagged_against"],
            serde_json::json!(["baseline", "previous"])
        );
        assert_eq!(s["measure"], "flat");
        assert_eq!(
            s["severity"], "high",
            "moved more than twice the threshold: {s}"
        );
    }
}

#[test]
fn processes_inspected_by_pid_and_exe_give_the_findings_of_their_endpoints() {
    let (leaky, heap_line) = fixture_site("pprofsvc", "heap-growth");
    let (_, goroutine_line) = fixture_site("pprofsvc", "goroutine-growth");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let targets = dir.path().join("targets.toml");
    let mut toml = String::new();
    let mut services = Vec::new();
    // PIE builds too: their runtime addresses are moved by the load bias.
    let versions = [
        ("1.19", Variant::Normal),
        ("1.22", Variant::Pie),
        ("1.25", Variant::Normal),
        ("1.27", Variant::Pie),
    ];
    for (version, variant) in versions {
        // A copy of its own, so that `exe` means this one process.
        let original = fixture_path("pprofsvc", go(version), variant).expect("fixture");
        let binary = dir.path().join(format!("pprofsvc-{version}"));
        std::fs::copy(&original, &binary).unwrap();
        let svc = Service::start_binary(&binary, &["-rate", "40", "grow"]);
        let pid = svc.child.id();
        toml += &format!(
            "[[services]]\nname = \"url-{version}\"\nurl = \"{}\"\nprofiles = [\"heap\", \"goroutine\"]\n\n\
             [[services]]\nname = \"pid-{version}\"\npid = {pid}\n\n\
             [[services]]\nname = \"exe-{version}\"\nexe = \"{}\"\n\n",
            svc.url(),
            binary.display()
        );
        services.push((svc, pid));
    }
    // Two processes of one executable: `exe` cannot tell which is meant.
    let twice = dir.path().join("pprofsvc-twice");
    std::fs::copy(
        fixture_path("pprofsvc", go("1.25"), Variant::Normal).unwrap(),
        &twice,
    )
    .unwrap();
    let _first = Service::start_binary(&twice, &["-busy", "0", "healthy"]);
    let _second = Service::start_binary(&twice, &["-busy", "0", "healthy"]);
    toml += &format!(
        "[[services]]\nname = \"twice\"\nexe = \"{}\"\n\n[[services]]\nname = \"gone\"\nexe = \"{}\"\n",
        twice.display(),
        dir.path().join("never-started").display()
    );
    std::fs::write(&targets, toml).unwrap();

    const ROUNDS: usize = 5;
    let mut report = Value::Null;
    for round in 1..=ROUNDS {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (status, this) = inspect_round(&targets, &store, &[]);
        assert_eq!(status, 0, "round {round}: {this}");
        report = this;
    }
    let twice_report = service(&report, "twice");
    assert_eq!(
        twice_report["reachability"], "unreachable",
        "{twice_report}"
    );
    let error = twice_report["error"].as_str().unwrap();
    assert!(
        error.contains("2 processes run") && error.contains("pid = N"),
        "{error}"
    );
    let gone = service(&report, "gone");
    assert_eq!(gone["reachability"], "unreachable", "{gone}");
    assert!(
        gone["error"]
            .as_str()
            .unwrap()
            .contains("no running process runs"),
        "{gone}"
    );

    // What each way of looking found at the leaking function, as (kinds, severity, lines).
    let at_leak = |name: &str| {
        let s = service(&report, name);
        assert_eq!(s["reachability"], "reached", "{name}: {s}");
        assert_eq!(s["profile_errors"], Value::Array(vec![]), "{name}: {s}");
        assert_eq!(s["rounds_stored"], ROUNDS, "{name}: {s}");
        assert_eq!(
            status_of(&s["trends"], "metric", "goroutines"),
            "alert",
            "{name}: {s}"
        );
        assert_eq!(
            status_of(&s["trends"], "metric", "heap-inuse-bytes"),
            "alert",
            "{name}: {s}"
        );
        let findings: Vec<&Value> = s["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["function"] == leaky.as_str())
            .collect();
        assert_eq!(findings.len(), 1, "{name}: one finding at {leaky}: {s}");
        let lines: Vec<i64> = findings[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["line"].as_i64().unwrap())
            .collect();
        (
            findings[0]["kinds"].clone(),
            findings[0]["severity"].clone(),
            lines,
        )
    };
    for ((version, _), (_, pid)) in versions.iter().zip(&services) {
        let by_url = at_leak(&format!("url-{version}"));
        assert_eq!(
            by_url,
            (
                serde_json::json!(["heap-growth", "goroutine-growth"]),
                serde_json::json!("high"),
                vec![heap_line, goroutine_line]
            ),
            "Go {version} by url"
        );
        for way in ["pid", "exe"] {
            let name = format!("{way}-{version}");
            assert_eq!(at_leak(&name), by_url, "Go {version}: {name} as by url");
            assert_eq!(service(&report, &name)["pid"], *pid, "{name}");
        }
    }

    // The goroutine profile read from memory holds the leaking goroutines at the stack Go's
    // own profile gives them: the same frames, wrappers and runtime.goexit left out as Go does.
    let leaky_stacks = |name: &str| {
        let dir = store.join(name).join("goroutine");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let profile = common::read_profile(files.last().unwrap());
        let mut stacks: Vec<Vec<(String, i64)>> = profile
            .samples
            .iter()
            .map(|s| {
                s.stack
                    .iter()
                    .map(|&f| {
                        let frame = &profile.frames[f as usize];
                        let line = if frame.file.ends_with("main.go") {
                            frame.line
                        } else {
                            0
                        };
                        (frame.function.clone(), line)
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|stack| stack.iter().any(|(f, _)| *f == leaky))
            .collect();
        stacks.sort();
        stacks.dedup();
        stacks
    };
    for (version, _) in versions {
        let by_url = leaky_stacks(&format!("url-{version}"));
        assert_eq!(by_url.len(), 1, "Go {version}: one stack: {by_url:?}");
        assert_eq!(
            by_url[0].iter().find(|(f, _)| *f == leaky).map(|(_, l)| *l),
            Some(goroutine_line)
        );
        for way in ["pid", "exe"] {
            assert_eq!(
                leaky_stacks(&format!("{way}-{version}")),
                by_url,
                "Go {version}: {way}'s goroutine stacks as Go's own"
            );
        }
    }

    // Tables name the process an exe resolved to.
    let output = run_timerscope(&[
        "inspect",
        "--targets",
        targets.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let exe_line = format!(
        "== exe-1.25  exe {} (pid {})",
        dir.path().join("pprofsvc-1.25").display(),
        services[2].1
    );
    assert!(text.contains(&exe_line), "{exe_line} in {text}");
}

/// An https front for a service on `backend`: each request is passed on to it (HTTP/1.0) and
/// its answer back. Each connection is reported: the request's `Authorization` header, or
/// `None` when its TLS handshake failed.
fn https_front(ca: &tls::TestCa, backend: u16) -> (u16, mpsc::Receiver<Option<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (send, received) = mpsc::channel();
    let config = ca.server.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(tls::Stream::accept(stream, Some(&config)));
            let mut request_line = String::new();
            if std::io::BufRead::read_line(&mut reader, &mut request_line).is_err() {
                let _ = send.send(None);
                continue;
            }
            let mut authorization = String::new();
            loop {
                let mut header = String::new();
                std::io::BufRead::read_line(&mut reader, &mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorization = value.trim().to_owned();
                }
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
            let mut service = TcpStream::connect(("127.0.0.1", backend)).unwrap();
            write!(service, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            let mut answer = Vec::new();
            service.read_to_end(&mut answer).unwrap();
            let client = reader.get_mut();
            client.write_all(&answer).unwrap();
            client.finish().unwrap();
            let _ = send.send(Some(authorization));
        }
    });
    (port, received)
}

#[test]
fn pulls_over_https_trust_the_ca_file_and_send_the_headers() {
    let svc = Service::start(go("1.25"), &["-busy", "0", "healthy"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::TestCa::new(dir.path());
    let (port, connections) = https_front(&ca, svc.port);
    let store = dir.path().join("store");
    let targets = dir.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[[services]]\nname = \"tls\"\nurl = \"https://127.0.0.1:{port}\"\nprofiles = [\"heap\", \"goroutine\"]\n"
        ),
    )
    .unwrap();

    // Without --ca-file nothing trusts the front's certificate: one try, and the fix named.
    let (status, report) = inspect_round(&targets, &store, &[]);
    assert_eq!(status, 0, "{report}");
    let tls = service(&report, "tls");
    assert_eq!(tls["reachability"], "unreachable", "{tls}");
    let error = tls["error"].as_str().unwrap();
    assert!(
        error.contains("TLS handshake failed") && error.contains("--ca-file"),
        "{error}"
    );
    let tried: Vec<Option<String>> = connections.try_iter().collect();
    assert_eq!(tried, [None], "a failed handshake is not retried");

    let token = dir.path().join("token");
    std::fs::write(&token, "Bearer tok-42\n").unwrap();
    let (status, report) = inspect_round(
        &targets,
        &store,
        &[
            "--ca-file",
            ca.ca_file.to_str().unwrap(),
            "--header",
            &format!("Authorization: @{}", token.display()),
        ],
    );
    assert_eq!(status, 0, "{report}");
    let tls = service(&report, "tls");
    assert_eq!(tls["reachability"], "reached", "{tls}");
    assert_eq!(tls["profile_errors"], Value::Array(vec![]), "{tls}");
    assert_eq!(tls["rounds_stored"], 1, "{tls}");
    assert_eq!(tls["target"], format!("https://127.0.0.1:{port}"));
    let sent: Vec<Option<String>> = connections.try_iter().collect();
    assert_eq!(
        sent,
        [
            Some("Bearer tok-42".to_owned()),
            Some("Bearer tok-42".to_owned())
        ],
        "both profiles pulled over https with the header"
    );
    for profile in ["heap", "goroutine"] {
        assert_eq!(
            std::fs::read_dir(store.join("tls").join(profile))
                .unwrap()
                .count(),
            1,
            "{profile} stored"
        );
    }
}
