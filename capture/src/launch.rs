//! Launching a command to record from its first instruction: it is started stopped at exec
//! (ptrace), so the probes are attached before any of its code runs.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, ExitStatus},
};

use anyhow::{Context as _, bail};
use nix::{
    sys::{
        ptrace,
        signal::Signal,
        wait::{WaitStatus, waitpid},
    },
    unistd::Pid,
};

/// A command started stopped at its first instruction after exec (ptrace), so the probes are
/// attached before any of its code runs. Killed if dropped before [`Launched::resume`]: a
/// refused target must not be left stopped or run unobserved.
pub struct Launched(Option<Child>);

impl Launched {
    pub fn start(argv: &[OsString]) -> anyhow::Result<Self> {
        let (program, args) = argv
            .split_first()
            .context("record: no command given after --")?;
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: traceme is async-signal-safe (a single ptrace syscall).
        unsafe {
            command.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
        }
        let child = command
            .spawn()
            .with_context(|| format!("launch: cannot run {}", Path::new(program).display()))?;
        let launched = Self(Some(child));
        match waitpid(Pid::from_raw(launched.pid() as i32), None) {
            Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => Ok(launched),
            other => bail!(
                "launch: {} did not stop at exec ({other:?})",
                Path::new(program).display()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("not resumed yet").id()
    }

    /// Lets the command run; the handle resolves to its exit status.
    pub fn resume(mut self) -> anyhow::Result<tokio::task::JoinHandle<Option<ExitStatus>>> {
        // On failure `self` is dropped, which kills the command.
        ptrace::detach(Pid::from_raw(self.pid() as i32), None)
            .context("launch: resuming the command")?;
        let mut child = self.0.take().expect("resumed once");
        Ok(tokio::task::spawn_blocking(move || child.wait().ok()))
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
