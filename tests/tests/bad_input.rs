//! Bad input gets one clear line naming the cause and the fix, and its own exit status; nothing
//! is attached and no profile is written.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
};

use common::{Fixture, run_timerscope, timerscope};
use timerscope_tests::{Variant, fixture_path, reference_go};

/// Asserts a refusal: the exit status, one line on stderr containing `needle`, no output file.
fn assert_refused(output: &Output, status: i32, needle: &str, profile: &Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert!(!profile.exists(), "no profile is written on refusal");
}

fn record_pid(pid: u32, profile: &Path) -> Output {
    run_timerscope(&[
        "record",
        "--pid",
        &pid.to_string(),
        "-o",
        profile.to_str().unwrap(),
    ])
}

#[test]
fn no_such_process() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.pb.gz");
    // Pids above pid_max never exist.
    let output = record_pid(4_194_305, &profile);
    assert_refused(&output, 11, "no such process: pid 4194305", &profile);
}

#[test]
fn a_process_that_is_not_go() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.pb.gz");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let output = record_pid(sleeper.id(), &profile);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_refused(&output, 12, "not a Go binary", &profile);
}

#[test]
fn a_go_version_without_hook_table() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.pb.gz");
    // The same fixture, claiming to be built by a Go release timerscope has never seen.
    let go = reference_go();
    let original = fs::read(fixture_path("timers", go, Variant::Normal).unwrap()).unwrap();
    let version = go.runtime_version(); // e.g. go1.25.5
    let future = format!("go1.99.{}", &version[version.rfind('.').unwrap() + 1..]);
    assert_eq!(
        future.len(),
        version.len(),
        "same length keeps the build info intact"
    );
    let buildinfo = original
        .windows(14)
        .position(|w| w == b"\xff Go buildinf:")
        .expect("build info in the binary");
    let at = buildinfo
        + original[buildinfo..]
            .windows(version.len())
            .position(|w| w == version.as_bytes())
            .expect("version string in the build info");
    let mut patched = original.clone();
    patched[at..at + future.len()].copy_from_slice(future.as_bytes());
    let binary = dir.path().join("future-go");
    fs::write(&binary, patched).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();

    let output = Command::new(timerscope())
        .args(["record", "-o", profile.to_str().unwrap(), "--"])
        .arg(&binary)
        .args(["healthy", "-n", "1"])
        .output()
        .unwrap();
    assert_refused(&output, 13, "go1.99", &profile);
    assert!(String::from_utf8_lossy(&output.stderr).contains("no hook table"));
}

#[test]
fn output_paths_that_cannot_take_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let go = reference_go();
    let fixture = Fixture::spawn("timers", go, Variant::Normal, &["healthy"]);

    let missing_dir = dir.path().join("missing/p.pb.gz");
    assert_refused(
        &record_pid(fixture.pid(), &missing_dir),
        15,
        "does not exist",
        &missing_dir,
    );

    let link = dir.path().join("link.pb.gz");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    let output = record_pid(fixture.pid(), &link);
    assert_refused(&output, 15, "symbolic link", &dir.path().join("elsewhere"));

    let directory = dir.path().join("adir");
    fs::create_dir(&directory).unwrap();
    let output = record_pid(fixture.pid(), &directory);
    assert_eq!(
        output.status.code(),
        Some(15),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn not_root() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.pb.gz");
    let output = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(timerscope())
        .args(["record", "--pid", "1", "-o", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_refused(&output, 10, "needs root", &profile);
}

#[test]
fn a_kernel_without_btf_or_uprobes() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.pb.gz");
    // A sysfs where the kernel advertises neither feature.
    let output = Command::new(timerscope())
        .env("TIMERSCOPE_SYSFS", dir.path())
        .args(["record", "--pid", "1", "-o", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_refused(&output, 14, "this kernel has no BTF", &profile);
}
