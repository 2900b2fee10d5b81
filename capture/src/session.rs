//! One attached target process, shared by `record` and `watch`: inspect its binary, plan, attach,
//! read what the probes collected (while attached, or once detached), and encode it.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use gobinary::{GoBinary, process};
use pprof::{
    Profile,
    vocabulary::{CaptureTier, ChannelMode, CommentKey, Events, MemoryNumbers},
};
use probe_common::TimerCreation;

use crate::{
    attach::{MapSizes, Probe, ProbeMaps, ProgramStats},
    cgo::CgoHooks,
    cheap::{CHeapCapture, CHeapHooks},
    collect::{self, Snapshot},
    encode::{self, DROP_NAMES, Recording},
    goroutine_probes::GoroutineCapture,
    goroutines::{GoroutineRead, RuntimeReader},
    libraries::Libraries,
    mappings::LiveMappings,
    pending::{PendingRead, PendingReader, SnapshotState},
    plan::{self, GoroutinePlan, Plan},
    symbolize::Symbolizer,
};

/// The probes of a session: attached, or detached with their maps kept for the final read.
enum ProbeState {
    Attached(Box<Probe>),
    Detached(ProbeMaps),
    /// Only while [`Session::detach`] moves the probe out.
    Detaching,
}

pub struct Session {
    pub pid: u32,
    pub binary: Arc<GoBinary>,
    pub plan: Plan,
    pub channel_mode: ChannelMode,
    /// Load bias of the binary (runtime minus link address).
    bias: u64,
    /// The binary's executable mapping, for the profile's main mapping.
    text_map: process::MapEntry,
    symbolizer: Symbolizer,
    libraries: Libraries,
    probe: ProbeState,
    mappings: LiveMappings,
    /// Hooks (plan indices) the overhead budget detached, in order.
    detached_hooks: Vec<usize>,
    /// Hooks whose stack walks are sampled: (plan index, one walk in this many hits).
    stack_sampling: Vec<(usize, u32)>,
    /// Whether the C heap probes run, and where they sit.
    pub c_heap: CHeapCapture,
    c_heap_hooks: Option<CHeapHooks>,
    /// The mmap tracepoints are attached ([`Probes::mmap`]).
    mmap_probes: bool,
    /// Whether the goroutine probes run, and where they sit.
    pub goroutines: GoroutineCapture,
    goroutine_plan: Option<GoroutinePlan>,
    pending: PendingReader,
    runtime: RuntimeReader,
    /// (device, inode) of the executable at attach: another one means the target exec'd.
    executable: Option<(u64, u64)>,
    /// What the target exec'd, once [`Session::check_exec`] saw it: its memory is no longer
    /// the Go program's, and nothing is read from it.
    execed: Option<PathBuf>,
    /// Set once a creation hook is detached: from then on a timer created at a reused address
    /// no longer replaces its entry in the creation map, so only the creations joined right
    /// after the detach are trusted, each for as long as its timer stays pending.
    frozen_creations: Option<HashMap<u64, TimerCreation>>,
}

/// What [`Session::attach`] attaches, as `record`, `watch` and `top` ask for it.
#[derive(Clone, Copy, Debug)]
pub struct Probes {
    pub sizes: MapSizes,
    /// The timer hooks' tier.
    pub events: Events,
    /// The C heap probes, when the target links libc.
    pub c_heap: bool,
    /// The goroutine creation and exit probes.
    pub goroutines: bool,
    /// The mmap, munmap and mremap tracepoints (each call at its stack). Without them the
    /// mappings are listed from `/proc/PID/maps` at each snapshot, all under `[pre-existing]`.
    pub mmap: bool,
}

impl Session {
    /// Inspects the process's binary, plans the timer hooks of `probes.events` for its Go
    /// version and attaches them, and the C heap and goroutine probes asked for (a failure of
    /// either is a warning and `failed` in the profile, never the end of the capture).
    pub fn attach(pid: u32, probes: Probes) -> anyhow::Result<Self> {
        let Probes {
            sizes,
            events,
            c_heap,
            goroutines,
            mmap,
        } = probes;
        let exe = process::proc_path(pid, "exe");
        let executable = process::executable_identity(pid);
        // Read once, while the target runs: /proc/PID/exe is gone once it exits.
        let binary = Arc::new(
            GoBinary::open(&exe)
                .with_context(|| format!("binary: pid {pid} ({})", exe.display()))?,
        );
        let plan = Plan::for_binary(&binary, events).with_context(|| format!("plan: pid {pid}"))?;
        let text = binary
            .elf
            .text_segment()
            .context("binary: it has no executable segment")?;
        let (text_map, bias) = process::text_mapping(pid, text)?;
        let godebug = process::godebug(pid);
        let channel_mode = plan::channel_mode(&binary, plan.family, godebug.as_deref());
        let symbolizer = Symbolizer::new(Arc::clone(&binary), bias);
        let cgo = CgoHooks::for_binary(&binary).with_context(|| format!("plan: pid {pid}"))?;
        let (mut goroutine_capture, goroutine_plan) = if goroutines {
            match GoroutinePlan::for_binary(&binary) {
                Ok(plan) => (GoroutineCapture::On, Some(plan)),
                Err(error) => {
                    tracing::warn!("goroutine probes: pid {pid}: {error}; recording without them");
                    (GoroutineCapture::Failed(error.to_string()), None)
                }
            }
        } else {
            (GoroutineCapture::Off, None)
        };
        let mut probe = Probe::attach(
            &plan,
            cgo.as_ref(),
            goroutine_plan.as_ref(),
            &exe,
            pid,
            bias,
            sizes,
        )
        .with_context(|| format!("attach: pid {pid}"))?;
        if mmap {
            probe
                .attach_mmap()
                .with_context(|| format!("attach: pid {pid}: the mmap tracepoints"))?;
        }
        let (c_heap, c_heap_hooks) = if c_heap {
            attach_c_heap(&mut probe, pid, &binary)
        } else {
            (CHeapCapture::Off, None)
        };
        if let Some(goroutine_plan) = &goroutine_plan
            && let Err(error) = probe.attach_goroutines(goroutine_plan, &exe, pid)
        {
            let error = anyhow::Error::from(error);
            tracing::warn!("goroutine probes: pid {pid}: {error:#}; recording without them");
            goroutine_capture = GoroutineCapture::Failed(format!("{error:#}"));
        }
        tracing::debug!(
            "attach: pid {pid}: {} hooks{}, load bias {bias:#x}",
            plan.hooks.len(),
            if cgo.is_some() { " and cgo probes" } else { "" }
        );
        // Read after the tracepoints are attached: a mapping made in between is in both, and the
        // event replaces the pre-existing interval rather than counting twice.
        let mut mappings = LiveMappings::from_proc_maps(&process::maps(pid)?);
        mappings.start_program_break(pid);
        let libraries = Libraries::new(pid, &text_map.path);
        let pending = PendingReader::new(&binary, pid);
        let runtime = RuntimeReader::new(&binary, pid);
        Ok(Self {
            pid,
            binary,
            plan,
            channel_mode,
            bias,
            text_map,
            symbolizer,
            libraries,
            probe: ProbeState::Attached(Box::new(probe)),
            mappings,
            detached_hooks: Vec::new(),
            stack_sampling: Vec::new(),
            c_heap,
            c_heap_hooks,
            mmap_probes: mmap,
            goroutines: goroutine_capture,
            goroutine_plan,
            pending,
            runtime,
            executable,
            execed: None,
            frozen_creations: None,
        })
    }

    /// Detaches the goroutine probes alone (e.g. over an overhead budget); the rest keeps
    /// running, and profiles say `goroutine_probes=detached`.
    pub fn detach_goroutines(&mut self) {
        if self.goroutines != GoroutineCapture::On {
            return;
        }
        if let ProbeState::Attached(probe) = &mut self.probe {
            probe.detach_goroutines();
        }
        self.goroutines = GoroutineCapture::Detached;
    }

    /// Goroutine creations and exits seen so far, while the goroutine probes are attached.
    pub fn goroutine_hits(&self) -> Option<u64> {
        match &self.probe {
            ProbeState::Attached(probe) => probe.goroutine_hits(),
            _ => None,
        }
    }

    /// Detaches the C heap probes alone (e.g. over an overhead budget); the rest keeps
    /// running, and profiles say `c_heap=detached`.
    pub fn detach_c_heap(&mut self) {
        if self.c_heap != CHeapCapture::On {
            return;
        }
        if let ProbeState::Attached(probe) = &mut self.probe {
            probe.detach_c_heap();
        }
        self.c_heap = CHeapCapture::Detached;
    }

    /// `go1.25.5, timer family B, channel mode async, 4 hooks, capture tier all`
    pub fn describe(&self) -> String {
        format!(
            "{}, timer family {}, channel mode {}, {} hooks, capture tier {}, mmap probes {}",
            self.binary.buildinfo.version_string,
            self.plan.family,
            self.channel_mode,
            self.plan.hooks.len(),
            self.capture_tier(),
            self.mmap_state()
        )
    }

    /// `on` or `off`: whether the mmap tracepoints are attached, as the startup line and the
    /// `mmap_probes=` comment say it.
    fn mmap_state(&self) -> &'static str {
        if self.mmap_probes { "on" } else { "off" }
    }

    /// What the probes capture now: the requested tier, less once the budget stepped down.
    pub fn capture_tier(&self) -> CaptureTier {
        let hooks = self.plan.hooks.len();
        if hooks == self.detached_hooks.len() {
            CaptureTier::None
        } else if !self.detached_hooks.is_empty() {
            CaptureTier::Reduced
        } else if !self.stack_sampling.is_empty() {
            CaptureTier::Sampled
        } else {
            match self.plan.events {
                Events::All => CaptureTier::All,
                Events::Create => CaptureTier::Create,
                Events::None => CaptureTier::None,
            }
        }
    }

    /// Whether hook `index` of the plan is still attached.
    pub fn hook_attached(&self, index: usize) -> bool {
        matches!(&self.probe, ProbeState::Attached(probe) if probe.hook_attached(index))
    }

    /// Whether hook `index` walks its stack at every hit.
    pub fn stacks_sampled(&self, index: usize) -> bool {
        self.stack_sampling.iter().any(|&(hook, _)| hook == index)
    }

    /// Detaches hook `index` alone (the overhead budget's last resort).
    pub fn detach_hook(&mut self, index: usize) -> anyhow::Result<()> {
        if let ProbeState::Attached(probe) = &mut self.probe
            && probe.hook_attached(index)
        {
            probe
                .detach_hook(index)
                .with_context(|| format!("detach: {}", self.plan.hooks[index].symbol))?;
            self.detached_hooks.push(index);
            if self.frozen_creations.is_none() && self.plan.hooks[index].sees_creations() {
                let mut now = Snapshot::default();
                self.read_pending(&mut now);
                self.frozen_creations = Some(now.creations);
            }
        }
        Ok(())
    }

    /// Makes hook `index` walk its stack at one hit in `rate`.
    pub fn sample_stacks(&mut self, index: usize, rate: u32) -> anyhow::Result<()> {
        if let ProbeState::Attached(probe) = &mut self.probe {
            probe
                .set_stack_sampling(index, rate)
                .with_context(|| format!("sampling: {}", self.plan.hooks[index].symbol))?;
            self.stack_sampling.retain(|&(hook, _)| hook != index);
            self.stack_sampling.push((index, rate));
        }
        Ok(())
    }

    /// Cumulative run time and runs of the uprobe programs (kernel BPF statistics) and probe
    /// hits per hook, while attached.
    pub fn probe_cost(&self) -> Option<(ProgramStats, Vec<u64>)> {
        let ProbeState::Attached(probe) = &self.probe else {
            return None;
        };
        let stats = probe.uprobe_stats().ok()?;
        let hits = collect::hook_hits(&probe.ebpf, self.plan.hooks.len()).ok()?;
        Some((stats, hits))
    }

    /// `symbol+offset` of hook `index`, as the profile comments name it.
    pub fn hook_name(&self, index: usize) -> String {
        let hook = &self.plan.hooks[index];
        format!("{}+{}", hook.symbol, hook.entry_offset)
    }

    /// Moves completed mmap-family calls from the ring buffer into the interval map; call it
    /// often enough that the ring buffer never fills.
    pub fn drain(&mut self) {
        let maps = self.maps();
        self.drain_with(maps);
    }

    /// `/proc/PID/maps` while it is still the Go program's: not once it is gone or exec'd.
    fn maps(&self) -> Option<Vec<process::MapEntry>> {
        self.execed
            .is_none()
            .then(|| process::maps(self.pid).ok())
            .flatten()
    }

    /// [`Session::drain`] with the process's mappings already read.
    fn drain_with(&mut self, maps: Option<Vec<process::MapEntry>>) {
        if let Some(maps) = maps {
            self.libraries.refresh(maps);
        }
        if let ProbeState::Attached(probe) = &mut self.probe {
            collect::drain_mmap_events(&mut probe.mmap_events, &mut self.mappings);
        }
    }

    /// (probe hits, live timers, drops) so far, for a status line.
    pub fn counters(&self) -> Option<(u64, usize, u64)> {
        let ProbeState::Attached(probe) = &self.probe else {
            return None;
        };
        let (hits, drops) = collect::counters(&probe.ebpf, self.plan.hooks.len()).ok()?;
        Some((hits, collect::live_count(&probe.ebpf), drops))
    }

    /// Stops every probe counting at once, links still attached: what [`Session::snapshot`] and
    /// [`Session::read_pending`] read next is one moment's state. Closing the links
    /// ([`Session::detach`]) takes about 0.1 s each (docs/toolchain.md), seconds in all, during
    /// which the target's timers go on changing unseen: read before it, not after.
    pub fn disarm(&mut self) {
        if let ProbeState::Attached(probe) = &mut self.probe {
            match probe.disarm() {
                // A program that read ARMED just before it changed finishes within microseconds
                // (BPF programs do not sleep here); give it a moment before the maps are read.
                Ok(()) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(error) => tracing::warn!("detach: pid {}: {error}", self.pid),
            }
        }
    }

    /// Detaches every probe: nothing is counted after this, and [`Session::snapshot`] then reads
    /// one consistent final state.
    pub fn detach(&mut self) {
        let state = std::mem::replace(&mut self.probe, ProbeState::Detaching);
        self.probe = match state {
            ProbeState::Attached(probe) => {
                let (maps, mut mmap_events) = probe.detach();
                collect::drain_mmap_events(&mut mmap_events, &mut self.mappings);
                ProbeState::Detached(maps)
            }
            detached => detached,
        };
    }

    /// Everything collected so far: cumulative counts, live timers and mappings now.
    pub fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let maps = self.maps();
        if !self.mmap_probes
            && let Some(entries) = &maps
        {
            // Once the process is gone, its last listing stands.
            self.mappings = LiveMappings::from_proc_maps(entries);
        }
        self.drain_with(maps);
        let hooks = self.plan.hooks.len();
        let mappings = self.mappings.clone();
        let mut snapshot = match &self.probe {
            ProbeState::Attached(probe) => collect::snapshot(&probe.ebpf, hooks, mappings)?,
            ProbeState::Detached(maps) => collect::snapshot(maps, hooks, mappings)?,
            ProbeState::Detaching => unreachable!("detach completes before anything else runs"),
        };
        let (binary, bias) = (&self.binary, self.bias);
        snapshot.resolve_unread_callbacks(|funcval| {
            let pc = binary.read_word(funcval.wrapping_sub(bias))?;
            Some(pc.wrapping_add(bias))
        });
        Ok(snapshot)
    }

    /// Reads the pending timers from the runtime's heaps into `snapshot` (the snapshot tier; the
    /// process keeps running), each with where the creation hooks saw it created.
    /// Not from a process that exec'd another program.
    pub fn read_pending(&mut self, snapshot: &mut Snapshot) {
        snapshot.pending = match &self.execed {
            Some(program) => PendingRead::Failed(format!(
                "pid {} exec'd {}: its Go runtime is gone",
                self.pid,
                program.display()
            )),
            None => self.pending.read(&self.binary),
        };
        let frozen = self.frozen_creations.as_ref();
        let joined = match &self.probe {
            ProbeState::Attached(probe) => collect::join_creations(&probe.ebpf, frozen, snapshot),
            ProbeState::Detached(maps) => collect::join_creations(maps, frozen, snapshot),
            ProbeState::Detaching => unreachable!("detach completes before anything else runs"),
        };
        if let Err(error) = joined {
            // The pending timers still count, under their callbacks.
            tracing::warn!(
                "snapshot: pid {}: {:#}",
                self.pid,
                anyhow::Error::from(error)
            );
        }
        if let (Some(frozen), Some(pending)) =
            (&mut self.frozen_creations, snapshot.pending.timers())
            && pending.inconsistent == 0
            && pending.moving == 0
        {
            // A timer no longer pending may be stopped and its address reused. (A heap that
            // kept changing under the read was skipped or read in motion: a timer missing from
            // it is not gone.)
            let addresses: HashSet<u64> = pending.timers.iter().map(|t| t.address).collect();
            frozen.retain(|address, _| addresses.contains(address));
        }
    }

    /// Reads every goroutine at its current stack into `snapshot` (the process keeps running).
    pub fn read_goroutines(&self, snapshot: &mut Snapshot) {
        snapshot.goroutines = self.runtime.goroutines(&self.binary);
    }

    /// RSS, the runtime's memory figures and the goroutine count of `goroutines` (read now
    /// when `None`), for the `memory_start`/`memory_end` comments.
    pub fn memory_numbers(&self, goroutines: Option<&GoroutineRead>) -> MemoryNumbers {
        match goroutines {
            Some(read) => self.runtime.memory_numbers(&self.binary, read),
            None => self
                .runtime
                .memory_numbers(&self.binary, &self.runtime.goroutines(&self.binary)),
        }
    }

    /// What the snapshot tier gave last (refused for good once the layout cannot be read).
    pub fn snapshot_state(&self) -> SnapshotState {
        self.pending.state()
    }

    /// The program the target now runs, when it exec'd another one since attach (same pid, new
    /// executable): the uprobes no longer fire in it, and its memory is not the Go program's.
    /// Sticky once seen.
    pub fn check_exec(&mut self) -> Option<&PathBuf> {
        if self.execed.is_none()
            && let Some(now) = process::executable_identity(self.pid)
            && self.executable.is_some_and(|then| then != now)
        {
            let program = std::fs::read_link(process::proc_path(self.pid, "exe"))
                .unwrap_or_else(|_| PathBuf::from("another program"));
            self.execed = Some(program);
        }
        self.execed.as_ref()
    }

    /// A profile of `snapshot` covering `start` + `duration`, with `extra_comments` after the
    /// session's own (Go version, timer family, channel mode, offsets, symbols, hooks).
    pub fn encode(
        &mut self,
        snapshot: &Snapshot,
        start: SystemTime,
        duration: Duration,
        extra_comments: &[String],
    ) -> Result<Profile, pprof::ProfileError> {
        let names = |indices: &mut dyn Iterator<Item = usize>| {
            indices
                .map(|i| self.hook_name(i))
                .collect::<Vec<_>>()
                .join(",")
        };
        let hooks =
            names(&mut (0..self.plan.hooks.len()).filter(|i| !self.detached_hooks.contains(i)));
        let detached = names(&mut self.detached_hooks.iter().copied());
        let sampled = self
            .stack_sampling
            .iter()
            .map(|&(i, rate)| format!("{}/{rate}", self.hook_name(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut comments = vec![
            CommentKey::GoVersion.comment(&self.binary.buildinfo.version_string),
            CommentKey::TimerFamily.comment(self.plan.family),
            CommentKey::TimerChannelMode.comment(self.channel_mode),
            CommentKey::StructOffsets.comment(self.plan.offsets_source.as_str()),
            CommentKey::Symbols.comment(self.symbolizer.source().label()),
            CommentKey::Hooks.comment(hooks),
            CommentKey::MissingHooks.comment(self.plan.missing_hooks.join(",")),
            CommentKey::Pid.comment(self.pid),
            CommentKey::CaptureTier.comment(self.capture_tier()),
            CommentKey::CHeap.comment(&self.c_heap),
            CommentKey::GoroutineProbes.comment(&self.goroutines),
            CommentKey::MmapProbes.comment(self.mmap_state()),
        ];
        if let Some(plan) = self.goroutine_plan.as_ref().filter(|_| {
            matches!(
                self.goroutines,
                GoroutineCapture::On | GoroutineCapture::Detached
            )
        }) {
            comments.push(CommentKey::GoroutineHooks.comment(plan.describe()));
        }
        if !detached.is_empty() {
            comments.push(CommentKey::DetachedHooks.comment(detached));
        }
        if !sampled.is_empty() {
            comments.push(CommentKey::SampledStacks.comment(sampled));
            let sampled_out: u64 = snapshot.stacks_sampled_out.iter().sum();
            comments.push(CommentKey::StacksSampledOut.comment(sampled_out));
        }
        if let Some(hooks) = &self.c_heap_hooks {
            comments.push(CommentKey::CHeapProbes.comment(format_args!(
                "{}:{}",
                hooks.libc,
                hooks.describe()
            )));
        }
        comments.extend(snapshot.timer_worker_comments());
        comments.extend(snapshot.pending.comment());
        comments.extend(snapshot.goroutines.comment());
        comments.extend(snapshot.creations_comment());
        comments.extend_from_slice(extra_comments);
        let recording = Recording {
            start,
            duration,
            mapping: encode::main_mapping(&self.text_map, &self.binary, &self.symbolizer),
            comments,
        };
        encode::encode(snapshot, &recording, &mut self.symbolizer, &self.libraries)
    }

    /// The binary's path as the target sees it (for names and messages).
    pub fn binary_path(&self) -> PathBuf {
        PathBuf::from(&self.text_map.path)
    }
}

/// The C heap probes for `pid`, attached to `probe`; why not, when they are not.
fn attach_c_heap(
    probe: &mut Probe,
    pid: u32,
    binary: &GoBinary,
) -> (CHeapCapture, Option<CHeapHooks>) {
    let hooks = match CHeapHooks::for_process(pid, binary) {
        Ok(Some(hooks)) => hooks,
        Ok(None) => return (CHeapCapture::NoLibc, None),
        Err(error) => {
            let error = anyhow::Error::from(error);
            tracing::warn!("C heap: pid {pid}: {error:#}; recording without it");
            return (CHeapCapture::Failed(format!("{error:#}")), None);
        }
    };
    if let Err(error) = probe.attach_c_heap(&hooks, pid) {
        let error = anyhow::Error::from(error);
        tracing::warn!(
            "C heap: pid {pid}: attaching to {}: {error:#}; recording without it",
            hooks.libc
        );
        return (CHeapCapture::Failed(format!("{error:#}")), None);
    }
    tracing::debug!("attach: pid {pid}: C heap probes {}", hooks.describe());
    (CHeapCapture::On, Some(hooks))
}

/// One stderr line when anything was lost, naming the reasons and the knobs.
pub fn report_drops(snapshot: &Snapshot) {
    if snapshot.total_drops() == 0 {
        return;
    }
    let reasons = DROP_NAMES
        .iter()
        .zip(snapshot.drops)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "timerscope: warning: {} events or stacks were lost ({reasons}); raise --max-sites, \
         --max-live, --max-stacks or --max-c-blocks",
        snapshot.total_drops()
    );
}

/// `YYYYmmddTHHMMSS` in local time, with `.mmm` milliseconds when `millis` (file names).
pub fn file_timestamp(time: SystemTime, millis: bool) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs() as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r only writes the tm it is given.
    unsafe { libc::localtime_r(&seconds, &mut tm) };
    let mut stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    if millis {
        stamp.push_str(&format!(".{:03}", since_epoch.subsec_millis()));
    }
    stamp
}
