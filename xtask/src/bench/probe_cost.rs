//! Rows 1 and 2: what probing costs a Go program that does nothing but timer operations, and
//! whether the profile counts every one of them at that rate.
//!
//! The `timers churn` fixture loops NewTimer, Reset, Stop, AfterFunc, Stop and reports its own
//! operations per second. Each run starts it with `-wait-stdin`, attaches nothing, `timerscope
//! record --pid`, or bpftrace with `@[ustack] = count()` on the same hook functions (at their
//! entry, the only place bpftrace can put a uprobe), then lets it churn. The runs of the three
//! interleave. From the medians: µs added per operation = 1/probed rate − 1/unprobed rate.
//!
//! [`depth`] measures the same cost (unprobed against `timerscope record`) at several stack
//! depths, with the `paced` bench program doing the same loop back to back, a chosen number of
//! calls deeper.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use timerscope_tests::{GoVersion, Variant, fixture_path, go_version};

use super::Bench;
use super::go_programs;
use super::hooks::{
    CountsAtExit, TIMERSCOPE_READY, bpftrace_script, hooked_functions, start_bpftrace,
};
use super::measure::{Lines, Running, Spread, rotated};
use super::plot::Plot;
use super::report::{Check, Growth, Row, Section, linearity, rate, thousands};
use crate::util;

const GO_VERSIONS: [&str; 2] = ["1.19", "1.25"];
/// Limits for a step that normally takes well under a second (attaching: a few seconds).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The function whose timer calls the fixture counts.
const CHURN_FUNCTION: &str = "main.churn";
/// Targets: the added cost per timer operation, and the advantage over bpftrace.
const MAX_ADDED_MICROS_PER_OP: f64 = 2.0;
const MIN_CHEAPER_THAN_BPFTRACE: f64 = 4.0;
/// Frames of the timer operations' stacks in the depth row (the probe walks at most 127).
const STACK_DEPTHS: [usize; 3] = [8, 32, 128];
/// Stack bytes of one recursion frame of `paced -depth`, Go 1.25: `main.descend` reserves 216
/// bytes (`go tool objdump`: SUBQ $0xd8, SP) below the saved frame pointer and return address.
const DEPTH_FRAME_BYTES: usize = 232;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Probing {
    Unprobed,
    Timerscope,
    Bpftrace,
}

impl Probing {
    const ALL: [Probing; 3] = [Probing::Unprobed, Probing::Timerscope, Probing::Bpftrace];
}

/// The fixture's own summary line.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
struct ChurnSummary {
    iterations: u64,
    created: u64,
    reset: u64,
    stopped: u64,
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
}

/// What timerscope's profile of one churn run says.
#[derive(Debug, Clone, Copy, Serialize)]
struct ProfileCounts {
    created_at_churn: u64,
    reset_at_churn: u64,
    stopped_at_churn: u64,
    /// created + reset + stopped + fired, everywhere.
    events: u64,
    drops: u64,
    /// Frames of the deepest stack through main.churn.
    churn_stack_frames: usize,
}

#[derive(Debug, Serialize)]
struct ChurnRun {
    /// [`Target::label`].
    target: String,
    probing: Probing,
    run: usize,
    summary: ChurnSummary,
    profile: Option<ProfileCounts>,
    /// Sum of bpftrace's `@[ustack]` counts: uprobe hits.
    bpftrace_hits: Option<u64>,
}

/// One Go version's fixture and the functions timerscope hooks in it.
struct Target {
    go: &'static GoVersion,
    binary: PathBuf,
    hooks: Vec<String>,
    workload: Workload,
    /// Tells the target's runs apart: the Go version, and the depth.
    label: String,
}

/// The timer loop the target runs.
#[derive(Clone, Copy, Debug)]
enum Workload {
    /// The timers fixture's `churn` scenario.
    Churn,
    /// `paced -ops-per-sec 0`: the same loop, `calls` calls deeper than main.run.
    Deep { calls: usize },
}

impl Workload {
    /// The target's arguments for a run of `duration`, started by a line on stdin.
    fn args(self, duration: &str) -> Vec<String> {
        let args = match self {
            Workload::Churn => vec!["churn", "-n", "0", "-duration", duration, "-wait-stdin"],
            Workload::Deep { .. } => {
                vec!["-ops-per-sec", "0", "-duration", duration, "-wait-stdin"]
            }
        };
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        if let Workload::Deep { calls } = self {
            args.extend(["-depth".to_owned(), calls.to_string()]);
        }
        args
    }
}

/// Runs rows 1 and 2: a probe-cost section per Go version, then the fidelity section.
pub fn run(bench: &Bench) -> Result<Vec<Section>> {
    let mut targets = Vec::new();
    for name in GO_VERSIONS {
        let go = go_version(name).with_context(|| format!("bench: no Go {name}"))?;
        let binary = fixture_path("timers", go, Variant::Normal)?;
        let hooks = hook_functions(bench, go, &binary)?;
        println!("bench: probe cost, {go}: hooks {}", hooks.join(", "));
        targets.push(Target {
            go,
            binary,
            hooks,
            workload: Workload::Churn,
            label: go.to_string(),
        });
    }
    let runs = interleaved(bench, &targets, &Probing::ALL)?;
    let mut sections: Vec<Section> = targets
        .iter()
        .map(|target| cost_section(target, &runs))
        .collect();
    sections.push(fidelity_section(&targets, &runs));
    Ok(sections)
}

/// Runs every target under every probing `bench.runs` times, interleaved.
fn interleaved(bench: &Bench, targets: &[Target], probings: &[Probing]) -> Result<Vec<ChurnRun>> {
    let mut runs = Vec::new();
    for run in 0..bench.runs {
        for (t, target) in targets.iter().enumerate() {
            for probing in rotated(probings, run + t) {
                let result = churn(bench, target, probing, run).with_context(|| {
                    format!("bench: churn {probing:?} {}, run {run}", target.label)
                })?;
                println!(
                    "bench: probe cost {} run {}/{}: {probing:?} {}",
                    target.label,
                    run + 1,
                    bench.runs,
                    rate(result.summary.ops_per_sec)
                );
                runs.push(result);
            }
        }
    }
    Ok(runs)
}

/// How the cost per timer event grows with the depth of the stack the probe walks: `paced`
/// back to back at [`STACK_DEPTHS`] frames, unprobed and under `timerscope record`.
pub fn depth(bench: &Bench) -> Result<Growth> {
    let binary = go_programs::paced()?;
    let go = timerscope_tests::reference_go();
    // The frames the loop's stacks have without extra calls, from a warm-up recording.
    let shallow = Target {
        go,
        binary: binary.clone(),
        hooks: Vec::new(),
        workload: Workload::Deep { calls: 0 },
        label: "depth warm-up".into(),
    };
    let warm_up = churn(bench, &shallow, Probing::Timerscope, 0).context("bench: warm-up")?;
    let base = warm_up
        .profile
        .map(|p| p.churn_stack_frames)
        .filter(|&frames| frames > 0)
        .context("bench: the warm-up profile has no stack through main.churn")?;
    let targets: Vec<Target> = STACK_DEPTHS
        .iter()
        .map(|&frames| Target {
            go,
            binary: binary.clone(),
            hooks: Vec::new(),
            workload: Workload::Deep {
                calls: frames.saturating_sub(base),
            },
            label: format!("{frames} frames"),
        })
        .collect();
    let runs = interleaved(bench, &targets, &[Probing::Unprobed, Probing::Timerscope])?;

    let mut rows = Vec::new();
    let mut points = Vec::new();
    let mut data = Vec::new();
    for (target, frames) in targets.iter().zip(STACK_DEPTHS) {
        let Workload::Deep { calls } = target.workload else {
            unreachable!("depth targets are paced")
        };
        let unprobed: Vec<&ChurnRun> = runs_of(&runs, target, Probing::Unprobed).collect();
        let probed: Vec<&ChurnRun> = runs_of(&runs, target, Probing::Timerscope).collect();
        // Each run's added cost per event, against the unprobed run of the same round.
        let added: Vec<f64> = unprobed
            .iter()
            .zip(&probed)
            .map(|(u, p)| {
                let events = p.profile.map_or(0, |c| c.events) as f64 / p.summary.ops as f64;
                (1e6 / p.summary.ops_per_sec - 1e6 / u.summary.ops_per_sec) / events
            })
            .collect();
        let added = Spread::of(&added);
        let recorded = probed
            .iter()
            .filter_map(|r| r.profile)
            .map(|p| p.churn_stack_frames)
            .max()
            .unwrap_or(0);
        let drops: u64 = probed
            .iter()
            .filter_map(|r| r.profile)
            .map(|p| p.drops)
            .sum();
        let (first_frames, first_cost) = *points.first().unwrap_or(&(frames as f64, added.median));
        rows.push(Row {
            what: format!(
                "{frames} frames ({calls} recursive calls, {:.1} KiB of stack)",
                (calls * DEPTH_FRAME_BYTES) as f64 / 1024.0
            ),
            median: format!("+{:.2} µs per event", added.median),
            range: format!("{:.2} – {:.2} µs", added.min, added.max),
            peak_memory: String::new(),
            comparison: format!(
                "{:.2}x the cost per event of {first_frames:.0} frames; {recorded} frames in                  the recorded stacks; unprobed {}, recorded {}; {drops} drops",
                added.median / first_cost,
                rate(rates(&runs, target, Probing::Unprobed).median),
                rate(rates(&runs, target, Probing::Timerscope).median),
            ),
        });
        points.push((frames as f64, added.median));
        data.push(serde_json::json!({
            "frames": frames,
            "calls": calls,
            "recorded_frames": recorded,
            "added_micros_per_event": added,
            "runs": unprobed.iter().chain(&probed).collect::<Vec<_>>(),
        }));
    }
    let notes = vec![
        format!(
            "`paced -ops-per-sec 0 -depth N` (Go 1.25): the churn loop of row 1, N calls deeper; \
             each call's frame holds 192 bytes of locals. Frames counted as in the profile (the \
             loop has {base} without extra calls; the probe walks at most 127). Added cost per \
             event = (1/recorded rate − 1/unprobed rate) / profile events per operation, each \
             recorded run against the unprobed run of its round."
        ),
        linearity(&points, ("frame", "frames"), "Added cost"),
    ];
    Ok(Growth {
        section: Section {
            title: "Probe cost per timer event against stack depth".into(),
            rows,
            checks: Vec::new(),
            notes,
            data: serde_json::json!({ "base_frames": base, "depths": data }),
        },
        plot: Some(Plot {
            file: "probe-depth.svg".into(),
            title: "Probe cost per timer event against stack depth".into(),
            x_label: "frames in the stack".into(),
            y_label: "µs added per event".into(),
            log_x: false,
            points,
        }),
    })
}

/// The functions timerscope hooks in `binary`, from a short recording (which also warms up both
/// the binary and timerscope).
fn hook_functions(bench: &Bench, go: &GoVersion, binary: &Path) -> Result<Vec<String>> {
    let profile = bench.out_dir.join(format!("churn-warmup-{go}.pb.gz"));
    util::output(
        Command::new(&bench.tools.timerscope)
            .args(["record", "--output"])
            .arg(&profile)
            .arg("--")
            .arg(binary)
            .args(["churn", "-n", "20000"]),
    )
    .context("bench: warm-up recording")?;
    hooked_functions(&profile)
}

/// A probing tool attached to the fixture, with the output it is read through.
enum Attached {
    Timerscope(Running, Lines),
    Bpftrace(Running, Lines),
}

fn churn(bench: &Bench, target: &Target, probing: Probing, run: usize) -> Result<ChurnRun> {
    let duration = format!("{}ms", bench.churn.as_millis());
    let mut fixture = Running::spawn(
        Command::new(&target.binary)
            .args(target.workload.args(&duration))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let mut fixture_out = Lines::new("timers churn", fixture.child.stdout.take().unwrap());
    fixture_out.wait_for("\"ready\"", STEP_TIMEOUT)?;
    let pid = fixture.pid().to_string();
    let profile_path = bench.out_dir.join(format!(
        "churn-{}-run{run}.pb.gz",
        target.label.replace(' ', "-")
    ));
    let mut attached = match probing {
        Probing::Unprobed => None,
        Probing::Timerscope => {
            let _ = fs::remove_file(&profile_path);
            let mut recorder = Running::spawn(
                Command::new(&bench.tools.timerscope)
                    .args(["record", "--pid", &pid, "--output"])
                    .arg(&profile_path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )?;
            let mut stderr = Lines::new("timerscope record", recorder.child.stderr.take().unwrap());
            stderr.wait_for(TIMERSCOPE_READY, STEP_TIMEOUT)?;
            Some(Attached::Timerscope(recorder, stderr))
        }
        Probing::Bpftrace => {
            let script = bpftrace_script(&target.binary, &target.hooks, CountsAtExit::Print)?;
            let tracer =
                start_bpftrace(fixture.pid(), &script, &bench.out_dir.join("bpftrace.log"))?;
            Some(Attached::Bpftrace(tracer.running, tracer.stdout))
        }
    };

    let mut stdin = fixture.child.stdin.take().unwrap();
    stdin.write_all(b"go\n")?;
    drop(stdin);
    let (summary, _) = fixture_out.wait_for("\"summary\"", bench.churn + STEP_TIMEOUT)?;
    fixture.wait_success(STEP_TIMEOUT)?;
    let summary: ChurnSummary = serde_json::from_str(&summary)
        .with_context(|| format!("bench: reading the fixture's summary {summary:?}"))?;

    let (mut profile, mut bpftrace_hits) = (None, None);
    match &mut attached {
        None => {}
        Some(Attached::Timerscope(recorder, stderr)) => {
            // The target exited; timerscope writes the profile and exits.
            recorder
                .wait_success(STEP_TIMEOUT)
                .with_context(|| format!("timerscope said:\n{}", stderr.seen()))?;
            profile = Some(profile_counts(&profile_path)?);
        }
        Some(Attached::Bpftrace(tracer, stdout)) => {
            tracer.interrupt_until_exit(STEP_TIMEOUT)?;
            let maps = stdout.rest(STEP_TIMEOUT)?;
            bpftrace_hits = Some(map_total(&maps)?);
        }
    }
    Ok(ChurnRun {
        target: target.label.clone(),
        probing,
        run,
        summary,
        profile,
        bpftrace_hits,
    })
}

/// The sum of a printed bpftrace count map (`@[...]: N` entries).
fn map_total(lines: &[String]) -> Result<u64> {
    let mut total = 0;
    for line in lines {
        if let Some((_, count)) = line.rsplit_once("]: ") {
            total += count
                .trim()
                .parse::<u64>()
                .with_context(|| format!("bench: a bpftrace map line {line:?}"))?;
        }
    }
    if total == 0 {
        bail!("bench: bpftrace printed no counts:\n{}", lines.join("\n"));
    }
    Ok(total)
}

fn profile_counts(path: &Path) -> Result<ProfileCounts> {
    let profile = pprof::ResolvedProfile::new(
        &pprof::read_file(path).with_context(|| format!("bench: reading {}", path.display()))?,
    );
    let column = |name: &str| {
        profile
            .sample_index(Some(name))
            .with_context(|| format!("bench: {} has no sample type {name}", path.display()))
    };
    let (created, reset, stopped, fired) = (
        column("timers_created")?,
        column("timers_reset")?,
        column("timers_stopped")?,
        column("timers_fired")?,
    );
    let mut counts = ProfileCounts {
        created_at_churn: 0,
        reset_at_churn: 0,
        stopped_at_churn: 0,
        events: 0,
        drops: 0,
        churn_stack_frames: 0,
    };
    for sample in &profile.samples {
        let value = |column: usize| u64::try_from(sample.values[column]).unwrap_or(0);
        counts.events += value(created) + value(reset) + value(stopped) + value(fired);
        let frames: Vec<_> = profile.stack(sample).collect();
        if frames.iter().any(|frame| frame.function == CHURN_FUNCTION) {
            counts.churn_stack_frames = counts.churn_stack_frames.max(frames.len());
            counts.created_at_churn += value(created);
            counts.reset_at_churn += value(reset);
            counts.stopped_at_churn += value(stopped);
        }
    }
    let drops = profile
        .comments
        .iter()
        .find_map(|c| c.strip_prefix("drops:"))
        .with_context(|| format!("bench: {} has no drops comment", path.display()))?;
    for reason in drops.split_whitespace() {
        let (_, n) = reason
            .split_once('=')
            .with_context(|| format!("bench: a drop count {reason:?}"))?;
        counts.drops += n
            .parse::<u64>()
            .with_context(|| format!("bench: a drop count {reason:?}"))?;
    }
    Ok(counts)
}

fn runs_of<'a>(
    runs: &'a [ChurnRun],
    target: &Target,
    probing: Probing,
) -> impl Iterator<Item = &'a ChurnRun> + use<'a> {
    let label = target.label.clone();
    runs.iter()
        .filter(move |r| r.target == label && r.probing == probing)
}

fn rates(runs: &[ChurnRun], target: &Target, probing: Probing) -> Spread {
    let rates: Vec<f64> = runs_of(runs, target, probing)
        .map(|r| r.summary.ops_per_sec)
        .collect();
    Spread::of(&rates)
}

fn rate_range(spread: Spread) -> String {
    format!("{} – {}", rate(spread.min), rate(spread.max))
}

/// Median over runs of `count(run)` per timer operation.
fn median_per_op(
    runs: &[ChurnRun],
    target: &Target,
    probing: Probing,
    count: impl Fn(&ChurnRun) -> Option<u64>,
) -> f64 {
    let ratios: Vec<f64> = runs_of(runs, target, probing)
        .filter_map(|r| count(r).map(|n| n as f64 / r.summary.ops as f64))
        .collect();
    Spread::of(&ratios).median
}

fn cost_section(target: &Target, runs: &[ChurnRun]) -> Section {
    let unprobed = rates(runs, target, Probing::Unprobed);
    let timerscope = rates(runs, target, Probing::Timerscope);
    let bpftrace = rates(runs, target, Probing::Bpftrace);
    let micros = |per_second: f64| 1e6 / per_second;
    let added_timerscope = micros(timerscope.median) - micros(unprobed.median);
    let added_bpftrace = micros(bpftrace.median) - micros(unprobed.median);
    let events_per_op = median_per_op(runs, target, Probing::Timerscope, |r| {
        r.profile.map(|p| p.events)
    });
    let hits_per_op = median_per_op(runs, target, Probing::Bpftrace, |r| r.bpftrace_hits);
    let cheaper_per_op = added_bpftrace / added_timerscope;
    let cheaper_per_event = (added_bpftrace / hits_per_op) / (added_timerscope / events_per_op);
    let rows = vec![
        Row {
            what: "timer operations, unprobed".into(),
            median: rate(unprobed.median),
            range: rate_range(unprobed),
            peak_memory: String::new(),
            comparison: format!("{:.0} ns per operation", micros(unprobed.median) * 1e3),
        },
        Row {
            what: "under `timerscope record`".into(),
            median: rate(timerscope.median),
            range: rate_range(timerscope),
            peak_memory: String::new(),
            comparison: format!(
                "+{added_timerscope:.2} µs per operation; {events_per_op:.2} profile events per \
                 operation"
            ),
        },
        Row {
            what: "under bpftrace `@[ustack] = count()` at the same functions' entry".into(),
            median: rate(bpftrace.median),
            range: rate_range(bpftrace),
            peak_memory: String::new(),
            comparison: format!(
                "+{added_bpftrace:.2} µs per operation; {hits_per_op:.2} probe hits per operation; \
                 {cheaper_per_op:.2}x timerscope's added cost per operation, \
                 {cheaper_per_event:.2}x per event"
            ),
        },
    ];
    let checks = vec![
        Check {
            target: format!("≤ {MAX_ADDED_MICROS_PER_OP} µs added per timer operation"),
            measured: format!("{added_timerscope:.2} µs"),
            met: added_timerscope <= MAX_ADDED_MICROS_PER_OP,
        },
        Check {
            target: format!("≥ {MIN_CHEAPER_THAN_BPFTRACE}x cheaper per event than bpftrace"),
            measured: format!("{cheaper_per_event:.2}x"),
            met: cheaper_per_event >= MIN_CHEAPER_THAN_BPFTRACE,
        },
    ];
    let data = serde_json::json!({
        "go": target.go.version,
        "hooks": target.hooks,
        "ops_per_sec": {
            "unprobed": unprobed, "timerscope": timerscope, "bpftrace": bpftrace,
        },
        "added_micros_per_op": { "timerscope": added_timerscope, "bpftrace": added_bpftrace },
        "timerscope_events_per_op": events_per_op,
        "bpftrace_hits_per_op": hits_per_op,
        "timerscope_cheaper_per_op": cheaper_per_op,
        "timerscope_cheaper_per_event": cheaper_per_event,
        "runs": runs_of(runs, target, Probing::Unprobed)
            .chain(runs_of(runs, target, Probing::Timerscope))
            .chain(runs_of(runs, target, Probing::Bpftrace))
            .collect::<Vec<_>>(),
    });
    Section {
        title: format!("1. Probe cost: timer churn, {}", target.go),
        rows,
        checks,
        notes: vec![format!("Hooked functions: {}.", target.hooks.join(", "))],
        data,
    }
}

/// The profile's columns compared with the fixture's counts.
const COUNTED: [&str; 3] = ["timers_created", "timers_reset", "timers_stopped"];

/// (the fixture's count, the profile's count at main.churn) for each of [`COUNTED`].
fn fixture_and_profile(summary: &ChurnSummary, profile: &ProfileCounts) -> [(u64, u64); 3] {
    [
        (summary.created, profile.created_at_churn),
        (summary.reset, profile.reset_at_churn),
        (summary.stopped, profile.stopped_at_churn),
    ]
}

fn fidelity_section(targets: &[Target], runs: &[ChurnRun]) -> Section {
    let mut rows = Vec::new();
    let mut all_exact = true;
    let mut total_drops = 0;
    let mut data = Vec::new();
    for target in targets {
        let recorded: Vec<(&ChurnSummary, ProfileCounts)> =
            runs_of(runs, target, Probing::Timerscope)
                .filter_map(|r| r.profile.map(|p| (&r.summary, p)))
                .collect();
        let at_rate = rates(runs, target, Probing::Timerscope).median;
        for (column, name) in COUNTED.iter().enumerate() {
            let pairs: Vec<(u64, u64)> = recorded
                .iter()
                .map(|(summary, profile)| fixture_and_profile(summary, profile)[column])
                .collect();
            let exact = pairs
                .iter()
                .filter(|(fixture, profile)| fixture == profile)
                .count();
            let largest_difference = pairs
                .iter()
                .map(|(fixture, profile)| fixture.abs_diff(*profile))
                .max()
                .unwrap_or(0);
            all_exact &= exact == pairs.len();
            let counts: Vec<f64> = pairs.iter().map(|&(_, profile)| profile as f64).collect();
            let spread = Spread::of(&counts);
            rows.push(Row {
                what: format!("{}: {name} at {CHURN_FUNCTION}", target.go),
                median: thousands(spread.median as u64),
                range: format!(
                    "{} – {}",
                    thousands(spread.min as u64),
                    thousands(spread.max as u64)
                ),
                peak_memory: String::new(),
                comparison: format!(
                    "equal to the fixture's count in {exact} of {} runs (largest difference \
                     {largest_difference}), at {}",
                    pairs.len(),
                    rate(at_rate)
                ),
            });
        }
        let drops: Vec<u64> = recorded.iter().map(|(_, p)| p.drops).collect();
        total_drops += drops.iter().sum::<u64>();
        rows.push(Row {
            what: format!("{}: drops (profile comment `drops:`)", target.go),
            median: thousands(drops.iter().sum()),
            range: String::new(),
            peak_memory: String::new(),
            comparison: format!("total over {} runs", drops.len()),
        });
        data.push(serde_json::json!({
            "go": target.go.version,
            "runs": recorded
                .iter()
                .map(|(fixture, profile)| {
                    serde_json::json!({ "fixture": fixture, "profile": profile })
                })
                .collect::<Vec<_>>(),
        }));
    }
    Section {
        title: "2. Event fidelity at the highest rate (churn under `timerscope record`)".into(),
        rows,
        checks: vec![Check {
            target: "exact counts: created, reset and stopped at main.churn equal the \
                     fixture's own counts in every run, no drops"
                .into(),
            measured: format!(
                "{} exact, {total_drops} drops",
                if all_exact { "all" } else { "not all" }
            ),
            met: all_exact && total_drops == 0,
        }],
        notes: Vec::new(),
        data: serde_json::Value::Array(data),
    }
}
