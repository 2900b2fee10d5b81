//! One attached target process, shared by `record` and `watch`: inspect its binary, plan, attach,
//! read what the probes collected (while attached, or once detached), and encode it.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use gobinary::{GoBinary, process};
use pprof::{
    MappingSpec, Profile,
    vocabulary::{ChannelMode, CommentKey},
};

use crate::{
    attach::{MapSizes, Probe, ProbeMaps},
    cgo::CgoHooks,
    collect::{self, Snapshot},
    encode::{self, DROP_NAMES, Recording},
    libraries::Libraries,
    mappings::LiveMappings,
    pending::PendingReader,
    plan::{self, Plan},
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
    pending: PendingReader,
}

impl Session {
    /// Inspects the process's binary, plans the hooks for its Go version and attaches.
    pub fn attach(pid: u32, sizes: MapSizes) -> anyhow::Result<Self> {
        let exe = process::proc_path(pid, "exe");
        // Read once, while the target runs: /proc/PID/exe is gone once it exits.
        let binary = Arc::new(
            GoBinary::open(&exe)
                .with_context(|| format!("binary: pid {pid} ({})", exe.display()))?,
        );
        let plan = Plan::for_binary(&binary).with_context(|| format!("plan: pid {pid}"))?;
        let text = binary
            .elf
            .text_segment()
            .context("binary: it has no executable segment")?;
        let (text_map, bias) = process::text_mapping(pid, text)?;
        let godebug = process::godebug(pid);
        let channel_mode = plan::channel_mode(&binary, plan.family, godebug.as_deref());
        let symbolizer = Symbolizer::new(Arc::clone(&binary), bias);
        let cgo = CgoHooks::for_binary(&binary).with_context(|| format!("plan: pid {pid}"))?;
        let probe = Probe::attach(&plan, cgo.as_ref(), &exe, pid, bias, sizes)
            .with_context(|| format!("attach: pid {pid}"))?;
        tracing::debug!(
            "attach: pid {pid}: {} hooks{}, load bias {bias:#x}",
            plan.hooks.len(),
            if cgo.is_some() { " and cgo probes" } else { "" }
        );
        // Read after the tracepoints are attached: a mapping made in between is in both, and the
        // event replaces the pre-existing interval rather than counting twice.
        let mappings = LiveMappings::from_proc_maps(&process::maps(pid)?);
        let libraries = Libraries::new(pid, &text_map.path);
        let pending = PendingReader::new(&binary, pid);
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
            pending,
        })
    }

    /// `go1.25.5, timer family B, channel mode async, 4 hooks`
    pub fn describe(&self) -> String {
        format!(
            "{}, timer family {}, channel mode {}, {} hooks",
            self.binary.buildinfo.version_string,
            self.plan.family,
            self.channel_mode,
            self.plan.hooks.len()
        )
    }

    /// Moves completed mmap-family calls from the ring buffer into the interval map; call it
    /// often enough that the ring buffer never fills.
    pub fn drain(&mut self) {
        self.libraries.refresh();
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
        self.drain();
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
    /// process keeps running).
    pub fn read_pending(&self, snapshot: &mut Snapshot) {
        snapshot.pending = self.pending.read(&self.binary);
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
        let has_lines = self.symbolizer.has_lines();
        let hooks = self
            .plan
            .hooks
            .iter()
            .map(|h| format!("{}+{}", h.symbol, h.entry_offset))
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
        ];
        comments.extend(snapshot.timer_worker_comments());
        comments.extend(snapshot.pending.comment());
        comments.extend_from_slice(extra_comments);
        let recording = Recording {
            start,
            duration,
            mapping: MappingSpec {
                start: self.text_map.start,
                limit: self.text_map.end,
                offset: self.text_map.offset,
                file: self.text_map.path.clone(),
                build_id: self.binary.elf.build_id().to_owned(),
                has_functions: true,
                has_filenames: has_lines,
                has_line_numbers: has_lines,
                has_inline_frames: self.symbolizer.has_inline_frames(),
            },
            comments,
        };
        encode::encode(snapshot, &recording, &mut self.symbolizer, &self.libraries)
    }

    /// The binary's path as the target sees it (for names and messages).
    pub fn binary_path(&self) -> PathBuf {
        PathBuf::from(&self.text_map.path)
    }
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
         --max-live or --max-stacks",
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
