//! `--metrics-addr`: the watched processes' totals in the Prometheus text format, for dashboards
//! and alerts. The watch loop renders the page; a small HTTP server hands out the latest one.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use probe_common::event;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::Semaphore,
};

use capture::{collect::Snapshot, encode::DROP_NAMES};
use pprof::vocabulary::CaptureTier;

/// The latest rendered page, shared with the server.
pub type Page = Arc<Mutex<String>>;

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
}

/// Histogram buckets reported: fires late by at most 2^b ns, for b in this range (1 µs .. 34 s).
const DELAY_BUCKET_RANGE: std::ops::RangeInclusive<usize> = 10..=35;

/// Renders the metrics page for `processes` plus the agent's own CPU and memory.
pub fn render(processes: &[ProcessMetrics<'_>]) -> String {
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
    let (cpu_seconds, resident_bytes) = agent_usage();
    family(
        "timerscope_agent_cpu_seconds_total",
        "counter",
        "CPU time used by timerscope itself (user + system).",
        vec![format!("timerscope_agent_cpu_seconds_total {cpu_seconds}")],
    );
    family(
        "timerscope_agent_resident_memory_bytes",
        "gauge",
        "Resident memory of timerscope itself.",
        vec![format!(
            "timerscope_agent_resident_memory_bytes {resident_bytes}"
        )],
    );
    page
}

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

/// (CPU seconds, resident bytes) of this process, from /proc/self.
fn agent_usage() -> (f64, u64) {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat; 12 and 13 after the command name.
            Some(
                (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
                    / ticks,
            )
        })
        .unwrap_or(0.0);
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    (cpu, resident)
}

/// Clients served at once; more wait in the listen backlog, so a flood cannot pile up tasks or
/// file descriptors.
pub const MAX_CONNECTIONS: usize = 32;

/// Time a client has to send its request and take the page; a slow or idle one is dropped
/// then, freeing its slot.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `page` at any path until the task is dropped.
pub async fn serve(listener: TcpListener, page: Page) {
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
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CLIENT_DEADLINE, async {
                // The request itself does not matter: read until its head ends, answer the page.
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let body = page.lock().map(|p| p.clone()).unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
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
        let page = render(&[ProcessMetrics {
            pid: 42,
            exe: "svc",
            totals: &totals,
            tier: CaptureTier::Sampled,
            overhead_ratio: Some(0.0025),
            max_overhead_ratio: 0.01,
            steps: 1,
        }]);
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
        assert!(page.contains("# TYPE timerscope_agent_resident_memory_bytes gauge"));
        let (cpu, rss) = agent_usage();
        assert!(cpu >= 0.0 && rss > 0);
    }

    #[test]
    fn the_shipped_grafana_dashboard_uses_only_metrics_we_export() {
        let dashboard = include_str!("../../../../contrib/grafana-dashboard.json");
        let page = render(&[]);
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
        tokio::spawn(serve(listener, Arc::clone(&page)));
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
