//! `timerscope report` and `inspect --html` on real captures, rendered by headless Chromium: a
//! `watch` directory of the leaking demo service (its timer plot rises, its first finding names
//! the leaking line), one of a healthy fixture (no finding), and an inspect store of three
//! rounds of a growing service (heap in-use and goroutines plotted with their fitted slopes).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    io::BufReader,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{Fixture, fixture_site, read_json_line, run_timerscope, timerscope};
use timerscope_tests::{
    Variant, cache_dir, chromium, fixture_path, go_binary, reference_go, workspace_root,
};

/// The page as Chromium renders it.
fn rendered(html: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let output = chromium(&["--dump-dom", &url], profile.path()).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn report(args: &[&str], html: &Path) -> String {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend(["-o", html.to_str().unwrap()]);
    let output = run_timerscope(&all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    rendered(html)
}

/// The values of the first series drawn for `sample_type`.
fn series_values(dom: &str, sample_type: &str) -> Vec<f64> {
    let marker = format!("data-series=\"{sample_type}\" data-values=\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no {sample_type} series in the rendered page"))
        + marker.len();
    dom[at..]
        .split('"')
        .next()
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect()
}

/// The rendered plot of `sample_type` (its whole `<svg>`).
fn plot<'a>(dom: &'a str, sample_type: &str) -> &'a str {
    let marker = format!("class=\"plot\" data-sample-type=\"{sample_type}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no {sample_type} plot in the rendered page"));
    &dom[at..at + dom[at..].find("</svg>").unwrap()]
}

/// `timerscope watch --pid PID --interval 1s --dir DIR` until `intervals` profiles exist.
fn watch(pid: u32, dir: &Path, intervals: usize) {
    let mut watcher: Child = Command::new(timerscope())
        .args([
            "watch",
            "--pid",
            &pid.to_string(),
            "--interval",
            "1s",
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = || {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().to_string_lossy().ends_with(".pb.gz"))
            .count()
    };
    while count() < intervals && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    let pid = nix::unistd::Pid::from_raw(watcher.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(watcher.wait().unwrap().success(), "watch exits 0");
    assert!(count() >= intervals, "{} intervals written", count());
}

#[test]
fn a_watched_leaky_service_shows_its_rising_timers_and_leaking_line() {
    let dir = tempfile::tempdir().unwrap();
    let go = reference_go();
    let service = dir.path().join("leaky");
    let built = Command::new(go_binary(go))
        .current_dir(workspace_root().join("demo/leaky"))
        .args(["build", "-o"])
        .arg(&service)
        .arg(".")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", cache_dir().join("gocache").join(go.version))
        .status()
        .unwrap();
    assert!(built.success(), "go build demo/leaky");
    let mut leaky = Command::new(&service)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let watched = dir.path().join("watch");
    std::fs::create_dir(&watched).unwrap();
    watch(leaky.id(), &watched, 4);
    let _ = leaky.kill();
    let _ = leaky.wait();

    let source = std::fs::read_to_string(workspace_root().join("demo/leaky/main.go")).unwrap();
    let line = 1 + source
        .lines()
        .position(|l| l.contains("time.After(30 * time.Second)"))
        .unwrap();
    let dom = report(&[watched.to_str().unwrap()], &dir.path().join("r.html"));
    // The demo leaks goroutines too; which of its two high findings ranks first depends on
    // the rates over a few seconds, so look for the timer leak among them.
    let findings: Vec<&str> = dom
        .match_indices("class=\"finding\"")
        .map(|(at, _)| &dom[at..at + dom[at..].find("</li>").unwrap()])
        .collect();
    assert!(
        findings
            .iter()
            .any(|f| f.contains("main.handleRequest") && f.contains(&format!("main.go:{line}"))),
        "findings: {findings:#?}"
    );
    // The default creation tier: the timers pending in the runtime's heaps, each at its
    // creation stack.
    let pending = series_values(&dom, "timers_pending");
    assert!(pending.len() >= 4, "{pending:?}");
    assert!(
        pending.last() > pending.first(),
        "the timer plot rises: {pending:?}"
    );
    assert!(plot(&dom, "timers_pending").contains("class=\"fit\""));
    assert!(dom.contains("go1.25"), "recording facts");
}

#[test]
fn a_watched_healthy_fixture_has_no_finding() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = Fixture::spawn(
        "timers",
        reference_go(),
        Variant::Normal,
        &["healthy", "-n", "50", "-duration", "20s"],
    );
    fixture.start_scenario();
    watch(fixture.pid(), dir.path(), 3);
    let dom = report(&[dir.path().to_str().unwrap()], &dir.path().join("r.html"));
    assert!(dom.contains("id=\"no-findings\""), "no finding");
    assert!(!dom.contains("class=\"finding\""));
    assert!(dom.contains("timer events per second"), "plots still drawn");
}

#[test]
fn an_inspect_store_of_three_rounds_plots_heap_and_goroutines_with_slopes() {
    let binary = fixture_path("pprofsvc", reference_go(), Variant::Normal).unwrap();
    let mut child = Command::new(&binary)
        .args(["-lifetime", "90s", "grow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let listening = read_json_line(&mut BufReader::new(child.stdout.take().unwrap()));
    let port = listening["port"].as_u64().expect("port");
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[[services]]\nname = \"grow\"\nurl = \"http://127.0.0.1:{port}\"\nprofiles = [\"heap\", \"goroutine\"]\n"
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    let html = dir.path().join("round.html");
    for round in 0..3 {
        let mut args = vec![
            "inspect",
            "--targets",
            targets.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--json",
        ];
        if round == 2 {
            args.extend(["--html", html.to_str().unwrap()]);
        }
        let output = run_timerscope(&args);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let trends = json["services"][0]["trends"].as_array().unwrap();
        assert!(
            trends
                .iter()
                .all(|t| t["points"].as_array().unwrap().len() == round + 1),
            "--json has each trend's points: {trends:?}"
        );
        thread::sleep(Duration::from_millis(700));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (leaky, _) = fixture_site("pprofsvc", "heap-growth");
    for dom in [
        rendered(&html),
        report(
            &["--store", store.to_str().unwrap()],
            &dir.path().join("s.html"),
        ),
    ] {
        for sample_type in ["inuse_space", "goroutine"] {
            let plot = plot(&dom, sample_type);
            assert!(plot.contains("class=\"fit\""), "{sample_type}: {plot}");
            assert!(plot.contains("data-threshold-slope"), "{sample_type}");
            let values = series_values(plot, sample_type);
            assert_eq!(values.len(), 3, "{sample_type}: {values:?}");
            assert!(values[2] > values[0], "{sample_type} grows: {values:?}");
        }
        assert!(
            dom.contains(&format!("data-function=\"{leaky}\"")),
            "the growing function is listed"
        );
    }
}
