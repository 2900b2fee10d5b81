//! Services inspected without an endpoint: `pid = N` and `exe = "/path"` targets, whose heap and
//! goroutine profiles are read from the process's memory. This crate does not read memory
//! itself: the caller passes a [`ProcessProfiles`] (the `timerscope` binary's reads Go's runtime
//! state), and this module finds the process an `exe` target means.

use std::path::{Path, PathBuf};

use pprof::Profile;

use crate::targets::{ProfileKind, Target};

/// A source of the profiles a Go process's memory gives, in the format of Go's own
/// `/debug/pprof/heap` and `/debug/pprof/goroutine`.
pub trait ProcessProfiles: Sync {
    /// One profile of process `pid`; `kind` is heap or goroutine.
    fn read(&self, pid: u32, kind: ProfileKind) -> Result<Profile, BoxError>;
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Pids listed when an `exe` matches several processes.
const PIDS_LISTED: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("no process {0} (it exited, or never ran)")]
    NoProcess(u32),
    #[error("no running process runs {0}")]
    NoProcessRuns(PathBuf),
    #[error(
        "{} processes run {}: pids {}; give one as `pid = N`, or a service per process",
        .pids.len(),
        .path.display(),
        list(.pids)
    )]
    Several { path: PathBuf, pids: Vec<u32> },
    #[error("cannot list the processes in /proc")]
    Proc(#[source] std::io::Error),
    /// The reader's own error, which names the process and the profile.
    #[error(transparent)]
    Read(BoxError),
    #[error("{0} has no net/http/pprof to pull from: inspect it by url")]
    NoReader(String),
}

impl LocalError {
    /// Whether the process is not there (the service is unreachable) rather than unreadable.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            LocalError::NoProcess(_) | LocalError::NoProcessRuns(_) | LocalError::Several { .. }
        )
    }
}

fn list(pids: &[u32]) -> String {
    let mut text: Vec<String> = pids
        .iter()
        .take(PIDS_LISTED)
        .map(ToString::to_string)
        .collect();
    if pids.len() > PIDS_LISTED {
        text.push("...".to_owned());
    }
    text.join(", ")
}

/// The process a local target means now: its pid, if it runs, or the one process whose
/// executable is the target's (as `/proc/PID/exe` links it, also when the file was replaced
/// since it started). Several matches are refused: one store per service cannot hold the
/// histories of several processes.
pub fn resolve(target: &Target) -> Result<u32, LocalError> {
    match target {
        Target::Pid(pid) => {
            if Path::new(&format!("/proc/{pid}")).exists() {
                Ok(*pid)
            } else {
                Err(LocalError::NoProcess(*pid))
            }
        }
        Target::Exe(path) => {
            let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let mut pids = Vec::new();
            for entry in std::fs::read_dir("/proc").map_err(LocalError::Proc)? {
                let Ok(entry) = entry else { continue };
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                // Kernel threads and processes of others we may not look at have no readable
                // link: they are not the service.
                let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
                    continue;
                };
                if runs(&exe, &wanted) {
                    pids.push(pid);
                }
            }
            pids.sort_unstable();
            match pids.as_slice() {
                [] => Err(LocalError::NoProcessRuns(path.clone())),
                [pid] => Ok(*pid),
                _ => Err(LocalError::Several {
                    path: path.clone(),
                    pids,
                }),
            }
        }
        Target::Url(url) => Err(LocalError::NoReader(crate::client::redact(url))),
    }
}

/// Whether `/proc/PID/exe` linking to `exe` is the executable `wanted`: the kernel appends
/// ` (deleted)` when the file was replaced after the process started it.
fn runs(exe: &Path, wanted: &Path) -> bool {
    exe == wanted
        || exe
            .to_str()
            .and_then(|e| e.strip_suffix(" (deleted)"))
            .is_some_and(|e| Path::new(e) == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exe_resolves_to_the_one_process_running_it() {
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(
            resolve(&Target::Exe(me.clone())).unwrap(),
            std::process::id()
        );
        assert!(runs(Path::new(&format!("{} (deleted)", me.display())), &me));
        let absent = PathBuf::from("/nonexistent/timerscope-test-binary");
        assert!(matches!(
            resolve(&Target::Exe(absent)),
            Err(LocalError::NoProcessRuns(_))
        ));
        assert!(matches!(
            resolve(&Target::Pid(u32::MAX)),
            Err(LocalError::NoProcess(_))
        ));
        let several = LocalError::Several {
            path: "/usr/bin/svc".into(),
            pids: (1..=10).collect(),
        };
        assert_eq!(
            several.to_string(),
            "10 processes run /usr/bin/svc: pids 1, 2, 3, 4, 5, 6, 7, 8, ...; give one as `pid = N`, or a service per process"
        );
    }
}
