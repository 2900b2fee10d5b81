//! `timerscope report` on 100 generated watch intervals: the page weighs under 2 MB, fetches
//! nothing, and a real browser (headless Chromium) renders its findings and plots. The
//! screenshot it takes is the README's (docs/report.png).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use pprof::write_atomic;

const LEAKS_GO: &str = "/src/app/leaks.go";
const SLEEP_GO: &str = "/usr/local/go/src/time/sleep.go";
const INTERVALS: i64 = 100;

/// Interval `i` of a process whose `time.After` timers at main.poll pile up, beside a steady
/// ticker.
fn interval(i: i64) -> pprof::Profile {
    let runtime = RUNTIMES[1];
    let after = TimerSite::new(
        "timer",
        vec![
            frame("time.NewTimer", SLEEP_GO, 86),
            frame("time.After", SLEEP_GO, 156),
        ],
        vec![frame("main.poll", LEAKS_GO, 23)],
    )
    .counts(30 * (i + 1), 0, 0);
    let ticker = TimerSite::new(
        "ticker",
        vec![frame("time.NewTicker", SLEEP_GO, 40)],
        vec![frame("main.heartbeat", LEAKS_GO, 51)],
    )
    .counts(3, 0, 0);
    let mut profile = timer_profile(runtime, T0 + i * 10 * SECOND, &[after, ticker]);
    profile.duration_nanos = 10 * SECOND;
    profile
}

fn chromium(args: &[&str], profile_dir: &Path) -> std::process::Output {
    timerscope_tests::chromium(args, profile_dir).unwrap()
}

/// The numbers in the `data-values` attribute after `marker` in `dom`.
fn values_after(dom: &str, marker: &str) -> Vec<f64> {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the rendered page"));
    let rest = &dom[at..];
    let start = rest.find("data-values=\"").expect("series values") + "data-values=\"".len();
    rest[start..]
        .split('"')
        .next()
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn a_hundred_intervals_render_offline_under_two_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let watch = dir.path().join("watch");
    std::fs::create_dir(&watch).unwrap();
    for i in 0..INTERVALS {
        write_atomic(&watch.join(format!("app-4242-{i:03}.pb.gz")), &interval(i)).unwrap();
    }
    let html = dir.path().join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_timerscope"))
        .arg("report")
        .arg(&watch)
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.len() < 2 * 1024 * 1024,
        "{} bytes for {INTERVALS} intervals",
        page.len()
    );
    for external in ["src=\"http", "href=\"http", "url(http", "@import", "<link"] {
        assert!(!page.contains(external), "the page fetches {external}");
    }

    let browser = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let rendered = chromium(&["--dump-dom", &url], browser.path());
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let dom = String::from_utf8_lossy(&rendered.stdout);
    // The first finding names the leaking line.
    let first = dom.find("class=\"finding\"").expect("findings rendered");
    let first = &dom[first..dom[first..].find("</li>").unwrap() + first];
    assert!(
        first.contains("timer-after-in-loop") && first.contains("main.poll"),
        "{first}"
    );
    assert!(first.contains("leaks.go:23"), "{first}");
    // The live-timer plot rises, with its fit drawn; the events plot is there too.
    let live = values_after(&dom, "data-series=\"timers_live\"");
    assert_eq!(live.len(), INTERVALS as usize);
    assert!(live.windows(2).all(|w| w[1] > w[0]), "{live:?}");
    assert!(dom.contains("class=\"fit\""), "fitted slope drawn");
    assert!(dom.contains("timer events per second"));
    // The top site's own series, and the per-site threshold.
    let site = dom
        .find("class=\"site\" data-function=\"main.poll\"")
        .expect("top site");
    assert!(dom[site..].contains("data-threshold=\"100\""));
    assert!(
        dom.contains("iframe class=\"flame\""),
        "flame graphs embedded"
    );
    assert!(dom.contains("Recording facts") && dom.contains("go1.22.10"));

    // The README's screenshot.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/report-screenshot.png");
    let taken = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1250",
            &url,
        ],
        browser.path(),
    );
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}
