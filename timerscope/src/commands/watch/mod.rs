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
    budget::{self, OverheadBudget},
    collect::Snapshot,
    preflight,
    session::{Probes, Session, report_drops},
};
use clap::Args;
use pprof::vocabulary::{CommentKey, Events, MemoryNumbers};
use tokio::signal::unix::{SignalKind, signal};

use super::{MapSizeArgs, StopSignals, events_parser};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Process to watch; the watch ends when it exits.
    #[arg(long, conflicts_with = "exe", required_unless_present = "exe")]
    pub pid: Option<u32>,
    /// Watch every process running this binary, now and later: a path matches that file
    /// (device and inode), a bare name (no `/`) matches every executable of that name, e.g. in
    /// containers, whose overlays change the inode. Repeatable.
    #[arg(long, value_name = "PATH|NAME")]
    pub exe: Vec<PathBuf>,
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
    /// Push each profile to this Pyroscope server (its push API,
    /// /push.v1.PusherService/Push); spooled while it is down. http or https; basic auth from
    /// the URL (https://user:password@host).
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
    /// A header for every push, `Name: value`; the value `@PATH` reads a file, `env:VAR` an
    /// environment variable (keeps secrets out of ps), e.g. `X-Scope-OrgID: tenant-1`.
    /// Repeatable.
    #[arg(long, value_name = "HEADER", value_parser = inspect::client::Header::parse)]
    pub push_header: Vec<inspect::client::Header>,
    /// PEM certificates to trust for https, besides the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// A label on every pushed profile, `name=value` (service_name=... replaces the default,
    /// the exe name). Repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_label)]
    pub label: Vec<(String, String)>,
    /// Bound the push spool: a size, an age, or both (e.g. 512MiB,6h); the oldest profiles are
    /// dropped first, and counted. The spool also counts in --max-disk.
    #[arg(long, value_name = "SIZE,AGE")]
    pub spool_max: Option<push::SpoolLimits>,
    #[command(flatten)]
    pub sizes: MapSizeArgs,
    /// Also follow the C heap (uprobes on libc malloc, free, ...; brk) of targets that link
    /// libc. Off by default: allocation-heavy C code pays about a microsecond per call.
    #[arg(long)]
    pub c_heap: bool,
    /// Also probe mmap, munmap and mremap calls, each at its stack (`mmap_calls`,
    /// `mmap_bytes`, ...). Off by default: they are syscall tracepoints, which put every system
    /// call of every process on the host on the kernel's slower path (about 25 ns more each).
    /// Without them, each profile lists the mappings from /proc/PID/maps (`mmap_live_bytes` at
    /// `[pre-existing]`, by mapping kind).
    #[arg(long)]
    pub mmap: bool,
    /// Leave out the goroutine probes (goroutines created and exited, by the stack of their
    /// `go` statement). They obey --max-overhead: over it, they are detached together.
    #[arg(long)]
    pub no_goroutine_probes: bool,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(pct) if pct > 0.0 && pct.is_finite() => Ok(pct),
        _ => Err(format!(
            "{text:?} is not a positive percentage (e.g. 1 or 0.5)"
        )),
    }
}

/// A Prometheus-style label name and its value.
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not name=value"))?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid || name.starts_with("__") {
        return Err(format!(
            "label name {name:?}: letters, digits and _, not starting with a digit or __"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

pub async fn run(args: WatchArgs) -> anyhow::Result<u8> {
    let target = match args.pid {
        Some(pid) => WatchTarget::Pid(pid),
        None => WatchTarget::Exe(args.exe),
    };
    let push = match &args.push {
        None => None,
        Some(url) => {
            let client = inspect::client::ClientSettings {
                ca_file: args.ca_file.clone(),
                headers: args.push_header.clone(),
            };
            let endpoint = client.endpoint(url).context("watch: --push")?;
            let tls = client.tls_config([url.as_str()]).context("watch: --push")?;
            let pusher = push::Pusher::new(endpoint, tls);
            // A certificate that is not trusted would fail every push: refused now, not spooled
            // and retried forever. A store that is down now may come up: that is retried.
            inspect::client::check_tls(&pusher.agent, &pusher.endpoint).context("watch: --push")?;
            Some(pusher)
        }
    };
    watch(WatchOptions {
        target,
        interval: args.interval,
        dir: args.dir,
        keep: args.keep,
        max_disk: args.max_disk.map(|size| size.as_u64()),
        metrics_addr: args.metrics_addr,
        push,
        labels: args.label,
        spool_max: args.spool_max.unwrap_or_default(),
        max_overhead: args.max_overhead,
        probes: Probes {
            sizes: (&args.sizes).into(),
            events: args.events,
            c_heap: args.c_heap,
            goroutines: !args.no_goroutine_probes,
            mmap: args.mmap,
        },
    })
    .await?;
    Ok(crate::exit::SUCCESS)
}

/// Which processes to watch.
pub enum WatchTarget {
    Pid(u32),
    /// Every process running one of these binaries (paths or bare names), now and later.
    Exe(Vec<PathBuf>),
}

pub struct WatchOptions {
    pub target: WatchTarget,
    pub interval: Duration,
    pub dir: PathBuf,
    pub keep: Option<usize>,
    pub max_disk: Option<u64>,
    pub metrics_addr: Option<SocketAddr>,
    pub push: Option<push::Pusher>,
    /// `--label`: added to (or replacing) each pushed profile's labels.
    pub labels: push::Labels,
    pub spool_max: push::SpoolLimits,
    /// Percent of one CPU.
    pub max_overhead: f64,
    /// What each watched process gets attached (C heap probes when it links libc).
    pub probes: Probes,
}

/// One watched process.
struct Watched {
    session: Session,
    budget: OverheadBudget,
    /// Binary name, for file names and labels.
    exe: String,
    /// The process's own series labels: exe, container and pod.
    labels: push::Labels,
    /// Cumulative state at the end of the previous interval.
    previous: Snapshot,
    interval_start: SystemTime,
    /// Memory figures at the start of this interval (the end of the previous one).
    memory: MemoryNumbers,
}

/// How often new processes of `--exe` are looked for and exits noticed.
const SCAN_PERIOD: Duration = Duration::from_millis(250);
/// How often the metrics page is re-rendered.
const METRICS_PERIOD: Duration = Duration::from_secs(5);

pub async fn watch(mut options: WatchOptions) -> anyhow::Result<()> {
    let mut signals = StopSignals::new()?;
    let mut hangup = signal(SignalKind::hangup())?;
    preflight::require_root("watch")?;
    preflight::require_kernel_features()?;
    fs::create_dir_all(&options.dir)
        .with_context(|| format!("watch: cannot create {}", options.dir.display()))?;

    let agent = Arc::new(metrics::AgentCounters::default());
    let pusher = options.push.take().map(|pusher| {
        let (wake, woken) = mpsc::channel();
        let dir = options.dir.clone();
        let counters = Arc::clone(&agent.push);
        (
            wake,
            std::thread::spawn(move || push::run_pusher(pusher, dir, counters, woken)),
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
        tokio::spawn(metrics::serve(
            listener,
            Arc::clone(&page),
            Arc::clone(&agent),
        ));
    }

    let mut watched: BTreeMap<u32, Watched> = BTreeMap::new();
    let matchers = match &options.target {
        WatchTarget::Pid(pid) => {
            let pid = preflight::require_process(*pid)?;
            watched.insert(pid, start_watching(pid, &options)?);
            None
        }
        WatchTarget::Exe(paths) => Some(
            paths
                .iter()
                .map(|path| ExeMatcher::new(path))
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
    };
    let writer = IntervalWriter {
        options: &options,
        pusher: pusher.as_ref().map(|(wake, _)| wake),
        hostname: hostname(),
        agent: &agent,
    };
    let result = capture(
        &options,
        &writer,
        &mut signals,
        &mut hangup,
        &page,
        watched,
        matchers.as_deref(),
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
    matchers: Option<&[ExeMatcher]>,
) -> anyhow::Result<()> {
    let mut failed_pids = Vec::new();
    let mut rotate = tokio::time::interval_at(
        tokio::time::Instant::now() + options.interval,
        options.interval,
    );
    let mut scan = tokio::time::interval(SCAN_PERIOD);
    let mut render = tokio::time::interval(METRICS_PERIOD);
    let mut budget_check = tokio::time::interval(budget::CHECK_PERIOD);
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
                            snapshot: w.session.snapshot_state(),
                            overhead_ratio: w.budget.ratio(),
                            max_overhead_ratio: w.budget.max_ratio(),
                            steps: w.budget.steps_taken(),
                            memory: &w.memory,
                        }
                    })
                    .collect();
                writer.agent.watched.store(watched.len() as u64, std::sync::atomic::Ordering::Relaxed);
                *page.lock().expect("metrics page lock") = metrics::render(&processes, writer.agent);
            }
            _ = budget_check.tick() => {
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
                let execed: Vec<(u32, PathBuf)> = watched
                    .iter_mut()
                    .filter_map(|(&pid, w)| Some((pid, w.session.check_exec()?.clone())))
                    .collect();
                for (pid, program) in execed {
                    // Its last interval ends here; with --exe, a new program that matches is
                    // picked up again by the scan below, as a new process would be.
                    let mut w = watched.remove(&pid).expect("listed above");
                    w.session.detach();
                    writer.write_interval(&mut w)?;
                    eprintln!(
                        "timerscope: pid {pid} exec'd {}: its Go program ended there, and so \
                         does its recording",
                        program.display()
                    );
                }
                match matchers {
                    None if watched.is_empty() => return Ok(()),
                    None => {}
                    Some(matchers) => {
                        for pid in processes_running(matchers) {
                            if watched.contains_key(&pid) || failed_pids.contains(&pid) {
                                continue;
                            }
                            match start_watching(pid, options) {
                                Ok(w) => {
                                    watched.insert(pid, w);
                                }
                                Err(error) => {
                                    writer.agent.attach_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    let mut session = Session::attach(pid, options.probes)?;
    let previous = session.snapshot()?;
    let memory = session.memory_numbers(None);
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
    let container = gobinary::process::container_identity(pid);
    let mut labels = vec![("exe".to_owned(), exe.clone())];
    labels.extend(
        container
            .container_id
            .map(|id| ("container_id".to_owned(), id)),
    );
    labels.extend(container.pod_uid.map(|uid| ("pod_uid".to_owned(), uid)));
    Ok(Watched {
        session,
        budget,
        exe,
        labels,
        previous,
        interval_start: SystemTime::now(),
        memory,
    })
}

/// One `--exe`: a file (by device and inode) or, given without a `/`, an executable name.
#[derive(Debug, PartialEq, Eq)]
enum ExeMatcher {
    File { dev: u64, ino: u64 },
    Name(String),
}

impl ExeMatcher {
    fn new(path: &Path) -> anyhow::Result<Self> {
        let text = path.to_string_lossy();
        if !text.contains('/') {
            return Ok(Self::Name(text.into_owned()));
        }
        let meta = fs::metadata(path).with_context(|| {
            format!(
                "watch: --exe {} (give a bare name, e.g. --exe {}, to match by name)",
                path.display(),
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        })?;
        Ok(Self::File {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn matches(&self, pid: u32) -> bool {
        let exe = format!("/proc/{pid}/exe");
        match self {
            Self::File { dev, ino } => {
                fs::metadata(&exe).is_ok_and(|m| (m.dev(), m.ino()) == (*dev, *ino))
            }
            Self::Name(name) => fs::read_link(&exe).is_ok_and(|target| {
                target
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy() == *name)
            }),
        }
    }
}

/// Pids whose executable one of `matchers` matches.
fn processes_running(matchers: &[ExeMatcher]) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own && matchers.iter().any(|m| m.matches(pid)))
        .filter(|&pid| preflight::process_alive(pid))
        .collect()
}

/// This host's name, for the `hostname` label.
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
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
    hostname: String,
    agent: &'a metrics::AgentCounters,
}

impl IntervalWriter<'_> {
    /// Writes the interval that ends now for one process and starts the next.
    fn write_interval(&self, w: &mut Watched) -> anyhow::Result<PathBuf> {
        let mut now = w.session.snapshot()?;
        w.session.read_pending(&mut now);
        w.session.read_goroutines(&mut now);
        let memory_end = w.session.memory_numbers(Some(&now.goroutines));
        let delta = now.since(&w.previous);
        let end = SystemTime::now();
        let duration = end.duration_since(w.interval_start).unwrap_or_default();
        let mut comments = w.budget.comments();
        comments.push(w.memory.comment(CommentKey::MemoryStart));
        comments.push(memory_end.comment(CommentKey::MemoryEnd));
        let profile = w
            .session
            .encode(&delta, w.interval_start, duration, &comments)?;
        let stem = format!(
            "{}-{}-{}",
            w.exe,
            w.session.pid,
            capture::session::file_timestamp(w.interval_start, true)
        );
        let path = unused_path(&self.options.dir, &stem);
        pprof::write_atomic(&path, &profile)?;
        self.agent
            .profiles_written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.agent
            .latest
            .lock()
            .expect("latest profiles lock")
            .insert(w.session.pid, (w.exe.clone(), path.clone()));
        report_drops(&delta);
        let dir = &self.options.dir;
        if let Some(wake) = self.pusher {
            push::spool(dir, &path, &self.labels(w))
                .with_context(|| format!("watch: spooling {} for --push", path.display()))?;
            let _ = wake.send(());
        }
        // The spool's own bytes (profiles retention already deleted, rejected ones) count in
        // --max-disk; the spool gives way first when both together are over.
        push::trim_spool(
            dir,
            self.options.spool_max,
            self.options.max_disk,
            &self.agent.push,
        );
        let spool_bytes = push::spool_only_bytes(dir);
        retention::enforce(
            dir,
            self.options.keep,
            self.options
                .max_disk
                .map(|max| max.saturating_sub(spool_bytes)),
        )
        .with_context(|| format!("watch: retention in {}", dir.display()))?;
        w.previous = now;
        w.interval_start = end;
        w.memory = memory_end;
        Ok(path)
    }

    /// The series labels of a pushed profile, sorted by name: `__name__`, `service_name` (the
    /// exe name unless `--label service_name=...`), `hostname`, the process's own, `--label`s.
    /// No pid: it would start a new series at every restart.
    fn labels(&self, w: &Watched) -> push::Labels {
        let mut labels: BTreeMap<String, String> = [
            ("__name__", "timerscope"),
            ("service_name", w.exe.as_str()),
            ("hostname", self.hostname.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        labels.extend(w.labels.iter().cloned());
        labels.extend(self.options.labels.iter().cloned());
        labels.into_iter().collect()
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
