//! `--metrics-addr`: the watched processes' totals and the agent's own state in the Prometheus
//! text format, for dashboards and alerts, and each process's latest interval profile as pprof
//! for scrapers (Grafana Alloy's `pyroscope.scrape`, Parca): `/debug/pprof/timers?pid=N`, listed
//! at `/debug/pprof/`. The watch loop renders the page; a small HTTP server hands it out.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use probe_common::event;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::Semaphore,
};

use capture::{collect::Snapshot, encode::DROP_NAMES};
use pprof::vocabulary::{CaptureTier, MemoryNumbers};

/// The latest rendered page, shared with the server.
pub type Page = Arc<Mutex<String>>;

/// The agent's own counters, shared by the watch loop, the pusher and the server.
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Processes watched now.
    pub watched: AtomicU64,
    /// Processes of `--exe` that could not be attached to.
    pub attach_failures: AtomicU64,
    /// Interval profiles written.
    pub profiles_written: AtomicU64,
    pub push: Arc<super::push::PushCounters>,
    /// Per pid: exe name and its latest interval's profile file.
    pub latest: Mutex<BTreeMap<u32, (String, PathBuf)>>,
}

/// Cumulative facts about one watched process.
pub struct ProcessMetrics<'a> {
    pub pid: u32,
    pub exe: &'a str,
    /// Everything since the process was attached.
    pub totals: &'a Snapshot,
    /// What the probes capture now.
    pub tier: CaptureTier,
    /// The probes' measured share of one CPU over the last budget window.
    pub overhead_ratio: Option<f64>,
    pub max_overhead_ratio: f64,
    /// Steps down the overhead budget took.
    pub steps: usize,
    /// The process's memory figures at the latest interval boundary.
    pub memory: &'a MemoryNumbers,
}

/// A gauge of the memory figures: name, help, the figure.
type MemoryGauge = (
    &'static str,
    &'static str,
    fn(&MemoryNumbers) -> Option<u64>,
);

/// Histogram buckets reported: fires late by at most 2^b ns, for b in this range (1 µs .. 34 s).
const DELAY_BUCKET_RANGE: std::ops::RangeInclusive<usize> = 10..=35;

/// Renders the metrics page for `processes` plus the agent's own state.
pub fn render(processes: &[ProcessMetrics<'_>], agent: &AgentCounters) -> String {
    let mut page = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for line in lines {
            let _ = writeln!(page, "{line}");
        }
    };
    let labels = |p: &ProcessMetrics<'_>| format!("pid=\"{}\",exe=\"{}\"", p.pid, escape(p.exe));

    family(
        "timerscope_live_timers",
        "gauge",
        "Timers pending in the target now (created or armed and not yet stopped or fired).",
        processes
            .iter()
            .map(|p| {
                format!(
                    "timerscope_live_timers{{{}}} {}",
                    labels(p),
                    p.totals.live.len()
                )
            })
            .collect(),
    );
    let events = [
        (event::CREATED, "created"),
        (event::RESET, "reset"),
        (event::STOPPED, "stopped"),
        (event::FIRED, "fired"),
    ];
    family(
        "timerscope_timer_events_total",
        "counter",
        "Timer events since timerscope attached, by event.",
        processes
            .iter()
            .flat_map(|p| {
                events.iter().map(move |(code, name)| {
                    let total: u64 = p
                        .totals
                        .sites
                        .iter()
                        .filter(|(k, _)| k.event == *code)
                        .map(|(_, v)| v.count)
                        .sum();
                    format!(
                        "timerscope_timer_events_total{{{},event=\"{name}\"}} {total}",
                        labels(p)
                    )
                })
            })
            .collect(),
    );
    family(
        "timerscope_timer_fire_delay_seconds",
        "histogram",
        "How late timers fired (run time minus due time): Ps too busy to run them.",
        processes
            .iter()
            .flat_map(|p| delay_histogram(&labels(p), p.totals))
            .collect(),
    );
    family(
        "timerscope_mapped_bytes",
        "gauge",
        "Bytes the target mapped (mmap) since timerscope attached and still has mapped.",
        processes
            .iter()
            .map(|p| {
                let live: u64 = p
                    .totals
                    .mappings
                    .live_bytes()
                    .iter()
                    .filter(|(origin, _)| matches!(origin, capture::mappings::Origin::Call { .. }))
                    .map(|(_, bytes)| bytes)
                    .sum();
                format!("timerscope_mapped_bytes{{{}}} {live}", labels(p))
            })
            .collect(),
    );
    let memory_gauges: [MemoryGauge; 3] = [
        (
            "timerscope_go_heap_alloc_bytes",
            "Bytes of live and not yet swept Go heap objects (runtime.MemStats.HeapAlloc, read \
             from the target's memory at the latest interval boundary; lags the per-P caches).",
            |m| m.heap_alloc,
        ),
        (
            "timerscope_go_sys_bytes",
            "Bytes the Go runtime obtained from the OS (runtime.MemStats.Sys, read from the \
             target's memory at the latest interval boundary).",
            |m| m.sys,
        ),
        (
            "timerscope_goroutines",
            "User goroutines in the target (the runtime's own left out), read from its memory at \
             the latest interval boundary.",
            |m| m.goroutines,
        ),
    ];
    for (name, help, value) in memory_gauges {
        family(
            name,
            "gauge",
            help,
            processes
                .iter()
                .filter_map(|p| Some(format!("{name}{{{}}} {}", labels(p), value(p.memory)?)))
                .collect(),
        );
    }
    family(
        "timerscope_dropped_total",
        "counter",
        "Events or stacks the probes could not record, by reason (raise the map sizes).",
        processes
            .iter()
            .flat_map(|p| {
                DROP_NAMES
                    .iter()
                    .zip(p.totals.drops)
                    // A stack cut short is recorded (truncated), not dropped: its own family.
                    .filter(|(reason, _)| **reason != STACK_TRUNCATED)
                    .map(move |(reason, n)| {
                        format!(
                            "timerscope_dropped_total{{{},reason=\"{reason}\"}} {n}",
                            labels(p)
                        )
                    })
            })
            .collect(),
    );
    family(
        "timerscope_capture_tier",
        "gauge",
        "What the probes capture now (1 for the current tier): all, create, sampled (some stack \
         walks sampled), reduced (some hooks detached by the overhead budget), none.",
        processes
            .iter()
            .map(|p| {
                format!(
                    "timerscope_capture_tier{{{},tier=\"{}\"}} 1",
                    labels(p),
                    p.tier
                )
            })
            .collect(),
    );
    family(
        "timerscope_probe_overhead_ratio",
        "gauge",
        "CPU the target spent in timerscope's probes per second, over the last second (BPF \
         run time plus hits times the measured trap cost).",
        processes
            .iter()
            .filter_map(|p| {
                let ratio = p.overhead_ratio?;
                Some(format!(
                    "timerscope_probe_overhead_ratio{{{}}} {ratio}",
                    labels(p)
                ))
            })
            .collect(),
    );
    family(
        "timerscope_probe_overhead_budget_ratio",
        "gauge",
        "--max-overhead as a share of one CPU.",
        processes
            .iter()
            .map(|p| {
                format!(
                    "timerscope_probe_overhead_budget_ratio{{{}}} {}",
                    labels(p),
                    p.max_overhead_ratio
                )
            })
            .collect(),
    );
    family(
        "timerscope_capture_steps_total",
        "counter",
        "Steps down the overhead budget took (stack walks sampled, hooks detached).",
        processes
            .iter()
            .map(|p| {
                format!(
                    "timerscope_capture_steps_total{{{}}} {}",
                    labels(p),
                    p.steps
                )
            })
            .collect(),
    );
    family(
        "timerscope_stacks_sampled_out_total",
        "counter",
        "Probe hits whose stack walk the overhead budget skipped (their events are counted).",
        processes
            .iter()
            .map(|p| {
                format!(
                    "timerscope_stacks_sampled_out_total{{{}}} {}",
                    labels(p),
                    p.totals.stacks_sampled_out.iter().sum::<u64>()
                )
            })
            .collect(),
    );
    family(
        "timerscope_stacks_truncated_total",
        "counter",
        "Stacks recorded with their outermost frames cut (an unreadable page or the depth limit).",
        processes
            .iter()
            .map(|p| {
                let n = DROP_NAMES
                    .iter()
                    .zip(p.totals.drops)
                    .find(|(reason, _)| **reason == STACK_TRUNCATED)
                    .map_or(0, |(_, n)| n);
                format!("timerscope_stacks_truncated_total{{{}}} {n}", labels(p))
            })
            .collect(),
    );
    let (cpu_seconds, resident_bytes, start_time) = agent_usage();
    let counter = |value: &AtomicU64| value.load(Ordering::Relaxed);
    let agent_families = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu_seconds.to_string(),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            resident_bytes.to_string(),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            start_time.to_string(),
        ),
        (
            "timerscope_watched_processes",
            "gauge",
            "Processes timerscope is attached to now.",
            counter(&agent.watched).to_string(),
        ),
        (
            "timerscope_attach_failures_total",
            "counter",
            "Processes of --exe timerscope could not attach to.",
            counter(&agent.attach_failures).to_string(),
        ),
        (
            "timerscope_profiles_written_total",
            "counter",
            "Interval profiles written.",
            counter(&agent.profiles_written).to_string(),
        ),
        (
            "timerscope_push_failures_total",
            "counter",
            "Push attempts that failed (no answer, server error, or rejected).",
            counter(&agent.push.failures).to_string(),
        ),
        (
            "timerscope_push_rejected_total",
            "counter",
            "Profiles the profile store refused for good (4xx), moved to spool/rejected.",
            counter(&agent.push.rejected).to_string(),
        ),
        (
            "timerscope_push_evicted_total",
            "counter",
            "Spooled profiles deleted unsent to stay within --spool-max or --max-disk.",
            counter(&agent.push.evicted).to_string(),
        ),
        (
            "timerscope_push_spooled_profiles",
            "gauge",
            "Profiles waiting in the push spool.",
            counter(&agent.push.spooled).to_string(),
        ),
    ];
    for (name, kind, help, value) in agent_families {
        family(name, kind, help, vec![format!("{name} {value}")]);
    }
    family(
        "timerscope_build_info",
        "gauge",
        "Always 1; the version and git commit of this timerscope.",
        vec![format!(
            "timerscope_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            escape(crate::cli::GIT_COMMIT)
        )],
    );
    page
}

/// The drop reason that is not a drop (see `timerscope_stacks_truncated_total`).
const STACK_TRUNCATED: &str = "stack_truncated";

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn delay_histogram(labels: &str, totals: &Snapshot) -> Vec<String> {
    let name = "timerscope_timer_fire_delay_seconds";
    let mut lines = Vec::new();
    let mut cumulative = 0;
    for (bucket, count) in totals.fire_delays.iter().enumerate() {
        cumulative += count;
        if DELAY_BUCKET_RANGE.contains(&bucket) {
            let le = (1u64 << bucket) as f64 / 1e9;
            lines.push(format!(
                "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            ));
        }
    }
    let count: u64 = totals.fire_delays.iter().sum();
    let sum_ns: u64 = totals
        .sites
        .iter()
        .filter(|(k, _)| k.event == event::FIRED)
        .map(|(_, v)| v.delay_ns)
        .sum();
    lines.push(format!("{name}_bucket{{{labels},le=\"+Inf\"}} {count}"));
    lines.push(format!("{name}_sum{{{labels}}} {}", sum_ns as f64 / 1e9));
    lines.push(format!("{name}_count{{{labels}}} {count}"));
    lines
}

/// (CPU seconds, resident bytes, start time in Unix seconds) of this process, from /proc.
fn agent_usage() -> (f64, u64, f64) {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: utime and stime are stat's 14th and 15th, starttime
    // (ticks after boot) its 22nd.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let cpu = field(11)
        .zip(field(12))
        .map_or(0.0, |(u, s)| (u + s) / ticks);
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let start = field(19).map_or(0.0, |t| boot_time + t / ticks);
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    (cpu, resident, start)
}

/// Clients served at once; more wait in the listen backlog, so a flood cannot pile up tasks or
/// file descriptors.
pub const MAX_CONNECTIONS: usize = 32;

/// Time a client has to send its request and take the answer; a slow or idle one is dropped
/// then, freeing its slot.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// Serves [`respond`]'s answers until the task is dropped.
pub async fn serve(listener: TcpListener, page: Page, agent: Arc<AgentCounters>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                eprintln!(
                    "timerscope: warning: metrics endpoint: accept failed ({error}); retrying"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let page = Arc::clone(&page);
        let agent = Arc::clone(&agent);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CLIENT_DEADLINE, async {
                // Only the request line matters: read until the request's head ends.
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let line = line.lines().next().unwrap_or_default();
                let answer = respond(line, &page, &agent);
                let head = format!(
                    "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.status,
                    answer.content_type,
                    answer.body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&answer.body).await;
                let _ = stream.shutdown().await;
            })
            .await;
        });
    }
}

/// A `--metrics-addr` value: `HOST:PORT`, or a bare port, which binds loopback only.
pub fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value
        .parse()
        .map_err(|e| format!("{e}: give HOST:PORT (e.g. 127.0.0.1:9464) or a port"))
}

/// One HTTP answer.
pub struct Answer {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The answer to a request line (`GET /path?query HTTP/1.1`):
/// - `/metrics`: the metrics page;
/// - `/debug/pprof/`: one line per watched process, the path of its profile and its exe;
/// - `/debug/pprof/timers?pid=N` (or `?exe=NAME`, the newest such process; or no query when one
///   process is watched): that process's latest interval profile, gzip pprof;
/// - anything else: 404.
pub fn respond(request_line: &str, page: &Page, agent: &AgentCounters) -> Answer {
    let text = |status, body: String| Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into_bytes(),
    };
    let not_found = |what: &str| text("404 Not Found", format!("{what}\n"));
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return text("400 Bad Request", "bad request line\n".into());
    };
    if method != "GET" && method != "HEAD" {
        return text("405 Method Not Allowed", "GET only\n".into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    let latest = agent.latest.lock().map(|l| l.clone()).unwrap_or_default();
    match path {
        "/metrics" => Answer {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: page
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default()
                .into_bytes(),
        },
        "/debug/pprof" | "/debug/pprof/" => text(
            "200 OK",
            latest
                .iter()
                .map(|(pid, (exe, _))| format!("/debug/pprof/timers?pid={pid} exe={exe}\n"))
                .collect(),
        ),
        "/debug/pprof/timers" => {
            let chosen = if let Some(pid) = param("pid") {
                pid.parse::<u32>().ok().and_then(|pid| latest.get(&pid))
            } else if let Some(exe) = param("exe") {
                latest.values().rev().find(|(name, _)| name == exe)
            } else if latest.len() == 1 {
                latest.values().next()
            } else {
                return not_found("several processes: choose one with ?pid=N or ?exe=NAME");
            };
            let Some((_, path)) = chosen else {
                return not_found("no interval profile for that process yet (see /debug/pprof/)");
            };
            match std::fs::read(path) {
                Ok(body) => Answer {
                    status: "200 OK",
                    content_type: "application/octet-stream",
                    body,
                },
                Err(_) => not_found("that profile was deleted by retention"),
            }
        }
        _ => not_found("not found: /metrics, /debug/pprof/, /debug/pprof/timers?pid=N"),
    }
}

#[cfg(test)]
mod tests {
    use probe_common::{SiteKey, SiteValue};

    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let mut totals = Snapshot::default();
        totals.sites.push((
            SiteKey {
                event: event::CREATED,
                ..SiteKey::default()
            },
            SiteValue {
                count: 7,
                delay_ns: 0,
            },
        ));
        totals.sites.push((
            SiteKey {
                event: event::FIRED,
                ..SiteKey::default()
            },
            SiteValue {
                count: 3,
                delay_ns: 3_000_000,
            },
        ));
        totals.fire_delays = vec![0; 64];
        totals.fire_delays[11] = 2; // ~1-2 µs late
        totals.fire_delays[21] = 1; // ~1-2 ms late
        let page = render(
            &[ProcessMetrics {
                pid: 42,
                exe: "svc",
                totals: &totals,
                tier: CaptureTier::Sampled,
                overhead_ratio: Some(0.0025),
                max_overhead_ratio: 0.01,
                steps: 1,
                memory: &MemoryNumbers {
                    heap_alloc: Some(4096),
                    goroutines: Some(12),
                    ..MemoryNumbers::default()
                },
            }],
            &AgentCounters::default(),
        );
        assert!(
            page.contains("timerscope_capture_tier{pid=\"42\",exe=\"svc\",tier=\"sampled\"} 1")
        );
        assert!(page.contains("timerscope_probe_overhead_ratio{pid=\"42\",exe=\"svc\"} 0.0025"));
        assert!(
            page.contains(
                "timerscope_timer_events_total{pid=\"42\",exe=\"svc\",event=\"created\"} 7"
            )
        );
        assert!(page.contains("timerscope_timer_fire_delay_seconds_bucket{pid=\"42\",exe=\"svc\",le=\"0.000002048\"} 2"));
        assert!(page.contains(
            "timerscope_timer_fire_delay_seconds_bucket{pid=\"42\",exe=\"svc\",le=\"+Inf\"} 3"
        ));
        assert!(
            page.contains("timerscope_timer_fire_delay_seconds_sum{pid=\"42\",exe=\"svc\"} 0.003")
        );
        assert!(page.contains("# TYPE process_resident_memory_bytes gauge"));
        assert!(page.contains("timerscope_go_heap_alloc_bytes{pid=\"42\",exe=\"svc\"} 4096"));
        assert!(page.contains("timerscope_goroutines{pid=\"42\",exe=\"svc\"} 12"));
        // A figure that could not be read is left out, not written as 0.
        assert!(page.contains("# TYPE timerscope_go_sys_bytes gauge"));
        assert!(!page.contains("timerscope_go_sys_bytes{"));
        assert!(!page.contains("reason=\"stack_truncated\""));
        assert!(page.contains("timerscope_stacks_truncated_total{pid=\"42\",exe=\"svc\"} 0"));
        let (cpu, rss, start) = agent_usage();
        assert!(cpu >= 0.0 && rss > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > now - 86400.0 * 365.0 && start <= now + 1.0,
            "{start}"
        );
    }

    #[test]
    fn routes_serve_metrics_listing_profiles_and_404() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("api-7.pb.gz");
        std::fs::write(&profile, b"\x1f\x8bprofile").unwrap();
        let agent = AgentCounters::default();
        let page: Page = Arc::new(Mutex::new("# metrics\n".into()));
        assert_eq!(
            respond("GET /metrics HTTP/1.1", &page, &agent).body,
            b"# metrics\n"
        );
        // Nothing written yet.
        let answer = respond("GET /debug/pprof/timers HTTP/1.1", &page, &agent);
        assert_eq!(answer.status, "404 Not Found");
        agent
            .latest
            .lock()
            .unwrap()
            .insert(7, ("api".into(), profile.clone()));
        for target in [
            "/debug/pprof/timers?pid=7",
            "/debug/pprof/timers?exe=api",
            "/debug/pprof/timers",
        ] {
            let answer = respond(&format!("GET {target} HTTP/1.1"), &page, &agent);
            assert_eq!(answer.status, "200 OK", "{target}");
            assert_eq!(answer.body, b"\x1f\x8bprofile");
        }
        let listing = respond("GET /debug/pprof/ HTTP/1.1", &page, &agent);
        assert_eq!(listing.body, b"/debug/pprof/timers?pid=7 exe=api\n");
        for target in ["/debug/pprof/timers?pid=8", "/nope", "/debug/pprof/heap"] {
            let answer = respond(&format!("GET {target} HTTP/1.1"), &page, &agent);
            assert_eq!(answer.status, "404 Not Found", "{target}");
        }
        assert_eq!(respond("garbage", &page, &agent).status, "400 Bad Request");
    }

    #[test]
    fn the_shipped_grafana_dashboard_uses_only_metrics_we_export() {
        let dashboard = include_str!("../../../../contrib/grafana-dashboard.json");
        let page = render(&[], &AgentCounters::default());
        let exported: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut used = 0;
        for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("timerscope_") {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    exported.contains(&format!("timerscope_{family}").as_str()),
                    "the dashboard uses timerscope_{name}, which is not exported"
                );
                used += 1;
            }
        }
        assert!(used >= 6, "the dashboard queries our metrics");
    }

    #[test]
    fn a_bare_port_binds_loopback() {
        assert_eq!(
            parse_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(parse_addr("nope").is_err());
    }

    #[tokio::test]
    async fn a_flood_of_idle_clients_does_not_keep_metrics_from_a_scraper() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let page: Page = Arc::new(Mutex::new("timerscope_live_timers 7\n".to_owned()));
        tokio::spawn(serve(
            listener,
            Arc::clone(&page),
            Arc::new(AgentCounters::default()),
        ));
        let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = open_fds();
        // Far more idle connections than slots, each sending half a request and then nothing.
        let mut flood = Vec::new();
        for _ in 0..(MAX_CONNECTIONS * 4) {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = stream.write_all(b"GET /metrics HT").await;
            flood.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The server holds at most a slot's worth of them (the rest wait in the backlog); the
        // test's own ends are the flood itself.
        let held = open_fds() - before - flood.len();
        assert!(
            held <= MAX_CONNECTIONS + 4,
            "the server holds {held} connections"
        );
        let scrape = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        // The flood holds every slot for at most CLIENT_DEADLINE per round of slots.
        let answer = tokio::time::timeout(Duration::from_secs(60), scrape)
            .await
            .expect("the scraper got an answer while the flood stayed connected");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("timerscope_live_timers 7\n"), "{answer}");
        drop(flood);
    }
}
