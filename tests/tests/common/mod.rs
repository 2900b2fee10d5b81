//! Helpers shared by the integration tests: running fixtures, running `timerscope`, and reading
//! values out of profiles the way `go tool pprof` does.
#![allow(dead_code)] // each test binary uses a different subset

pub mod bpf;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio},
};

use pprof::{ResolvedProfile, ResolvedSample};
use serde_json::Value;
use timerscope_tests::{GoVersion, Variant, fixture_path, workspace_root};

/// A fixture process started with `-wait-stdin`: it has printed its ready line and waits for
/// [`Fixture::start_scenario`].
pub struct Fixture {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Fixture {
    pub fn spawn(name: &str, go: &GoVersion, variant: Variant, args: &[&str]) -> Self {
        let binary = fixture_path(name, go, variant).expect("fixture built");
        let mut command = Command::new(&binary);
        command.args(args).arg("-wait-stdin");
        Self::from_command(command)
    }

    /// A fixture started by `command` (a wrapper that ends up running one with -wait-stdin).
    pub fn from_command(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = read_json_line(&mut stdout);
        assert_eq!(ready["event"], "ready", "fixture said {ready}");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the scenario run.
    pub fn start_scenario(&mut self) {
        let mut stdin = self.stdin.take().expect("started once");
        stdin.write_all(b"go\n").unwrap();
    }

    /// Lets the scenario run with stdin kept open for [`Fixture::request`].
    pub fn start_scenario_with_requests(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin is kept");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends one request line and returns the fixture's next JSON line.
    pub fn request(&mut self, line: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("started with requests");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        read_json_line(&mut self.stdout)
    }

    /// The scenario's summary line.
    pub fn summary(&mut self) -> Value {
        let summary = read_json_line(&mut self.stdout);
        assert_eq!(summary["event"], "summary", "fixture said {summary}");
        summary
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_json_line(reader: &mut impl BufRead) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

/// The `timerscope` binary (`cargo xtask test` builds it before the tests).
pub fn timerscope() -> PathBuf {
    let binary = workspace_root().join("target/debug/timerscope");
    assert!(
        binary.exists(),
        "{} missing: run `cargo build -p timerscope` (cargo xtask test does)",
        binary.display()
    );
    binary
}

/// Runs `timerscope ARGS` to completion.
pub fn run_timerscope(args: &[&str]) -> Output {
    Command::new(timerscope())
        .args(args)
        .output()
        .expect("timerscope runs")
}

/// Records a fixture run from its first instruction: `timerscope record -o OUT -- FIXTURE ARGS`.
/// Returns the fixture's summary, the profile's path and the profile.
pub fn record_launch(
    dir: &Path,
    name: &str,
    go: &GoVersion,
    variant: Variant,
    args: &[&str],
) -> (Value, PathBuf, ResolvedProfile) {
    let binary = fixture_path(name, go, variant).expect("fixture built");
    let output = dir.join(format!("{name}-{}-{variant}.pb.gz", go.version));
    let mut command = vec![
        "record",
        "-o",
        output.to_str().unwrap(),
        "--",
        binary.to_str().unwrap(),
    ];
    command.extend_from_slice(args);
    let result = run_timerscope(&command);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "timerscope record failed: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no fixture summary in {stdout}"));
    assert!(
        stdout.lines().any(|l| l == output.to_str().unwrap()),
        "the output path is printed: {stdout}"
    );
    let profile = read_profile(&output);
    (summary, output, profile)
}

pub fn read_profile(path: &Path) -> ResolvedProfile {
    let profile = pprof::read_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ResolvedProfile::new(&profile)
}

/// Cumulative value of `sample_type` over samples whose stack contains `function` (as
/// `go tool pprof -top`'s cum column), optionally only samples with label `kind` = `kind`.
pub fn cum(
    profile: &ResolvedProfile,
    sample_type: &str,
    function: &str,
    kind: Option<&str>,
) -> i64 {
    sum_over(profile, sample_type, |s| {
        kind.is_none_or(|k| s.str_label("kind") == Some(k))
            && profile.stack(s).any(|f| f.function == function)
    })
}

/// The raw syscall wrapper the fixtures map through. The runtime's own mappings never go through
/// it, not even the heap growth `syscall.Mmap` itself can cause: a stack through it and a user
/// function is that function's own mapping.
pub const SYSCALL_MMAP: &str = "syscall.mmap";

/// Like [`cum`], over samples whose stack contains every one of `functions` (e.g. a user
/// function and the syscall wrapper it calls, leaving out runtime work that happens to run under
/// the same user function, such as heap growth).
pub fn cum_through(profile: &ResolvedProfile, sample_type: &str, functions: &[&str]) -> i64 {
    sum_over(profile, sample_type, |s| {
        functions
            .iter()
            .all(|function| profile.stack(s).any(|f| f.function == *function))
    })
}

/// The sum of `sample_type` over the samples `keep` accepts.
fn sum_over(
    profile: &ResolvedProfile,
    sample_type: &str,
    keep: impl Fn(&ResolvedSample) -> bool,
) -> i64 {
    let index = profile
        .sample_index(Some(sample_type))
        .expect("sample type exists");
    profile
        .samples
        .iter()
        .filter(|s| keep(s))
        .map(|s| s.values[index])
        .sum()
}

/// The `N` in a JSON summary field.
pub fn count(summary: &Value, key: &str) -> i64 {
    summary[key]
        .as_i64()
        .unwrap_or_else(|| panic!("summary has no {key}: {summary}"))
}

/// Output of `go tool pprof ARGS` from the reference Go toolchain.
pub fn go_tool_pprof(args: &[&str]) -> String {
    let go = timerscope_tests::go_binary(timerscope_tests::reference_go());
    let output = Command::new(&go)
        .args(["tool", "pprof"])
        .args(args)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", go.display()));
    assert!(
        output.status.success(),
        "go tool pprof {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One `#[test]` per Go version, each calling `$body(&GoVersion)`: every toolchain the fixtures
/// are built with, or the versions listed as `[test_name => "1.X", ...]`.
#[macro_export]
macro_rules! per_go_version {
    ($name:ident, $body:path) => {
        per_go_version!($name, $body, [
            go1_19 => "1.19", go1_21 => "1.21", go1_22 => "1.22", go1_23 => "1.23",
            go1_24 => "1.24", go1_25 => "1.25", go1_26 => "1.26", go1_27 => "1.27"
        ]);
    };
    ($name:ident, $body:path, [$($test:ident => $version:literal),+ $(,)?]) => {
        mod $name {
            $(
                #[test]
                fn $test() {
                    $body(timerscope_tests::go_version($version).expect("known Go version"))
                }
            )+
        }
    };
}

/// The counters of the profile's `NAME: key=N key=N ...` comment (e.g. `drops`: losses per
/// reason); panics when the profile has none.
pub fn profile_counters(
    profile: &ResolvedProfile,
    name: &str,
) -> std::collections::BTreeMap<String, u64> {
    let prefix = format!("{name}:");
    let comment = profile
        .comments
        .iter()
        .find_map(|c| c.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} comment in {:?}", profile.comments));
    comment
        .split_whitespace()
        .map(|pair| {
            let (key, n) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("bad {name} comment: {comment}"));
            (key.to_owned(), n.parse().expect("counter"))
        })
        .collect()
}

/// N of timerscope's `warning: N events or stacks were lost (...)` line, None without one.
pub fn reported_losses(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let rest = line.split_once("warning: ")?.1;
        let (n, tail) = rest.split_once(' ')?;
        tail.starts_with("events or stacks were lost")
            .then(|| n.parse().expect("loss count"))
    })
}

/// Runs `command` to completion capturing stdout and stderr; kills it and panics when it takes
/// longer than `timeout` (a hung target or recorder fails the test instead of hanging it).
pub fn output_within(command: &mut Command, timeout: std::time::Duration) -> Output {
    use std::io::Read as _;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {timeout:?}: killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The function (`main.NAME`) and line of the `// SITE marker` (or `// SITE: marker`) comment in fixture `fixture`'s
/// main.go: tests name the sites they expect by marker, never by line number.
pub fn fixture_site(fixture: &str, marker: &str) -> (String, i64) {
    let path = timerscope_tests::fixture_sources_root()
        .join(fixture)
        .join("main.go");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<&str> = source.lines().collect();
    // The timers fixture writes `// SITE: marker`, the others `// SITE marker`.
    let tag = format!("// SITE {marker}");
    let colon_tag = format!("// SITE: {marker}");
    let index = lines
        .iter()
        .position(|l| l.trim_end().ends_with(&tag) || l.trim_end().ends_with(&colon_tag))
        .unwrap_or_else(|| panic!("no {tag} in {}", path.display()));
    let function = lines[..=index]
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("func ")?.split('(').next())
        .unwrap_or_else(|| panic!("{tag} in {} is outside a function", path.display()));
    (format!("main.{function}"), index as i64 + 1)
}

/// `timerscope record --pid PID -o OUTPUT ARGS`, returned once its probes are attached (it has
/// printed its "recording pid" line).
pub struct PidRecording {
    pub child: Child,
}

/// `timerscope record --pid PID -o OUTPUT ARGS`, returned once it says it is recording, with the
/// rest of its stderr to read.
pub fn start_recording(
    pid: u32,
    output: &Path,
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(timerscope())
        .args(["record", "--pid", &pid.to_string(), "-o"])
        .arg(output)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timerscope runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("recording pid"), "timerscope said: {line}");
    (child, stderr)
}

impl PidRecording {
    pub fn start(pid: u32, output: &Path, args: &[&str]) -> Self {
        let (child, mut stderr) = start_recording(pid, output, args);
        // Keep draining stderr so timerscope never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self { child }
    }

    /// Sends `signal` (as Ctrl-C or a service manager would) and waits for the exit.
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        self.child.wait().unwrap()
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}
