//! `timerscope record` on real Go programs: exact lifecycle counts at the user code that made
//! the timers, for every Go version, in a file `go tool pprof` reads.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use common::{Fixture, PidRecording, count, cum, go_tool_pprof, read_profile, record_launch};
use timerscope_tests::{GoVersion, Variant, reference_go};

fn afterfunc_leak_is_live_where_it_was_created(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, path, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["afterfunc-leak", "-n", "200"],
    );

    let pending = count(&summary, "pending");
    assert!(
        pending > 0 && pending < 200,
        "the fixture stopped some: {summary}"
    );
    assert_eq!(
        cum(
            &profile,
            "timers_live",
            "main.leakAfterFuncs",
            Some("afterfunc")
        ),
        pending
    );
    assert_eq!(
        cum(
            &profile,
            "timers_created",
            "main.leakAfterFuncs",
            Some("afterfunc")
        ),
        count(&summary, "created")
    );
    assert_eq!(
        cum(&profile, "timers_stopped", "main.stopSome", None),
        count(&summary, "stopped")
    );
    // Stopped timers are not live anywhere.
    assert_eq!(cum(&profile, "timers_live", "main.stopSome", None), 0);
    // The AfterFunc callback is named.
    let live = profile.sample_index(Some("timers_live")).unwrap();
    let callbacks: Vec<_> = profile
        .samples
        .iter()
        .filter(|s| s.values[live] > 0 && s.str_label("kind") == Some("afterfunc"))
        .map(|s| s.str_label("callback"))
        .collect();
    assert!(!callbacks.is_empty());
    assert!(
        callbacks
            .iter()
            .all(|c| *c == Some("main.leakAfterFuncs.func1")),
        "callbacks: {callbacks:?}"
    );
    assert_eq!(
        profile.comment_value("timer_family"),
        Some(if go.minor() >= 23 { "B" } else { "A" })
    );

    let top = go_tool_pprof(&["-top", "-sample_index=timers_live", path.to_str().unwrap()]);
    assert!(
        top.contains("main.leakAfterFuncs"),
        "go tool pprof -top shows:\n{top}"
    );
}
per_go_version!(
    afterfunc_leak_is_live_where_it_was_created,
    super::afterfunc_leak_is_live_where_it_was_created
);

fn tickers_are_labelled_and_stopped_ones_are_not_live(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["ticker", "-n", "40"],
    );
    assert_eq!(
        cum(
            &profile,
            "timers_created",
            "main.startTickers",
            Some("ticker")
        ),
        count(&summary, "created")
    );
    assert_eq!(
        cum(
            &profile,
            "timers_created",
            "main.startTickers",
            Some("timer")
        ),
        0
    );
    assert_eq!(
        cum(&profile, "timers_live", "main.startTickers", Some("ticker")),
        count(&summary, "pending")
    );
    assert_eq!(
        cum(
            &profile,
            "timers_stopped",
            "main.stopTickers",
            Some("ticker")
        ),
        count(&summary, "stopped")
    );
}
per_go_version!(
    tickers_are_labelled_and_stopped_ones_are_not_live,
    super::tickers_are_labelled_and_stopped_ones_are_not_live
);

fn counts_are_exact_under_churn(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["churn", "-n", "20000"],
    );
    // Exactly once per call: no double count when a prologue restarts through morestack.
    assert_eq!(
        cum(&profile, "timers_created", "main.churn", None),
        count(&summary, "created")
    );
    assert_eq!(
        cum(&profile, "timers_reset", "main.churn", None),
        count(&summary, "reset")
    );
    assert_eq!(
        cum(&profile, "timers_stopped", "main.churn", None),
        count(&summary, "stopped")
    );
    assert_eq!(cum(&profile, "timers_live", "main.churn", None), 0);
}
per_go_version!(
    counts_are_exact_under_churn,
    super::counts_are_exact_under_churn
);

/// `--pid` mode: attach to a running process, stop on SIGINT (Ctrl-C), and the profile holds
/// what was collected.
#[test]
fn record_by_pid_flushes_on_ctrl_c() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("pid.pb.gz");
    let mut fixture = Fixture::spawn(
        "timers",
        go,
        Variant::Normal,
        &["afterfunc-leak", "-n", "60", "-hold", "60s"],
    );
    let recorder = PidRecording::start(fixture.pid(), &output, &[]);
    fixture.start_scenario();
    let summary = fixture.summary();
    let status = recorder.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "timerscope exits 0 after Ctrl-C");
    let profile = read_profile(&output);
    assert_eq!(
        cum(&profile, "timers_live", "main.leakAfterFuncs", None),
        count(&summary, "pending")
    );
    assert_eq!(
        profile.comment_value("stopped_by"),
        Some("Interrupted(\"SIGINT\")")
    );
}
