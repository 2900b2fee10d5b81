//! `timerscope record` on Go programs that map memory outside the Go heap: live mapped bytes at
//! the function that mapped them, exactly, and in agreement with the kernel's own accounting.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::fs;

use common::{
    Fixture, PidRecording, SYSCALL_MMAP, count, cum_through, read_profile, record_launch,
};

/// The raw syscall wrapper the fixtures unmap through (see [`SYSCALL_MMAP`]).
const SYSCALL_MUNMAP: &str = "syscall.munmap";
use timerscope_tests::{GoVersion, Variant, reference_go};

fn leaked_mappings_are_live_at_the_mapper(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _, profile) = record_launch(
        dir.path(),
        "mmap",
        go,
        Variant::Normal,
        &["leak", "-n", "6"],
    );
    let leaked = count(&summary, "bytes_leaked");
    assert_eq!(leaked, 6 << 20);
    assert_eq!(
        cum_through(
            &profile,
            "mmap_live_bytes",
            &["main.leakMappings", SYSCALL_MMAP]
        ),
        leaked
    );
    assert_eq!(
        cum_through(&profile, "mmap_bytes", &["main.leakMappings", SYSCALL_MMAP]),
        leaked
    );
    assert_eq!(
        cum_through(&profile, "mmap_calls", &["main.leakMappings", SYSCALL_MMAP]),
        6
    );
}
per_go_version!(
    leaked_mappings_are_live_at_the_mapper,
    super::leaked_mappings_are_live_at_the_mapper
);

fn balanced_mappings_leave_nothing_live(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _, profile) = record_launch(
        dir.path(),
        "mmap",
        go,
        Variant::Normal,
        &["balanced", "-n", "5"],
    );
    assert_eq!(
        cum_through(
            &profile,
            "mmap_live_bytes",
            &["main.balancedMappings", SYSCALL_MMAP]
        ),
        0
    );
    assert_eq!(
        cum_through(
            &profile,
            "mmap_bytes",
            &["main.balancedMappings", SYSCALL_MMAP]
        ),
        count(&summary, "bytes_mapped")
    );
    assert_eq!(
        cum_through(
            &profile,
            "munmap_bytes",
            &["main.balancedMappings", SYSCALL_MUNMAP]
        ),
        count(&summary, "bytes_unmapped")
    );
}
per_go_version!(
    balanced_mappings_leave_nothing_live,
    super::balanced_mappings_leave_nothing_live
);

/// Total size of the process's anonymous mappings, as the kernel accounts them.
fn anonymous_mapping_bytes(pid: u32) -> i64 {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut total = 0;
    let mut anonymous = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping header: address perms offset dev inode [path].
            let path = fields.nth(4).unwrap_or("");
            anonymous = path.is_empty() || path == "[heap]" || path.starts_with("[anon");
        } else if first == "Size:" && anonymous {
            total += fields.next().unwrap().parse::<i64>().unwrap() * 1024;
        }
    }
    total
}

/// A 30 s recording of a process that leaks a mapping a second: what the profile attributes
/// agrees with the growth of its anonymous mappings in /proc/PID/smaps, within 5%.
#[test]
fn live_bytes_agree_with_smaps_over_30_seconds() {
    let go = reference_go();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("smaps.pb.gz");
    let mut fixture = Fixture::spawn(
        "mmap",
        go,
        Variant::Normal,
        &["leak", "-n", "28", "-every", "1s", "-hold", "60s"],
    );
    let pid = fixture.pid();
    let recorder = PidRecording::start(pid, &output, &["--duration", "30s"]);
    let before = anonymous_mapping_bytes(pid);
    fixture.start_scenario();
    let summary = fixture.summary();
    let after = anonymous_mapping_bytes(pid);
    assert!(recorder.wait().success());

    let profile = read_profile(&output);
    let live = profile.sample_index(Some("mmap_live_bytes")).unwrap();
    let attributed: i64 = profile
        .samples
        .iter()
        .filter(|s| !matches!(s.str_label("mapping"), Some("file")))
        .filter(|s| !profile.stack(s).any(|f| f.function == "[pre-existing]"))
        .map(|s| s.values[live])
        .sum();
    let growth = after - before;
    assert!(
        growth >= count(&summary, "bytes_leaked"),
        "growth {growth}, summary {summary}"
    );
    let error = (attributed - growth).abs() as f64 / growth as f64;
    assert!(
        error <= 0.05,
        "attributed {attributed} vs smaps growth {growth}: {:.1}% apart",
        error * 100.0
    );
}

/// Memory malloc'ed in C called from Go (glibc maps big blocks): the live bytes sit at a stack
/// that reaches the Go function that called into C, though frame pointers end inside C.
fn c_allocations_are_attributed_to_the_go_caller(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (summary, _, profile) = record_launch(
        dir.path(),
        "cgomalloc",
        go,
        Variant::Normal,
        &["leak", "-n", "3", "-hold", "500ms"],
    );
    let leaked = count(&summary, "bytes_leaked");
    let index = profile.sample_index(Some("mmap_live_bytes")).unwrap();
    // Go's own heap can grow under leakCBlocks too (`keep = append(...)`, through
    // runtime.mallocgc, in 4 MiB chunks; a loaded run once saw 4 MiB more than the 3 blocks,
    // stacks not kept): only the C side's mappings count.
    let under_leak: Vec<_> = (profile.samples.iter())
        .filter(|s| profile.stack(s).any(|f| f.function == "main.leakCBlocks"))
        .collect();
    let live: i64 = (under_leak.iter())
        .filter(|s| !profile.stack(s).any(|f| f.function == "runtime.mallocgc"))
        .map(|s| s.values[index])
        .sum();
    let stacks: Vec<_> = (under_leak.iter())
        .filter(|s| s.values[index] != 0)
        .map(|s| {
            let frames: Vec<_> = profile.stack(s).map(|f| f.function.as_str()).collect();
            (s.values[index], frames)
        })
        .collect();
    // glibc adds a page to each mmapped block, and maps some bookkeeping of its own on first
    // use, inside the same call.
    assert!(
        live >= leaked && live <= leaked + (1 << 20),
        "live {live} for {leaked} leaked: {stacks:?}"
    );
    // The syscall itself is named from libc's own symbols.
    let sample = profile
        .samples
        .iter()
        .filter(|s| profile.stack(s).any(|f| f.function == "main.leakCBlocks"))
        .max_by_key(|s| s.values[index])
        .unwrap();
    let leaf = profile.stack(sample).next().unwrap();
    assert!(
        leaf.function.contains("mmap"),
        "leaf frame: {}",
        leaf.function
    );
}
per_go_version!(
    c_allocations_are_attributed_to_the_go_caller,
    super::c_allocations_are_attributed_to_the_go_caller
);

/// Heap growth runs on the system stack (`runtime.systemstack`), whose frame chain Go links back
/// to the goroutine's stack: the stack walk follows it, so a heap-arena mapping reaches the
/// program's code that allocated.
fn heap_growth_on_the_system_stack_reaches_the_allocating_code(go: &GoVersion) {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, profile) = record_launch(
        dir.path(),
        "timers",
        go,
        Variant::Normal,
        &["afterfunc-leak", "-n", "100000"],
    );
    let index = profile.sample_index(Some("mmap_bytes")).unwrap();
    let crossing = profile
        .samples
        .iter()
        .filter(|s| s.values[index] > 0 && s.str_label("mapping") == Some("heap-arena"))
        .map(|s| {
            profile
                .stack(s)
                .map(|f| f.function.as_str())
                .collect::<Vec<_>>()
        })
        .find(|stack| {
            stack
                .iter()
                .skip_while(|f| **f != "runtime.systemstack")
                .any(|f| f.starts_with("main."))
        });
    assert!(
        crossing.is_some(),
        "{go}: no heap-arena mapping reaches main.* through runtime.systemstack"
    );
}
per_go_version!(
    heap_growth_on_the_system_stack_reaches_the_allocating_code,
    super::heap_growth_on_the_system_stack_reaches_the_allocating_code
);
