//! Every exit status timerscope uses, defined here once; each kind of refusal has its own, so
//! scripts can tell them apart (README, "Exit statuses").
//!
//! The table is [`STATUSES`]; `--help` and the README show it.

use analyzer::diff::DiffError;
use analyzer::flamegraph::FlamegraphError;
use capture::{plan::PlanError, preflight::Refusal};
use gobinary::{BinaryError, UnsupportedGo, process::ProcessError};
use inspect::InspectError;
use pprof::ProfileError;

use crate::commands::classify::BaselineError;
use crate::commands::report::ReportError;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const FINDINGS: u8 = 3;
pub const NOT_PERMITTED: u8 = 10;
pub const NO_SUCH_PROCESS: u8 = 11;
pub const NOT_GO: u8 = 12;
pub const UNSUPPORTED_GO: u8 = 13;
pub const KERNEL_FEATURE: u8 = 14;
pub const OUTPUT_REFUSED: u8 = 15;

/// Every status and what it means, for `--help` (and the README's copy, which a test compares).
pub const STATUSES: [(u8, &str); 10] = [
    (
        SUCCESS,
        "success (`record -- CMD` passes the command's own status through)",
    ),
    (FAILURE, "any other failure"),
    (
        BAD_INPUT,
        "unusable input: a profile, targets file, store or round (`diff`, `classify`, \
         `flamegraph`, `inspect`)",
    ),
    (
        FINDINGS,
        "`--fail-on` matched a finding (`classify`, `inspect`)",
    ),
    (
        NOT_PERMITTED,
        "not permitted: needs root (uid 0 with CAP_SYS_ADMIN and CAP_SYS_PTRACE)",
    ),
    (NO_SUCH_PROCESS, "no such process"),
    (NOT_GO, "the target is not a Go program for linux/amd64"),
    (UNSUPPORTED_GO, "the target's Go version has no table"),
    (
        KERNEL_FEATURE,
        "the kernel lacks a needed feature (BTF, uprobes)",
    ),
    (
        OUTPUT_REFUSED,
        "the output path is refused (missing directory, symlink, not a regular file)",
    ),
];

/// The `Exit statuses:` section of `--help`.
pub fn help() -> String {
    let mut text = String::from("Exit statuses:");
    for (status, meaning) in STATUSES {
        text.push_str(&format!("\n  {status:>2}  {meaning}"));
    }
    text
}

/// 3 when `--fail-on` matched, else 0.
pub fn findings_status(failed: bool) -> u8 {
    if failed { FINDINGS } else { SUCCESS }
}

/// The exit status for an error of a capture command (`record`, `watch`, `top`).
pub fn capture_status(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return match refusal {
                Refusal::NotPermitted(_) => NOT_PERMITTED,
                Refusal::NoSuchProcess(_) => NO_SUCH_PROCESS,
                Refusal::KernelFeature { .. } => KERNEL_FEATURE,
            };
        }
        if let Some(error) = cause.downcast_ref::<BinaryError>() {
            return match error {
                BinaryError::NotElf | BinaryError::NotGo(_) | BinaryError::Architecture(_) => {
                    NOT_GO
                }
                _ => FAILURE,
            };
        }
        if cause.is::<ProcessError>() {
            return NO_SUCH_PROCESS;
        }
        if cause.is::<UnsupportedGo>() {
            return UNSUPPORTED_GO;
        }
        if let Some(PlanError::Unsupported(_)) = cause.downcast_ref::<PlanError>() {
            return UNSUPPORTED_GO;
        }
        if let Some(error) = cause.downcast_ref::<ProfileError>() {
            return match error {
                ProfileError::OutputDirMissing(_)
                | ProfileError::OutputIsSymlink(_)
                | ProfileError::OutputNotRegularFile(_) => OUTPUT_REFUSED,
                _ => FAILURE,
            };
        }
    }
    FAILURE
}

/// The exit status for an error of an analysis command (`diff`, `classify`, `flamegraph`,
/// `inspect`): 2 for unusable input, 1 otherwise; never 3, which means "findings".
pub fn analysis_status(error: &anyhow::Error) -> u8 {
    let bad_input = error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<ProfileError>() {
            return !matches!(e, ProfileError::Write { .. });
        }
        if let Some(e) = cause.downcast_ref::<InspectError>() {
            return e.is_bad_input();
        }
        if let Some(e) = cause.downcast_ref::<FlamegraphError>() {
            return !matches!(e, FlamegraphError::Render(_));
        }
        cause.is::<DiffError>() || cause.is::<BaselineError>() || cause.is::<ReportError>()
    });
    if bad_input { BAD_INPUT } else { FAILURE }
}

/// The error as one line: verifier logs and other multi-line causes are cut to their first
/// line (set `TIMERSCOPE_VERBOSE=1` for all of it).
pub fn one_line(error: &anyhow::Error) -> String {
    let full = format!("{error:#}");
    if std::env::var_os("TIMERSCOPE_VERBOSE").is_some() {
        return full;
    }
    match full.split_once('\n') {
        Some((first, _)) => format!("{first} (set TIMERSCOPE_VERBOSE=1 for details)"),
        None => full,
    }
}

/// A launched command's exit status, passed through (signals as 128 + signal, like a shell).
pub fn of_command(status: Option<std::process::ExitStatus>) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(signal)) => 128 + signal as u8,
            _ => FAILURE,
        },
        None => SUCCESS,
    }
}
