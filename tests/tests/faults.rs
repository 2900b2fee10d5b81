//! Faults of the host, each refused with one line naming the cause and the fix, its own exit
//! status (timerscope/src/exit.rs), and nothing left in the target: BPF maps the kernel will not
//! create, too few open files, tracefs not mounted (and not mountable), BTF missing. Mount
//! faults are made in a private mount namespace (`unshare -m`), never on the host.
//!
//! "Nothing left" is checked where it matters, in the target: its text in memory equals the
//! binary's on disk, so no uprobe breakpoint is left in it (and while a recording runs, it does
//! not: the check can fail).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::{Fixture, PidRecording, output_within, timerscope};
use gobinary::{
    GoBinary,
    runtime::{ProcessMemory, ReadMemory as _},
};
use timerscope_tests::{Variant, fixture_path, reference_go};

const FIXTURE: &str = "forkexec";
const KERNEL_FEATURE: i32 = 14;
const RESOURCE_LIMIT: i32 = 16;

/// A Go target that idles (blocked on stdin) with goroutines and timers.
fn target() -> (Fixture, std::path::PathBuf) {
    let go = reference_go();
    let binary = fixture_path(FIXTURE, go, Variant::Normal).expect("fixture built");
    let fixture = Fixture::spawn(
        FIXTURE,
        go,
        Variant::Normal,
        &["vanish", "-n", "10", "-after", "1h"],
    );
    (fixture, binary)
}

/// Whether the target's text in memory differs from the binary's (a uprobe breakpoint is in).
fn text_patched(pid: u32, binary: &Path) -> bool {
    let go = GoBinary::open(binary).expect("fixture binary");
    let text = go.elf.text_segment().expect("text segment");
    let file = std::fs::read(binary).unwrap();
    let on_disk = &file[text.offset as usize..(text.offset + text.filesz) as usize];
    // A non-PIE fixture: runtime addresses are link addresses.
    let in_memory = ProcessMemory::new(pid)
        .bytes(text.vaddr, text.filesz, on_disk.len())
        .expect("target text readable");
    in_memory != on_disk
}

/// `timerscope record --pid PID` for a second, through `wrapper` (a command line prefix).
fn record_through(wrapper: &[&str], pid: u32, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("fault.pb.gz");
    let timerscope = timerscope();
    let mut command = Command::new(
        wrapper
            .first()
            .copied()
            .unwrap_or(timerscope.to_str().unwrap()),
    );
    if !wrapper.is_empty() {
        command.args(&wrapper[1..]).arg(&timerscope);
    }
    command
        .args([
            "record",
            "--pid",
            &pid.to_string(),
            "--duration",
            "1s",
            "-o",
        ])
        .arg(&output)
        .args(extra);
    let result = output_within(&mut command, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    (result.status.code().unwrap_or(-1), stderr)
}

/// The single `timerscope: error:` line of a refusal.
fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("timerscope: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0]
}

#[test]
fn the_breakpoint_check_sees_a_running_recording() {
    let (fixture, binary) = target();
    let dir = tempfile::tempdir().unwrap();
    assert!(!text_patched(fixture.pid(), &binary), "clean before");
    let recording = PidRecording::start(fixture.pid(), &dir.path().join("r.pb.gz"), &[]);
    assert!(
        text_patched(fixture.pid(), &binary),
        "uprobe breakpoints are in the target while recording"
    );
    let status = recording.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{status}");
    assert!(!text_patched(fixture.pid(), &binary), "clean after");
}

/// Kernel maps too big for the kernel (`--max-*` huge; on this kernel map memory is charged to
/// the memory cgroup, not RLIMIT_MEMLOCK, so a tiny memlock limit changes nothing).
#[test]
fn a_map_the_kernel_refuses_names_the_map_and_the_fix() {
    let (fixture, binary) = target();
    for flag in ["--max-sites", "--max-live"] {
        let (status, stderr) = record_through(&[], fixture.pid(), &[flag, "4294967295"]);
        assert_eq!(status, RESOURCE_LIMIT, "{flag}: {stderr}");
        let line = one_error_line(&stderr);
        assert!(
            line.contains("eBPF map") && line.contains("memory") && line.contains(flag),
            "{flag}: names the map, the limit and the flag: {line}"
        );
        assert!(
            !text_patched(fixture.pid(), &binary),
            "{flag}: nothing left"
        );
    }
}

/// Every open-files limit from far too low to enough: each run either records, or is refused
/// with the open-files line and status; never a panic or another error, never a leftover.
#[test]
fn too_few_open_files_is_refused_at_any_limit() {
    let (fixture, binary) = target();
    let (mut refused_up_front, mut refused_attaching, mut recorded) = (0, 0, 0);
    for limit in [4, 12, 16, 24, 32, 48, 4096] {
        let nofile = format!("--nofile={limit}:{limit}");
        let (status, stderr) = record_through(&["prlimit", &nofile], fixture.pid(), &[]);
        if status == 0 {
            recorded += 1;
        } else {
            assert_eq!(status, RESOURCE_LIMIT, "limit {limit}: {stderr}");
            let line = one_error_line(&stderr);
            assert!(line.contains("ulimit -n"), "limit {limit}: the fix: {line}");
            if line.contains("attaching the probes") {
                refused_attaching += 1;
            } else {
                assert!(line.contains("open files limit is"), "{line}");
                refused_up_front += 1;
            }
        }
        assert!(
            !text_patched(fixture.pid(), &binary),
            "limit {limit}: nothing left"
        );
    }
    assert!(
        refused_up_front > 0 && refused_attaching > 0 && recorded > 0,
        "up front {refused_up_front}, attaching {refused_attaching}, recorded {recorded}"
    );
}

/// A private mount namespace without tracefs or debugfs, and no CAP_SYS_ADMIN to mount it (a
/// container's usual lot): refused before anything is loaded.
#[test]
fn tracefs_not_mounted_and_not_mountable_is_refused() {
    let (fixture, binary) = target();
    let script = "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; \
                  test ! -e /sys/kernel/tracing/events && exec setpriv --inh-caps=-sys_admin \
                  --bounding-set=-sys_admin \"$@\"";
    let (status, stderr) = record_through(
        &["unshare", "-m", "sh", "-c", script, "sh"],
        fixture.pid(),
        &[],
    );
    assert_eq!(status, KERNEL_FEATURE, "{stderr}");
    let line = one_error_line(&stderr);
    assert!(
        line.contains("tracefs is not mounted") && line.contains("mount -t tracefs"),
        "{line}"
    );
    assert!(!text_patched(fixture.pid(), &binary), "nothing left");
}

/// A private mount namespace whose /sys/kernel/btf is an empty tmpfs: no vmlinux BTF.
#[test]
fn btf_missing_is_refused() {
    let (fixture, binary) = target();
    let script = "mount -t tmpfs none /sys/kernel/btf && exec \"$@\"";
    let (status, stderr) = record_through(
        &["unshare", "-m", "sh", "-c", script, "sh"],
        fixture.pid(),
        &[],
    );
    assert_eq!(status, KERNEL_FEATURE, "{stderr}");
    let line = one_error_line(&stderr);
    assert!(
        line.contains("no BTF") && line.contains("CONFIG_DEBUG_INFO_BTF"),
        "{line}"
    );
    assert!(!text_patched(fixture.pid(), &binary), "nothing left");
}
