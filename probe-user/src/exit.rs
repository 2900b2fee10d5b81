//! Exit statuses: each kind of refusal has its own, so scripts can tell them apart.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success (a launched command's own status is passed through instead) |
//! | 1 | any other failure |
//! | 2 | unusable profile input (analyzer commands) |
//! | 3 | `classify --fail-on` matched a finding |
//! | 10 | not permitted: needs root / CAP_BPF + CAP_PERFMON |
//! | 11 | no such process |
//! | 12 | the target is not a Go program (or not linux/amd64) |
//! | 13 | the target's Go version has no hook table |
//! | 14 | the kernel lacks a needed feature (BTF, uprobes) |
//! | 15 | the output path is refused (missing directory, symlink, not a regular file) |

use analyzer::ProfileError;

use crate::{hooks::PlanError, preflight::Refusal, target::TargetError};

pub const NOT_PERMITTED: u8 = 10;
pub const NO_SUCH_PROCESS: u8 = 11;
pub const NOT_GO: u8 = 12;
pub const UNSUPPORTED_GO: u8 = 13;
pub const KERNEL_FEATURE: u8 = 14;
pub const OUTPUT_REFUSED: u8 = 15;

/// The exit status for an error of `record` (or `watch`).
pub fn status_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return match refusal {
                Refusal::NotPermitted(_) => NOT_PERMITTED,
                Refusal::NoSuchProcess(_) => NO_SUCH_PROCESS,
                Refusal::KernelFeature { .. } => KERNEL_FEATURE,
            };
        }
        if let Some(error) = cause.downcast_ref::<TargetError>() {
            return match error {
                TargetError::NotElf | TargetError::NotGo(_) | TargetError::Architecture(_) => {
                    NOT_GO
                }
                TargetError::Proc(..) | TargetError::NoTextMapping(_) => NO_SUCH_PROCESS,
                _ => 1,
            };
        }
        if let Some(PlanError::UnsupportedVersion { .. }) = cause.downcast_ref::<PlanError>() {
            return UNSUPPORTED_GO;
        }
        if let Some(error) = cause.downcast_ref::<ProfileError>() {
            return match error {
                ProfileError::OutputDirMissing(_)
                | ProfileError::OutputIsSymlink(_)
                | ProfileError::OutputNotRegularFile(_) => OUTPUT_REFUSED,
                _ => 1,
            };
        }
    }
    1
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
