//! Launching a command to record from its first instruction: it is started stopped at exec
//! (ptrace), so the probes are attached before any of its code runs.

use std::{
    ffi::{CString, OsString},
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
    unistd::{Gid, Pid, Uid, User, getgrouplist, setgid, setgroups, setuid},
};

/// `PATH` for a command run as another user: sudo's `secure_path` as Debian ships it.
const USER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables kept from timerscope's environment for a command run as another user (the
/// terminal and locale, as sudo's default `env_keep` does); everything else is reset.
const KEPT_VARIABLES: &[&str] = &["TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ", "DISPLAY"];

/// Who a launched command runs as: a user with their groups (`initgroups`) and the environment
/// `sudo -u USER` gives it (HOME, USER, LOGNAME, SHELL, MAIL, PATH, SUDO_*; the terminal and
/// locale kept; the rest reset).
#[derive(Debug, Clone)]
pub struct RunAs {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    env: Vec<(OsString, OsString)>,
}

impl RunAs {
    pub fn user(name: &str) -> anyhow::Result<Self> {
        let user = User::from_name(name)
            .with_context(|| format!("looking up user {name}"))?
            .with_context(|| format!("no such user: {name} (check the name with `id {name}`)"))?;
        let c_name = CString::new(name).context("a user name has no NUL byte")?;
        let groups = getgrouplist(&c_name, user.gid)
            .with_context(|| format!("looking up the groups of user {name}"))?;
        let invoker = Uid::current();
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| {
                key.to_str()
                    .is_some_and(|key| KEPT_VARIABLES.contains(&key) || key.starts_with("LC_"))
            })
            .collect();
        let invoker_name = User::from_uid(invoker)
            .ok()
            .flatten()
            .map_or_else(|| invoker.to_string(), |u| u.name);
        for (key, value) in [
            ("HOME", user.dir.clone().into_os_string()),
            ("USER", name.into()),
            ("LOGNAME", name.into()),
            ("SHELL", user.shell.clone().into_os_string()),
            ("MAIL", format!("/var/mail/{name}").into()),
            ("PATH", USER_PATH.into()),
            ("SUDO_USER", invoker_name.into()),
            ("SUDO_UID", invoker.to_string().into()),
            ("SUDO_GID", Gid::current().to_string().into()),
        ] {
            env.push((key.into(), value));
        }
        Ok(Self {
            uid: user.uid,
            gid: user.gid,
            groups,
            env,
        })
    }
}

/// A command started stopped at its first instruction after exec (ptrace), so the probes are
/// attached before any of its code runs. Killed if dropped before [`Launched::resume`]: a
/// refused target must not be left stopped or run unobserved.
pub struct Launched(Option<Child>);

impl Launched {
    /// Starts `argv`, as `run_as` when given (else as timerscope's own user).
    pub fn start(argv: &[OsString], run_as: Option<&RunAs>) -> anyhow::Result<Self> {
        let (program, args) = argv
            .split_first()
            .context("record: no command given after --")?;
        let mut command = Command::new(program);
        command.args(args);
        if let Some(run_as) = run_as {
            command.env_clear().envs(run_as.env.iter().cloned());
            let RunAs {
                uid, gid, groups, ..
            } = run_as.clone();
            // SAFETY: setgroups, setgid and setuid are single syscalls (async-signal-safe), in
            // the child between fork and exec, where it is the only thread.
            unsafe {
                command.pre_exec(move || {
                    setgroups(&groups)?;
                    setgid(gid)?;
                    setuid(uid)?;
                    Ok(())
                });
            }
        }
        // SAFETY: traceme is async-signal-safe (a single ptrace syscall). Made after the user
        // change: the tracer stays timerscope.
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
