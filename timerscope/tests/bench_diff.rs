//! Benchmark (ignored by default; run in release):
//!   cargo test --release -p analyzer --test bench_diff -- --ignored --nocapture
//! Parses and diffs two generated profiles of tens of MB, in a child process, and compares wall
//! time and peak RSS with the reference `pprof -diff_base -top` on the same files. Needs Go 1.25.5.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use pprof::{Frame, MappingSpec, ProfileBuilder, SampleLabel, write_atomic};
use timerscope::commands::diff::{DiffOptions, run_diff};

const CHILD_ENV: &str = "ANALYZER_BENCH_DIFF_FILES";
const SAMPLES: usize = 300_000;
const FUNCTIONS: u64 = 6_000;
const LOCATIONS: u64 = 60_000;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn function_frame(f: u64, line: i64) -> Frame {
    let name = if f.is_multiple_of(5) {
        format!("runtime.fn{f}")
    } else {
        format!("github.com/acme/svc/pkg{}.(*T{}).Method{f}", f % 97, f % 13)
    };
    Frame {
        system_name: name.clone(),
        function: name,
        file: format!("/src/svc/pkg{}/file{}.go", f % 97, f % 31),
        line,
        start_line: (f % 400) as i64 + 1,
    }
}

/// A heap-like profile; `seed` changes values and a tenth of the stacks.
fn generate(seed: u64) -> pprof::Profile {
    let mut b = ProfileBuilder::new(
        &[("alloc_objects", "count"), ("inuse_space", "bytes")],
        "inuse_space",
    );
    b.period_type("space", "bytes", 512 * 1024).time_nanos(T0);
    let mapping = b.add_mapping(MappingSpec {
        start: 0x400000,
        limit: 0x400000 + LOCATIONS * 64 + 0x1000,
        file: "/srv/svc".to_owned(),
        build_id: BUILD_ID.to_owned(),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
        ..MappingSpec::default()
    });
    let mut layout = Rng(0x9e37_79b9_7f4a_7c15);
    let locations: Vec<u64> = (0..LOCATIONS)
        .map(|i| {
            let f = layout.below(FUNCTIONS);
            let mut frames = vec![function_frame(f, (i % 500) as i64 + 10)];
            if i.is_multiple_of(4) {
                frames.insert(0, function_frame(layout.below(FUNCTIONS), 7));
            }
            b.location(mapping, 0x400000 + i * 64, &frames)
        })
        .collect();
    let mut shape = Rng(0x1234_5678);
    let mut values = Rng(seed);
    let mut stack = Vec::with_capacity(48);
    for s in 0..SAMPLES {
        let mut stack_rng = if s.is_multiple_of(10) {
            Rng(seed ^ s as u64)
        } else {
            Rng(shape.next() | 1)
        };
        stack.clear();
        let depth = 8 + stack_rng.below(32) as usize;
        stack.extend((0..depth).map(|_| locations[stack_rng.below(LOCATIONS) as usize]));
        let objects = 1 + values.below(64) as i64;
        let label = SampleLabel::Num {
            key: "bytes".into(),
            value: 16 << (s % 8),
            unit: "bytes".into(),
        };
        b.add_sample(&stack, &[objects, objects * (16 << (s % 8))], &[label]);
    }
    b.build().unwrap()
}

/// Runs `cmd` and returns (wall time, peak RSS in KiB) of that child alone.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its rusage"
)]
fn measure(cmd: &mut Command) -> (Duration, i64) {
    let start = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child (not yet reaped: `Child` is never waited on here).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {status}"
    );
    (elapsed, usage.ru_maxrss)
}

#[test]
#[ignore = "benchmark: run in release with --ignored"]
fn parse_and_diff_is_5x_faster_than_pprof() {
    if let Ok(files) = std::env::var(CHILD_ENV) {
        // The measured child: parse both files and diff them, nothing else.
        let (base, new) = files.split_once('\n').unwrap();
        let report = run_diff(&DiffOptions {
            base: PathBuf::from(base),
            new: PathBuf::from(new),
            sample_index: None,
            top: 20,
            threshold_pp: 15.0,
            output: None,
            limits: Default::default(),
        })
        .unwrap();
        assert!(!report.rows.is_empty());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (base, new) = (dir.path().join("base.pb.gz"), dir.path().join("new.pb.gz"));
    for (path, seed) in [(&base, 1), (&new, 2)] {
        let profile = generate(seed);
        write_atomic(path, &profile).unwrap();
        let raw = prost::Message::encoded_len(&profile);
        let gz = std::fs::metadata(path).unwrap().len();
        println!(
            "{}: {:.1} MB protobuf, {:.1} MB gzipped",
            path.display(),
            raw as f64 / 1e6,
            gz as f64 / 1e6
        );
        assert!(raw > 10_000_000, "tens of MB");
    }

    // The pprof binary itself (`go tool -n` builds it if needed), so that the go command's own
    // start-up is not counted against pprof.
    let pprof = PathBuf::from(run_ok(go_command("1.25.5").args(["tool", "-n", "pprof"])).trim());
    let (go_time, go_rss) = measure(
        Command::new(&pprof)
            .args(["-top", "-nodecount=20"])
            .arg(format!("-diff_base={}", base.display()))
            .arg(&new),
    );
    let (our_time, our_rss) = measure(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "parse_and_diff_is_5x_faster_than_pprof",
            ])
            .env(CHILD_ENV, format!("{}\n{}", base.display(), new.display())),
    );
    let speedup = go_time.as_secs_f64() / our_time.as_secs_f64();
    println!(
        "pprof -diff_base -top: {:.2} s, peak RSS {} MiB; analyzer parse+diff: {:.2} s, peak RSS {} MiB; speedup {speedup:.1}x",
        go_time.as_secs_f64(),
        go_rss / 1024,
        our_time.as_secs_f64(),
        our_rss / 1024
    );
    assert!(speedup >= 5.0, "only {speedup:.1}x faster than pprof");
}
