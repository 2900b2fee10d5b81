//! `timerscope watch`: continuous capture on a host. One profile per interval per process
//! (counts for the interval, live timers and mappings at its end), written atomically, with
//! retention, Prometheus metrics and pushes to a profile store; follows every process of one
//! binary across restarts.

pub mod metrics;
pub mod push;
pub mod retention;

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use capture::{
    attach::MapSizes,
    budget::OverheadBudget,
    collect::Snapshot,
    preflight,
    session::{Session, report_drops},
};
use clap::Args;
use pprof::vocabulary::Events;
use tokio::signal::unix::{SignalKind, signal};

use super::{MapSizeArgs, StopSignals, events_parser};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Process to watch; the watch ends when it exits.
    #[arg(long, conflicts_with = "exe", required_unless_present = "exe")]
    pub pid: Option<u32>,
    /// Watch every process running this binary, now and later.
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// Length of one profile's interval.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Directory for the profiles (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep at most this many profiles (oldest deleted first).
    #[arg(long)]
    pub keep: Option<usize>,
    /// Keep the profiles under this total size (e.g. 500MiB, 2GiB).
    #[arg(long)]
    pub max_disk: Option<bytesize::ByteSize>,
    /// Serve Prometheus metrics here: HOST:PORT, or a bare port for loopback only (e.g. 9464).
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Push each profile to this Pyroscope server (its /ingest API); spooled while it is down.
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    /// Timer events to capture: `create` (timer creation only: cheap on busy servers), `all`
    /// (every lifecycle event, exact counts, as `record`), `none` (no timer probes).
    #[arg(long, default_value = "create", value_parser = events_parser())]
    pub events: Events,
    /// Most CPU the target may spend in timerscope's probes, in percent of one CPU (measured
    /// every second; over it, stack walks are sampled and then hooks detached, busiest first).
    #[arg(long, default_value_t = 1.0, value_name = "PCT", value_parser = parse_percent)]
    pub max_overhead: f64,
    #[command(flatten)]
    pub sizes: MapSizeArgs,
    /// Also follow the C heap (uprobes on libc malloc, free, ...; brk) of targets that link
    /// libc. Off by default: allocation-heavy C code pays about a microsecond per call.
    #[arg(long)]
    pub c_heap: bool,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(pct) if pct > 0.0 && pct.is_finite() => Ok(pct),
        _ => Err(format!(
            "{text:?} is not a positive percentage (e.g. 1 or 0.5)"
        )),
    }
}

pub async fn run(args: WatchArgs) -> anyhow::Result<u8> {
    let target = match (args.pid, args.exe) {
        (Some(pid), _) => WatchTarget::Pid(pid),
        (None, Some(exe)) => WatchTarget::Exe(exe),
        (None, None) => unreachable!("clap requires --pid or --exe"),
    };
    watch(WatchOptions {
        target,
        interval: args.interval,
        dir: args.dir,
        keep: args.keep,
        max_disk: args.max_disk.map(|size| size.as_u64()),
        metrics_addr: args.metrics_addr,
        push: args.push,
        events: args.events,
        max_overhead: args.max_overhead,
        sizes: (&args.sizes).into(),
        c_heap: args.c_heap,
    })
    .await?;
    Ok(crate::exit::SUCCESS)
}

/// Which processes to watch.
pub enum WatchTarget {
    Pid(u32),
    /// Every process running this binary, now and later.
    Exe(PathBuf),
}

pub struct WatchOptions {
    pub target: WatchTarget,
    pub interval: Duration,
    pub dir: PathBuf,
    pub keep: Option<usize>,
    pub max_disk: Option<u64>,
    pub metrics_addr: Option<SocketAddr>,
    pub push: Option<String>,
    pub events: Events,
    /// Percent of one CPU.
    pub max_overhead: f64,
    pub sizes: MapSizes,
    /// Attach the C heap probes to targets that link libc.
    pub c_heap: bool,
}

/// One watched process.
struct Watched {
    session: Session,
    budget: OverheadBudget,
    /// Binary name, for file names and labels.
    exe: String,
    /// Cumulative state at the end of the previous interval.
    previous: Snapshot,
    interval_start: SystemTime,
}

/// How often new processes of `--exe` are looked for and exits noticed.
const SCAN_PERIOD: Duration = Duration::from_millis(250);
/// How often the metrics page is re-rendered.
const METRICS_PERIOD: Duration = Duration::from_secs(5);
/// How often the probes' overhead is measured against `--max-overhead`.
const BUDGET_PERIOD: Duration = Duration::from_secs(1);

pub async fn watch(options: WatchOptions) -> anyhow::Result<()> {
    let mut signals = StopSignals::new()?;
    let mut hangup = signal(SignalKind::hangup())?;
    preflight::require_root("watch")?;
    preflight::require_kernel_features()?;
    fs::create_dir_all(&options.dir)
        .with_context(|| format!("watch: cannot create {}", options.dir.display()))?;

    let pusher = options.push.clone().map(|url| {
        let (wake, woken) = mpsc::channel();
        let dir = options.dir.clone();
        (
            wake,
            std::thread::spawn(move || push::run_pusher(url, dir, woken)),
        )
    });
    let page: metrics::Page = Arc::new(Mutex::new(String::new()));
    if let Some(addr) = options.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("watch: cannot listen on {addr} for --metrics-addr"))?;
        eprintln!(
            "timerscope: metrics at http://{}/metrics",
            listener.local_addr()?
        );
        if addr.ip().is_unspecified() {
            eprintln!(
                "timerscope: warning: --metrics-addr {addr} serves every network this host is on; \
                 bind 127.0.0.1 (or a bare port) unless scrapers elsewhere need it"
            );
        }
        tokio::spawn(metrics::serve(listener, Arc::clone(&page)));
    }

    let mut watched: BTreeMap<u32, Watched> = BTreeMap::new();
    let exe_identity = match &options.target {
        WatchTarget::Pid(pid) => {
            let pid = preflight::require_process(*pid)?;
            watched.insert(pid, start_watching(pid, &options)?);
            None
        }
        WatchTarget::Exe(path) => Some(
            fs::metadata(path)
                .map(|m| (m.dev(), m.ino()))
                .with_context(|| format!("watch: --exe {}", path.display()))?,
        ),
    };
    let writer = IntervalWriter {
        options: &options,
        pusher: pusher.as_ref().map(|(wake, _)| wake),
    };
    let result = capture(
        &options,
        &writer,
        &mut signals,
        &mut hangup,
        &page,
        watched,
        exe_identity,
    )
    .await;
    if let Some((wake, thread)) = pusher {
        // Closing the channel asks the pusher for a last attempt at the spool; wait for it.
        drop(wake);
        let _ = thread.join();
    }
    result
}

/// The capture loop: rotates intervals, follows processes, renders metrics, until a stop signal
/// (or, for `--pid`, the process's exit).
async fn capture(
    options: &WatchOptions,
    writer: &IntervalWriter<'_>,
    signals: &mut StopSignals,
    hangup: &mut tokio::signal::unix::Signal,
    page: &metrics::Page,
    mut watched: BTreeMap<u32, Watched>,
    exe_identity: Option<(u64, u64)>,
) -> anyhow::Result<()> {
    let mut failed_pids = Vec::new();
    let mut rotate = tokio::time::interval_at(
        tokio::time::Instant::now() + options.interval,
        options.interval,
    );
    let mut scan = tokio::time::interval(SCAN_PERIOD);
    let mut render = tokio::time::interval(METRICS_PERIOD);
    let mut budget = tokio::time::interval(BUDGET_PERIOD);
    loop {
        tokio::select! {
            signal = signals.recv() => {
                eprintln!("timerscope: {signal}: writing the last interval");
                for w in watched.values_mut() {
                    writer.write_interval(w)?;
                }
                return Ok(());
            }
            _ = hangup.recv() => {
                for w in watched.values_mut() {
                    writer.write_interval(w)?;
                }
            }
            _ = rotate.tick() => {
                for w in watched.values_mut() {
                    writer.write_interval(w)?;
                }
            }
            _ = render.tick() => {
                let totals: Vec<_> = watched
                    .values_mut()
                    .filter_map(|w| Some((w.session.pid, w.exe.clone(), w.session.snapshot().ok()?)))
                    .collect();
                let processes: Vec<_> = totals
                    .iter()
                    .map(|(pid, exe, totals)| {
                        let w = &watched[pid];
                        metrics::ProcessMetrics {
                            pid: *pid,
                            exe,
                            totals,
                            tier: w.session.capture_tier(),
                            overhead_ratio: w.budget.ratio(),
                            max_overhead_ratio: w.budget.max_ratio(),
                            steps: w.budget.steps_taken(),
                        }
                    })
                    .collect();
                *page.lock().expect("metrics page lock") = metrics::render(&processes);
            }
            _ = budget.tick() => {
                for (pid, w) in watched.iter_mut() {
                    match w.budget.check(&mut w.session) {
                        Ok(Some(step)) => eprintln!("timerscope: pid {pid}: {}", step.0),
                        Ok(None) => {}
                        Err(error) => eprintln!(
                            "timerscope: pid {pid}: overhead budget: {}",
                            crate::exit::one_line(&error)
                        ),
                    }
                }
            }
            _ = scan.tick() => {
                for w in watched.values_mut() {
                    w.session.drain();
                }
                let exited: Vec<u32> = watched
                    .keys()
                    .copied()
                    .filter(|&pid| !preflight::process_alive(pid))
                    .collect();
                for pid in exited {
                    let mut w = watched.remove(&pid).expect("listed above");
                    w.session.detach();
                    writer.write_interval(&mut w)?;
                    eprintln!("timerscope: pid {pid} exited");
                }
                match exe_identity {
                    None if watched.is_empty() => return Ok(()),
                    None => {}
                    Some(identity) => {
                        for pid in processes_running(identity) {
                            if watched.contains_key(&pid) || failed_pids.contains(&pid) {
                                continue;
                            }
                            match start_watching(pid, options) {
                                Ok(w) => {
                                    watched.insert(pid, w);
                                }
                                Err(error) => {
                                    eprintln!("timerscope: cannot watch pid {pid}: {}", crate::exit::one_line(&error));
                                    failed_pids.push(pid);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn start_watching(pid: u32, options: &WatchOptions) -> anyhow::Result<Watched> {
    let budget = OverheadBudget::new(options.max_overhead)?;
    let mut session = Session::attach(pid, options.sizes, options.events, options.c_heap)?;
    let previous = session.snapshot()?;
    let exe = session.binary_path().file_name().map_or_else(
        || "unknown".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    eprintln!(
        "timerscope: watching pid {pid} ({exe}: {}, max overhead {}% of a CPU, one uprobe hit \
         costs {} ns)",
        session.describe(),
        options.max_overhead,
        capture::calibrate::uprobe_trap_cost().map_or(0, |cost| cost.as_nanos())
    );
    Ok(Watched {
        session,
        budget,
        exe,
        previous,
        interval_start: SystemTime::now(),
    })
}

/// Pids whose executable is the file with this (device, inode).
fn processes_running(identity: (u64, u64)) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| (m.dev(), m.ino()) == identity)
        })
        .filter(|&pid| preflight::process_alive(pid))
        .collect()
}

/// `DIR/STEM.pb.gz`, or `DIR/STEM-N.pb.gz` with the first N not taken: two intervals can start
/// in the same millisecond (a SIGHUP or a rotation right after attaching), and the second must
/// not replace the first.
fn unused_path(dir: &Path, stem: &str) -> PathBuf {
    let mut path = dir.join(format!("{stem}.pb.gz"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{stem}-{n}.pb.gz"));
        n += 1;
    }
    path
}

struct IntervalWriter<'a> {
    options: &'a WatchOptions,
    pusher: Option<&'a mpsc::Sender<()>>,
}

impl IntervalWriter<'_> {
    /// Writes the interval that ends now for one process and starts the next.
    fn write_interval(&self, w: &mut Watched) -> anyhow::Result<PathBuf> {
        let mut now = w.session.snapshot()?;
        w.session.read_pending(&mut now);
        let delta = now.since(&w.previous);
        let end = SystemTime::now();
        let duration = end.duration_since(w.interval_start).unwrap_or_default();
        let profile = w
            .session
            .encode(&delta, w.interval_start, duration, &w.budget.comments())?;
        let stem = format!(
            "{}-{}-{}",
            w.exe,
            w.session.pid,
            capture::session::file_timestamp(w.interval_start, true)
        );
        let path = unused_path(&self.options.dir, &stem);
        pprof::write_atomic(&path, &profile)?;
        report_drops(&delta);
        if let Some(wake) = self.pusher {
            let unix = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            };
            let item = push::PushItem {
                from: unix(w.interval_start),
                until: unix(end).max(unix(w.interval_start) + 1),
                app: format!("timerscope.{}{{pid={}}}", w.exe, w.session.pid),
            };
            push::spool(&self.options.dir, &path, &item)
                .with_context(|| format!("watch: spooling {} for --push", path.display()))?;
            let _ = wake.send(());
        }
        retention::enforce(&self.options.dir, self.options.keep, self.options.max_disk)
            .with_context(|| format!("watch: retention in {}", self.options.dir.display()))?;
        w.previous = now;
        w.interval_start = end;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_starting_in_the_same_millisecond_get_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = "api-42-20261127T051137.110";
        let first = unused_path(dir.path(), stem);
        assert_eq!(first, dir.path().join(format!("{stem}.pb.gz")));
        fs::write(&first, b"first").unwrap();
        let second = unused_path(dir.path(), stem);
        assert_eq!(second, dir.path().join(format!("{stem}-1.pb.gz")));
        fs::write(&second, b"second").unwrap();
        assert_eq!(
            unused_path(dir.path(), stem),
            dir.path().join(format!("{stem}-2.pb.gz"))
        );
    }
}
