//! Shared helpers for the analyzer's integration tests: realistic timerscope profiles built with
//! the builder, schema validation, and the cached Go toolchains.
#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

use pprof::Profile;
use pprof::{Frame, MappingSpec, ProfileBuilder, SampleLabel};

pub const TIMER_SAMPLE_TYPES: [(&str, &str); 6] = [
    ("timers_created", "count"),
    ("timers_reset", "count"),
    ("timers_stopped", "count"),
    ("timers_fired", "count"),
    ("timers_live", "count"),
    ("timer_fire_delay", "nanoseconds"),
];

pub const MMAP_SAMPLE_TYPES: [(&str, &str); 4] = [
    ("mmap_calls", "count"),
    ("mmap_bytes", "bytes"),
    ("munmap_bytes", "bytes"),
    ("mmap_live_bytes", "bytes"),
];

pub const BUILD_ID: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567";
pub const SECOND: i64 = 1_000_000_000;
pub const T0: i64 = 1_750_000_000 * SECOND;

/// The Go runtime the profile says it came from, as the recorder writes it in comments.
#[derive(Debug, Clone, Copy)]
pub struct GoRuntime {
    pub version: &'static str,
    pub family: &'static str,
    pub channel_mode: Option<&'static str>,
}

impl GoRuntime {
    /// Whether unreferenced unstopped channel timers and tickers stay alive (docs/go-runtime.md,
    /// "Channel mode").
    pub fn retains_channel_timers(self) -> bool {
        self.family == "A" || self.channel_mode == Some("async")
    }
}

/// The runtimes the issue asks for: 1.19, 1.22, 1.23 (both timer channel modes) and 1.27.
pub const RUNTIMES: [GoRuntime; 5] = [
    GoRuntime {
        version: "go1.19.8",
        family: "A",
        channel_mode: None,
    },
    GoRuntime {
        version: "go1.22.10",
        family: "A",
        channel_mode: None,
    },
    GoRuntime {
        version: "go1.23.9",
        family: "B",
        channel_mode: Some("sync"),
    },
    GoRuntime {
        version: "go1.23.9",
        family: "B",
        channel_mode: Some("async"),
    },
    GoRuntime {
        version: "go1.27.3",
        family: "B",
        channel_mode: Some("sync"),
    },
];

pub fn frame(function: &str, file: &str, line: i64) -> Frame {
    Frame {
        function: function.to_owned(),
        system_name: function.to_owned(),
        file: file.to_owned(),
        line,
        start_line: 0,
    }
}

/// The runtime frames above the time-package entry point, as the recorder's hooks see them.
pub fn timer_hook_frames(runtime: GoRuntime) -> Vec<Frame> {
    if runtime.family == "A" {
        vec![
            frame("runtime.addtimer", "/usr/local/go/src/runtime/time.go", 256),
            frame("time.startTimer", "/usr/local/go/src/runtime/time.go", 214),
        ]
    } else {
        vec![frame(
            "time.newTimer",
            "/usr/local/go/src/runtime/time.go",
            313,
        )]
    }
}

/// One stack of timer activity with its per-sample counters.
#[derive(Debug, Clone)]
pub struct TimerSite {
    pub kind: &'static str,
    /// Time/context frames between the hook and the user code, leaf first.
    pub api: Vec<Frame>,
    /// User frames, leaf (the site) first.
    pub user: Vec<Frame>,
    pub callback: Option<&'static str>,
    pub created: i64,
    pub stopped: i64,
    pub fired: i64,
    pub live: i64,
    pub delay_ns: i64,
}

impl TimerSite {
    pub fn new(kind: &'static str, api: Vec<Frame>, user: Vec<Frame>) -> Self {
        Self {
            kind,
            api,
            user,
            callback: None,
            created: 0,
            stopped: 0,
            fired: 0,
            live: 0,
            delay_ns: 0,
        }
    }

    pub fn counts(mut self, created: i64, stopped: i64, fired: i64) -> Self {
        self.created = created;
        self.stopped = stopped;
        self.fired = fired;
        self.live = created - stopped - fired;
        self
    }

    pub fn delay(mut self, total_ns: i64) -> Self {
        self.delay_ns = total_ns;
        self
    }

    pub fn scaled(&self, factor: i64) -> Self {
        let mut s = self.clone();
        s.created *= factor;
        s.stopped *= factor;
        s.fired *= factor;
        s.live *= factor;
        s.delay_ns *= factor;
        s
    }
}

fn main_mapping(b: &mut ProfileBuilder) -> u64 {
    b.add_mapping(MappingSpec {
        start: 0x400000,
        limit: 0x900000,
        offset: 0,
        file: "/srv/app".to_owned(),
        build_id: BUILD_ID.to_owned(),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    })
}

/// Adds one location per frame, addresses derived from the frame so that equal frames share one.
fn locations(b: &mut ProfileBuilder, mapping: u64, frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| {
            let hash = f
                .function
                .bytes()
                .chain(f.line.to_le_bytes())
                .fold(0u64, |h, c| h.wrapping_mul(31).wrapping_add(u64::from(c)));
            b.location(mapping, 0x400000 + hash % 0x4f0000, std::slice::from_ref(f))
        })
        .collect()
}

pub fn runtime_main_frames() -> Vec<Frame> {
    vec![
        frame("main.main", "/src/app/main.go", 90),
        frame("runtime.main", "/usr/local/go/src/runtime/proc.go", 283),
    ]
}

/// A timerscope timer profile at `time_nanos`.
pub fn timer_profile(runtime: GoRuntime, time_nanos: i64, sites: &[TimerSite]) -> Profile {
    let mut b = ProfileBuilder::new(&TIMER_SAMPLE_TYPES, "timers_live");
    b.period_type("timers", "count", 1)
        .time_nanos(time_nanos)
        .duration_nanos(10 * SECOND)
        .comment(format!("go_version={}", runtime.version))
        .comment(format!("timer_family={}", runtime.family));
    if let Some(mode) = runtime.channel_mode {
        b.comment(format!("timer_channel_mode={mode}"));
    }
    let mapping = main_mapping(&mut b);
    for site in sites {
        let mut frames = timer_hook_frames(runtime);
        frames.extend(site.api.iter().cloned());
        frames.extend(site.user.iter().cloned());
        frames.extend(runtime_main_frames());
        let locs = locations(&mut b, mapping, &frames);
        let mut labels = vec![SampleLabel::Str {
            key: "kind".into(),
            value: site.kind.into(),
        }];
        if let Some(cb) = site.callback {
            labels.push(SampleLabel::Str {
                key: "callback".into(),
                value: cb.into(),
            });
        }
        b.add_sample(
            &locs,
            &[
                site.created,
                0,
                site.stopped,
                site.fired,
                site.live,
                site.delay_ns,
            ],
            &labels,
        );
    }
    b.build().expect("fixture profile is valid")
}

/// One stack of mmap activity.
#[derive(Debug, Clone)]
pub struct MmapSite {
    pub user: Vec<Frame>,
    pub mapping_label: &'static str,
    pub mapped: i64,
    pub unmapped: i64,
}

pub fn mmap_profile(runtime: GoRuntime, time_nanos: i64, sites: &[MmapSite]) -> Profile {
    build_mmap_profile(runtime, time_nanos, SECOND, None, sites)
}

/// A profile of one `timerscope record` run of `duration_nanos`, as the recorder writes them:
/// `sites` hold what was mapped during the recording, and the `pre_existing` bytes mapped before
/// it sit under one `[pre-existing]` frame.
pub fn windowed_mmap_profile(
    runtime: GoRuntime,
    time_nanos: i64,
    duration_nanos: i64,
    pre_existing: i64,
    sites: &[MmapSite],
) -> Profile {
    build_mmap_profile(
        runtime,
        time_nanos,
        duration_nanos,
        Some(pre_existing),
        sites,
    )
}

fn build_mmap_profile(
    runtime: GoRuntime,
    time_nanos: i64,
    duration_nanos: i64,
    pre_existing: Option<i64>,
    sites: &[MmapSite],
) -> Profile {
    let mut b = ProfileBuilder::new(&MMAP_SAMPLE_TYPES, "mmap_live_bytes");
    b.time_nanos(time_nanos)
        .duration_nanos(duration_nanos)
        .comment(format!("go_version={}", runtime.version));
    let mapping = main_mapping(&mut b);
    if let Some(bytes) = pre_existing {
        let location = b.location(
            0,
            0,
            &[frame(
                pprof::vocabulary::SyntheticFrame::PreExisting.as_str(),
                "",
                0,
            )],
        );
        b.add_sample(
            &[location],
            &[0, 0, 0, bytes],
            &[SampleLabel::Str {
                key: "mapping".into(),
                value: "anon".into(),
            }],
        );
    }
    for site in sites {
        let mut frames = vec![
            frame("runtime.mmap", "/usr/local/go/src/runtime/mem_linux.go", 30),
            frame(
                "runtime.sysMapOS",
                "/usr/local/go/src/runtime/mem_linux.go",
                185,
            ),
            frame(
                "runtime.(*mheap).grow",
                "/usr/local/go/src/runtime/mheap.go",
                1491,
            ),
            frame(
                "runtime.mallocgc",
                "/usr/local/go/src/runtime/malloc.go",
                1024,
            ),
            frame(
                "runtime.makeslice",
                "/usr/local/go/src/runtime/slice.go",
                116,
            ),
        ];
        frames.extend(site.user.iter().cloned());
        frames.extend(runtime_main_frames());
        let locs = locations(&mut b, mapping, &frames);
        b.add_sample(
            &locs,
            &[
                site.mapped / (1 << 20),
                site.mapped,
                site.unmapped,
                site.mapped - site.unmapped,
            ],
            &[SampleLabel::Str {
                key: "mapping".into(),
                value: site.mapping_label.into(),
            }],
        );
    }
    b.build().expect("fixture profile is valid")
}

/// Validates `classify --json` output against analyzer/schema/findings.schema.json.
pub fn assert_matches_schema(json: &str) {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/schema/findings.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let instance: serde_json::Value = serde_json::from_str(json).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "schema violations: {errors:?}\n{json}");
}

/// `$TIMERSCOPE_CACHE` (default `$HOME/.cache/timerscope`).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TIMERSCOPE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/timerscope")
        }
    }
}

/// The `go` binary of a cached toolchain (`1.25.5`), or Debian's for 1.19. Panics with a clear
/// message when it is missing: these tests must not pass silently without Go.
pub fn go_binary(version: &str) -> PathBuf {
    let path = if version.starts_with("1.19") {
        PathBuf::from("/usr/lib/go-1.19/bin/go")
    } else {
        cache_dir().join("go").join(version).join("go/bin/go")
    };
    assert!(
        path.is_file(),
        "Go {version} toolchain not found at {}: install it (xtask setup) or set TIMERSCOPE_CACHE",
        path.display()
    );
    path
}

/// A `go` command with a hermetic environment: local toolchain only, caches under the cache dir.
pub fn go_command(version: &str) -> Command {
    let go = go_binary(version);
    let mut cmd = Command::new(&go);
    let cache = cache_dir();
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "on")
        .env("GOPROXY", "off")
        .env("GOCACHE", cache.join("gocache").join(version))
        .env("GOPATH", cache.join("gopath"))
        .env("CGO_ENABLED", "0")
        .env_remove("GOROOT");
    cmd
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
