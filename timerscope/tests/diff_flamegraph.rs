//! `diff`, the saved diff profile, bad inputs and flame graphs on built profiles.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use analyzer::diff::{BASE_LABEL, DiffError, Presence, diff, diff_profile};
use common::*;
use pprof::Profile;
use pprof::{ProfileError, ResolvedProfile, write_atomic};
use timerscope::commands::diff::{DiffOptions, run_diff};
use timerscope::commands::flamegraph::{FlamegraphOptions, run_flamegraph};
use timerscope::exit::analysis_status as error_exit_status;
use timerscope::render::{Text, to_json};

const SLEEP_GO: &str = "/usr/local/go/src/time/sleep.go";

fn site(function: &str, line: i64, created: i64) -> TimerSite {
    TimerSite::new(
        "afterfunc",
        vec![frame("time.AfterFunc", SLEEP_GO, 176)],
        vec![frame(function, "/src/app/main.go", line)],
    )
    .counts(created, 0, 0)
}

fn base_and_new() -> (Profile, Profile) {
    let runtime = RUNTIMES[2];
    let base = timer_profile(
        runtime,
        T0,
        &[
            site("main.steady", 10, 50),
            site("main.gone", 20, 30),
            site("main.leaky", 30, 20),
        ],
    );
    let new = timer_profile(
        runtime,
        T0 + SECOND,
        &[
            site("main.steady", 10, 50),
            site("main.leaky", 30, 400),
            site("main.fresh", 40, 50),
        ],
    );
    (base, new)
}

#[test]
fn diff_reports_flat_cum_shares_and_presence() {
    let (base, new) = base_and_new();
    let report = diff(
        &ResolvedProfile::new(&base),
        &ResolvedProfile::new(&new),
        Some("timers_live"),
        15.0,
    )
    .unwrap();
    assert_eq!((report.base_total, report.new_total), (100, 500));
    let row = |name: &str| {
        report
            .rows
            .iter()
            .find(|r| r.function == name)
            .unwrap_or_else(|| panic!("{name}: {report:#?}"))
    };

    // The hook frame is the leaf: all flat lands there; user functions only have cum.
    let leaf = row("time.newTimer");
    assert_eq!(
        (leaf.flat_base, leaf.flat_new, leaf.flat_delta),
        (100, 500, 400)
    );
    let leaky = row("main.leaky");
    assert_eq!(
        (
            leaky.flat_delta,
            leaky.cum_base,
            leaky.cum_new,
            leaky.cum_delta
        ),
        (0, 20, 400, 380)
    );
    assert!(
        (leaky.cum_share_base - 20.0).abs() < 1e-9 && (leaky.cum_share_new - 80.0).abs() < 1e-9
    );
    assert!((leaky.cum_share_delta_pp - 60.0).abs() < 1e-9);
    assert!(leaky.flagged);
    assert_eq!(leaky.presence, Presence::Both);

    let steady = row("main.steady");
    assert_eq!((steady.flat_delta, steady.cum_delta), (0, 0));
    assert!(
        steady.flagged,
        "50 → 50 is 50% → 10% of the total: {steady:?}"
    );
    assert!((steady.cum_share_delta_pp + 40.0).abs() < 1e-9);
    assert_eq!(row("main.gone").presence, Presence::Vanished);
    assert_eq!(row("main.fresh").presence, Presence::Appeared);
    assert_eq!(report.appeared, vec!["main.fresh".to_owned()]);
    assert_eq!(report.vanished, vec!["main.gone".to_owned()]);
    assert!(
        report
            .rows
            .windows(2)
            .all(|w| w[0].flat_delta.abs() >= w[1].flat_delta.abs()),
        "sorted by |flat Δ|"
    );
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.function != "main.main" || r.cum_delta == 400)
    );

    let text = Text(&report).to_string();
    assert!(
        text.contains("main.leaky") && text.contains("appeared: main.fresh"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&to_json(&report)).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), report.rows.len());
    assert_eq!(json["rows"][0]["presence"], "both");
}

#[test]
fn top_keeps_flagged_rows() {
    let (base, new) = base_and_new();
    let mut report = diff(
        &ResolvedProfile::new(&base),
        &ResolvedProfile::new(&new),
        None,
        15.0,
    )
    .unwrap();
    let all = report.rows.len();
    let kept: Vec<String> = report
        .rows
        .iter()
        .enumerate()
        .filter(|(rank, r)| *rank == 0 || r.flagged)
        .map(|(_, r)| r.function.clone())
        .collect();
    assert!(
        kept.len() > 1,
        "the fixture has flagged rows below the top one"
    );
    report.truncate(1);
    let shown: Vec<String> = report.rows.iter().map(|r| r.function.clone()).collect();
    assert_eq!(shown, kept);
    assert_eq!(report.omitted_rows, all - kept.len());
    assert!(report.omitted_rows > 0);
}

#[test]
fn diff_profile_negates_and_labels_the_base() {
    let (base, new) = base_and_new();
    let merged = diff_profile(&base, &new).unwrap();
    let decoded = pprof::decode(&pprof::encode_gzip(&merged)).unwrap();
    let resolved = ResolvedProfile::new(&decoded);
    let live = resolved.sample_index(Some("timers_live")).unwrap();
    assert_eq!(resolved.total(live), 500 - 100);
    let base_samples: Vec<_> = resolved
        .samples
        .iter()
        .filter(|s| s.str_label(BASE_LABEL) == Some("true"))
        .collect();
    assert_eq!(base_samples.len(), base.sample.len());
    assert!(base_samples.iter().all(|s| s.values[live] <= 0));
    assert_eq!(resolved.main_build_id, BUILD_ID);
    assert_eq!(decoded.mapping.len(), 1, "same binary: one mapping");
    assert_eq!(resolved.comment_value("go_version"), Some("go1.23.9"));
}

#[test]
fn mismatched_sample_types_are_refused_clearly() {
    let (base, _) = base_and_new();
    let mmap = mmap_profile(RUNTIMES[2], T0, &[]);
    let err = diff(
        &ResolvedProfile::new(&base),
        &ResolvedProfile::new(&mmap),
        None,
        15.0,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DiffError::Incompatible {
            what: "sample types",
            ..
        }
    ));
    let message = err.to_string();
    assert!(
        message.contains("timers_live/count") && message.contains("mmap_live_bytes/bytes"),
        "{message}"
    );
    assert!(diff_profile(&base, &mmap).is_err());

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.pb.gz"), dir.path().join("b.pb.gz"));
    write_atomic(&a, &base).unwrap();
    write_atomic(&b, &mmap).unwrap();
    let err = run_diff(&DiffOptions {
        base: a.clone(),
        new: b,
        sample_index: None,
        top: 20,
        threshold_pp: 15.0,
        output: None,
        limits: Default::default(),
    })
    .unwrap_err();
    assert_eq!(error_exit_status(&err), 2);

    let err = run_diff(&DiffOptions {
        base: a.clone(),
        new: a,
        sample_index: Some("cpu".into()),
        top: 20,
        threshold_pp: 15.0,
        output: None,
        limits: Default::default(),
    })
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("timers_created"),
        "lists the choices: {err:#}"
    );
}

type IsExpected = fn(&ProfileError) -> bool;

#[test]
fn bad_files_give_clear_errors_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = base_and_new();
    let good = dir.path().join("good.pb.gz");
    write_atomic(&good, &base).unwrap();
    let gz = std::fs::read(&good).unwrap();
    let cases: [(&str, Vec<u8>, IsExpected); 4] = [
        ("empty.pb.gz", Vec::new(), |e| {
            matches!(e, ProfileError::EmptyInput)
        }),
        ("truncated.pb.gz", gz[..gz.len() / 2].to_vec(), |e| {
            matches!(e, ProfileError::TruncatedGzip(_))
        }),
        (
            "text.pb.gz",
            b"goroutine profile: total 4\n".to_vec(),
            |e| matches!(e, ProfileError::NotAProfile(_)),
        ),
        (
            "bitflip.pb.gz",
            {
                let mut b = gz.clone();
                let n = b.len();
                b[n - 5] ^= 0x40;
                b
            },
            |e| matches!(e, ProfileError::CorruptGzip(_)),
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = run_diff(&DiffOptions {
            base: good.clone(),
            new: path.clone(),
            sample_index: None,
            top: 20,
            threshold_pp: 15.0,
            output: None,
            limits: Default::default(),
        })
        .unwrap_err();
        let profile_error = err
            .downcast_ref::<ProfileError>()
            .unwrap_or_else(|| panic!("{name}: {err:#}"));
        assert!(expected(profile_error), "{name}: {err:#}");
        let message = format!("{err:#}");
        assert!(message.contains(name), "names the file: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert_eq!(error_exit_status(&err), 2, "{name}");
    }
    let missing_dir = dir.path().join("no/such/dir/diff.pb.gz");
    let err = run_diff(&DiffOptions {
        base: good.clone(),
        new: good,
        sample_index: None,
        top: 20,
        threshold_pp: 15.0,
        output: Some(missing_dir),
        limits: Default::default(),
    })
    .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<ProfileError>(),
            Some(ProfileError::OutputDirMissing(_))
        ),
        "{err:#}"
    );
}

#[test]
fn flamegraphs_plain_and_differential() {
    let dir = tempfile::tempdir().unwrap();
    let (base, new) = base_and_new();
    let (b, n) = (dir.path().join("base.pb.gz"), dir.path().join("new.pb.gz"));
    write_atomic(&b, &base).unwrap();
    write_atomic(&n, &new).unwrap();
    let svg_path = dir.path().join("out.svg");
    let options = FlamegraphOptions {
        profile: n.clone(),
        sample_index: None,
        base: None,
        output: svg_path.clone(),
        limits: Default::default(),
    };
    let summary = run_flamegraph(&options).unwrap();
    assert!(!summary.differential);
    assert_eq!(summary.stacks, 3, "one folded stack per user site");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("main.leaky") && !svg.contains("main.gone"),
        "plain graph of NEW"
    );

    let summary = run_flamegraph(&FlamegraphOptions {
        base: Some(b),
        ..options.clone()
    })
    .unwrap();
    assert!(summary.differential);
    assert_eq!(summary.stacks, 4, "stacks of both profiles");
    let differential = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        differential.contains("differential") && differential != svg,
        "a differential graph, sized by NEW and coloured by the change"
    );

    let err = run_flamegraph(&FlamegraphOptions {
        sample_index: Some("timers_reset".into()),
        ..options.clone()
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("timers_reset"), "{err:#}");
    assert_eq!(error_exit_status(&err), 2);

    let link = dir.path().join("link.svg");
    std::os::unix::fs::symlink(&svg_path, &link).unwrap();
    let err = run_flamegraph(&FlamegraphOptions {
        output: link,
        ..options
    })
    .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<ProfileError>(),
            Some(ProfileError::OutputIsSymlink(_))
        ),
        "{err:#}"
    );
}
