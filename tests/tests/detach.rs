//! Clean detach: however `timerscope record` ends (its --duration, Ctrl-C, SIGTERM, or SIGKILL
//! of timerscope itself), none of its BPF programs stays loaded, no uprobe of it stays in
//! tracefs, and the target keeps running and answering.
//!
//! One test, the cases in sequence. While a recording runs, the test reads the ids of the BPF
//! programs the timerscope process holds (from its /proc/PID/fdinfo); afterwards none of those
//! ids may still be loaded. Ids, not counts, so another recording elsewhere on the machine
//! cannot make the test pass or fail.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{
    bpf::{
        OUR_PROGRAMS, eventually, is_ours, loaded_programs, our_uprobe_events, programs_held_by,
    },
    timerscope,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use timerscope_tests::{Variant, fixture_path, reference_go};

/// The soak fixture, churning timers until killed, answering pings on stdin.
struct Target {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Target {
    fn start() -> Self {
        let binary = fixture_path("soak", reference_go(), Variant::Normal).expect("fixture built");
        let mut child = Command::new(&binary)
            .args(["-duration", "1h", "-workers", "2", "-ping", "-wait-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut target = Self {
            stdin: child.stdin.take().unwrap(),
            child,
            lines,
        };
        assert_eq!(target.next_line()["event"], "ready");
        writeln!(target.stdin, "go").unwrap();
        target
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the target answers within 10 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Rounds of timer churn done so far, as the target answers a ping.
    fn ping(&mut self) -> i64 {
        writeln!(self.stdin, "ping").expect("the target reads its stdin");
        let pong = self.next_line();
        assert_eq!(pong["event"], "pong", "target said {pong}");
        pong["rounds"].as_i64().unwrap()
    }

    /// Alive, not stopped or a zombie, answering, and still churning timers.
    fn assert_running(&mut self, case: &str) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "{case}: target exited"
        );
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let state = stat.rsplit_once(") ").unwrap().1.chars().next().unwrap();
        assert!(matches!(state, 'R' | 'S'), "{case}: target state {state:?}");
        let before = self.ping();
        std::thread::sleep(Duration::from_millis(300));
        let after = self.ping();
        assert!(
            after > before,
            "{case}: the target's churn goes on ({before} -> {after} rounds)"
        );
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a case ends the recording.
#[derive(Debug, Clone, Copy)]
enum End {
    Duration,
    Signal(Signal),
}

#[test]
fn nothing_stays_attached_however_record_ends() {
    let mut target = Target::start();
    let binary = fixture_path("soak", reference_go(), Variant::Normal).unwrap();
    let dir = tempfile::tempdir().unwrap();
    target.assert_running("before recording");

    for end in [
        End::Duration,
        End::Signal(Signal::SIGINT),
        End::Signal(Signal::SIGTERM),
        End::Signal(Signal::SIGKILL),
    ] {
        let case = format!("{end:?}");
        let output = dir.path().join(format!("{case}.pb.gz"));
        let mut command = Command::new(timerscope());
        command
            .args(["record", "--pid", &target.pid().to_string(), "-o"])
            .arg(&output);
        if let End::Duration = end {
            command.args(["--duration", "3s"]);
        }
        let mut recorder = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(recorder.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(
            line.contains("recording pid"),
            "{case}: timerscope said: {line}"
        );
        let recorder_pid = recorder.id();
        // While recording, every program of ours is loaded and held by timerscope: the checks
        // below look for something that is there now.
        let held = programs_held_by(recorder_pid);
        let loaded = loaded_programs();
        let ours: BTreeSet<u32> = loaded
            .iter()
            .filter(|(id, name)| held.contains(id) && is_ours(name))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            ours.len(),
            OUR_PROGRAMS.len(),
            "{case}: while recording, timerscope holds programs {held:?} of loaded {:?}",
            loaded
                .iter()
                .map(|(id, name)| format!("{id}:{}", String::from_utf8_lossy(name)))
                .collect::<Vec<_>>()
        );

        if let End::Signal(signal) = end {
            std::thread::sleep(Duration::from_millis(500));
            kill(Pid::from_raw(recorder_pid as i32), signal).unwrap();
        }
        let status = recorder.wait().unwrap();
        match end {
            End::Signal(Signal::SIGKILL) => assert!(!status.success(), "{case}: {status}"),
            _ => {
                assert!(status.success(), "{case}: timerscope exits 0: {status}");
                assert!(output.is_file(), "{case}: profile written");
            }
        }

        let still_loaded = || -> Vec<u32> {
            loaded_programs()
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| ours.contains(id))
                .collect()
        };
        assert!(
            eventually(|| still_loaded().is_empty()),
            "{case}: programs {:?} of the ended recording are still loaded",
            still_loaded()
        );
        let events = our_uprobe_events(&binary, target.pid(), recorder_pid);
        assert!(events.is_empty(), "{case}: uprobes left: {events:?}");
        target.assert_running(&case);
    }
}
