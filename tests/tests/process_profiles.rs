//! Go's own profiles read from a live process's memory (`capture::process_profiles`), with no
//! probes and no endpoint, against what the same process serves on `/debug/pprof` (fixture
//! pprofsvc `grow`: goroutines that each hold a heap buffer), on every Go version, plain and PIE.
//! Stripped binaries keep no global variables to start from: they are refused, clearly.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{
    io::{BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
};

use capture::process_profiles::LiveProcess;
use common::{cum, go_tool_pprof, read_json_line};
use pprof::ResolvedProfile;
use timerscope_tests::{GoVersion, Variant, fixture_path};

/// pprofsvc serving on loopback; killed when dropped.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(go: &GoVersion, variant: Variant) -> Self {
        let binary = fixture_path("pprofsvc", go, variant).expect("fixture built");
        let mut child = Command::new(&binary)
            .args(["-lifetime", "60s", "-rate", "50", "-chunk", "65536", "grow"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let listening = read_json_line(&mut BufReader::new(child.stdout.take().unwrap()));
        let port = listening["port"].as_u64().expect("port") as u16;
        Self { child, port }
    }

    /// Go's own heap profile, from net/http/pprof.
    fn go_heap_profile(&self) -> ResolvedProfile {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET /debug/pprof/heap HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let body = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| &response[at + 4..])
            .expect("an HTTP response");
        ResolvedProfile::new(&pprof::decode(body).expect("Go's heap profile decodes"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LEAKER: &str = "main.leakyWorker";

fn heap_profile_equals_gos_own(go: &GoVersion) {
    for variant in [Variant::Normal, Variant::Pie] {
        let service = Service::start(go, variant);
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut process = LiveProcess::open(service.child.id()).unwrap();
        // Both read the state of the last completed GC; a GC between the two reads moves it, so
        // take the pair again until they agree (each read is one moment, not an average).
        let mut last = (0, 0);
        let agreed = (0..5).any(|_| {
            let theirs = cum(&service.go_heap_profile(), "inuse_space", LEAKER, None);
            let ours = process.heap_profile().expect("heap profile from memory");
            let ours = cum(&ResolvedProfile::new(&ours), "inuse_space", LEAKER, None);
            last = (ours, theirs);
            theirs > 0 && ours == theirs
        });
        assert!(
            agreed,
            "{go} {variant:?}: in-use bytes at {LEAKER}: ours {}, Go's own {}",
            last.0, last.1
        );
        // `go tool pprof` reads it, with the leaking function at the top of the in-use bytes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heap.pb.gz");
        pprof::write_atomic(&path, &process.heap_profile().unwrap()).unwrap();
        let top = go_tool_pprof(&["-top", "-sample_index=inuse_space", path.to_str().unwrap()]);
        assert!(top.contains(LEAKER), "{go} {variant:?}: {top}");
    }
    let service = Service::start(go, Variant::Stripped);
    let error = LiveProcess::open(service.child.id())
        .and_then(|mut p| p.heap_profile())
        .expect_err("a stripped binary has no runtime.mbuckets symbol");
    let message = format!("{error:#}");
    assert!(message.contains("stripped"), "{go}: {message}");
}
per_go_version!(
    heap_profile_equals_gos_own,
    super::heap_profile_equals_gos_own
);
