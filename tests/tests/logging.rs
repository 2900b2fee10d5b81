//! What reaches the user on stderr: debug lines from every stage with `RUST_LOG=debug` (none by
//! default), a warning for a binary whose pclntab is damaged; and that the target's binary is
//! read once (opened at most twice in all, counting the kernel's uprobe attach path).
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command};

use common::{Fixture, timerscope};
use gobinary::GoBinary;
use timerscope_tests::{Variant, fixture_path, reference_go};

/// `timerscope record -o OUT -- BINARY healthy -n 5` with `env`; its stderr.
fn record_launched(binary: &Path, out: &Path, env: &[(&str, &str)]) -> String {
    let output = Command::new(timerscope())
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .args(["record", "-o", out.to_str().unwrap(), "--"])
        .arg(binary)
        .args(["healthy", "-n", "5"])
        .output()
        .expect("timerscope runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "record failed: {stderr}");
    assert!(out.exists(), "profile written");
    stderr
}

#[test]
fn rust_log_debug_shows_every_stage_and_the_default_shows_none() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fixture_path("timers", reference_go(), Variant::Normal).unwrap();
    let stderr = record_launched(
        &binary,
        &dir.path().join("d.pb.gz"),
        &[("RUST_LOG", "debug")],
    );
    for stage in [
        "binary:",
        "plan:",
        "attach:",
        "collect:",
        "symbolize:",
        "encode:",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(" DEBUG ") && l.contains(stage)),
            "no debug line from {stage} in:\n{stderr}"
        );
    }
    let quiet = record_launched(&binary, &dir.path().join("q.pb.gz"), &[]);
    assert!(!quiet.contains(" DEBUG "), "{quiet}");
}

#[test]
fn a_damaged_pclntab_is_warned_about_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture_path("timers", reference_go(), Variant::Normal).unwrap();
    let section = GoBinary::open(&original)
        .unwrap()
        .elf
        .pclntab_section
        .expect("a .gopclntab section");
    let mut bytes = fs::read(&original).unwrap();
    // Its section header says the table is 8 bytes long: the runtime finds its table through
    // moduledata and runs as ever, but the table cannot be read from the file. .symtab and
    // DWARF still name everything.
    let header = section_header(&bytes, section);
    bytes[header + 32..header + 40].copy_from_slice(&8u64.to_le_bytes());
    let damaged = dir.path().join("damaged");
    fs::write(&damaged, bytes).unwrap();
    fs::set_permissions(&damaged, fs::Permissions::from_mode(0o755)).unwrap();

    let stderr = record_launched(&damaged, &dir.path().join("p.pb.gz"), &[]);
    let warning = stderr
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("malformed .gopclntab"))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    assert!(warning.contains("fall back"), "{warning}");
    let profile = common::read_profile(&dir.path().join("p.pb.gz"));
    assert_eq!(profile.comment_value("symbols"), Some("dwarf"));
}

/// The file offset of the ELF64 section header of `section` (empty sections can share its
/// address and offset).
fn section_header(elf: &[u8], section: gobinary::elf::Section) -> usize {
    let word = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let half = |at: usize| usize::from(u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()));
    let (table, size, count) = (word(0x28) as usize, half(0x3a), half(0x3c));
    (0..count)
        .map(|i| table + i * size)
        .find(|&h| {
            (word(h + 16), word(h + 24), word(h + 32))
                == (section.address, section.offset, section.size)
        })
        .expect("the section's header")
}

#[test]
fn the_target_binary_is_opened_at_most_twice() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::spawn("timers", reference_go(), Variant::Normal, &["healthy"]);
    let pid = fixture.pid();
    let trace = dir.path().join("openat.trace");
    let status = Command::new("strace")
        .args(["-f", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .arg(timerscope())
        .args([
            "record",
            "--pid",
            &pid.to_string(),
            "--duration",
            "2s",
            "-o",
        ])
        .arg(dir.path().join("p.pb.gz"))
        .status()
        .expect("strace (cargo xtask setup installs it) runs");
    assert!(status.success());
    let exe = format!("/proc/{pid}/exe");
    let binary = fs::read_link(&exe).unwrap();
    let trace = fs::read_to_string(&trace).unwrap();
    let opens: Vec<&str> = trace
        .lines()
        .filter(|l| {
            l.contains(&format!("\"{exe}\"")) || l.contains(&format!("\"{}\"", binary.display()))
        })
        .collect();
    assert!(!opens.is_empty(), "the binary is read at all:\n{trace}");
    assert!(
        opens.len() <= 2,
        "opened {} times:\n{}",
        opens.len(),
        opens.join("\n")
    );
}
