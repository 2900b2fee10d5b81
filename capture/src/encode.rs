//! Stage 5, encode: a [`Snapshot`] as a pprof profile (profile.proto) that `go tool pprof`,
//! Pyroscope, Parca and speedscope read.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, SystemTime},
};

use gobinary::runtime::{
    goroutines::GoroutineStack,
    timers::{PendingTimer, TimerSnapshot},
};
use pprof::{
    Frame, MappingSpec, Profile, ProfileBuilder, SampleLabel,
    vocabulary::{
        CommentKey, LabelKey, MappingClass, SampleType, Source, SyntheticFrame, TimerKind,
        drops_comment,
    },
};
use probe_common::{CHeapSite, SiteKey, drop, event, site_flag};

use crate::{
    collect::Snapshot,
    goroutines::{self as goroutine_read, GoroutineSnapshot},
    libraries::Libraries,
    mappings::Origin,
    symbolize::Symbolizer,
};

type Values = [i64; SampleType::ALL.len()];

/// Names of `probe_common::drop` reasons, as written into comments and stderr.
pub const DROP_NAMES: [&str; drop::COUNT as usize] = [
    "stack_map_full",
    "site_map_full",
    "live_map_full",
    "read_fault",
    "mmap_pending_full",
    "mmap_event_lost",
    "cgo_calls_full",
    "stack_truncated",
    "c_heap_blocks_full",
    "c_heap_calls_full",
    "c_heap_sites_full",
    "goroutine_map_full",
];

/// Facts about the recording that go into the profile's header and comments.
pub struct Recording {
    pub start: SystemTime,
    pub duration: Duration,
    /// The binary as mapped in the target: runtime range, file offset, and `has_*` flags that
    /// say what its debug info resolves.
    pub mapping: MappingSpec,
    /// `key=value` comments (Go version, timer family, channel mode, hooks, ...).
    pub comments: Vec<String>,
}

/// The profile's main mapping: the target's binary as `text` maps it, with what its debug
/// info resolves.
pub fn main_mapping(
    text: &gobinary::process::MapEntry,
    binary: &gobinary::GoBinary,
    symbolizer: &Symbolizer,
) -> MappingSpec {
    let has_lines = symbolizer.has_lines();
    MappingSpec {
        start: text.start,
        limit: text.end,
        offset: text.offset,
        file: text.path.clone(),
        build_id: binary.elf.build_id().to_owned(),
        has_functions: true,
        has_filenames: has_lines,
        has_line_numbers: has_lines,
        has_inline_frames: symbolizer.has_inline_frames(),
    }
}

/// Where a timer event happened, from its site: the user stack with the caller the unwind
/// missed put back, or a synthetic frame for timers that predate the attach.
fn site_frames(site: &SiteKey, snapshot: &Snapshot) -> Vec<u64> {
    let stack = snapshot
        .stacks
        .get(&site.stack)
        .map_or(&[][..], Vec::as_slice);
    let caller = (site.caller != 0).then_some(site.caller);
    stack
        .first()
        .into_iter()
        .copied()
        .chain(caller)
        .chain(stack.iter().skip(1).copied())
        .collect()
}

/// The runtime's code between a `go` statement and the goroutine probe (which sits in newproc's
/// closure on the system stack): left out of creation stacks, which then start at the `go`
/// statement.
const GOROUTINE_CREATION_FRAMES: [&str; 3] = [
    "runtime.newproc.func1",
    "runtime.systemstack",
    "runtime.newproc",
];

pub(crate) struct Encoder<'a> {
    pub(crate) builder: ProfileBuilder,
    symbolizer: &'a mut Symbolizer,
    libraries: &'a Libraries,
    mapping_id: u64,
    mapping: &'a MappingSpec,
    /// pprof mapping ids of the shared libraries used so far, by path.
    library_mappings: HashMap<String, u64>,
}

impl<'a> Encoder<'a> {
    /// An encoder into `builder`, whose main mapping (the target's binary) is `mapping`.
    pub(crate) fn new(
        mut builder: ProfileBuilder,
        symbolizer: &'a mut Symbolizer,
        libraries: &'a Libraries,
        mapping: &'a MappingSpec,
    ) -> Self {
        let mapping_id = builder.add_mapping(mapping.clone());
        Self {
            builder,
            symbolizer,
            libraries,
            mapping_id,
            mapping,
            library_mappings: HashMap::new(),
        }
    }

    /// One location for a stack of runtime addresses, leaf first.
    pub(crate) fn stack(&mut self, pcs: &[u64]) -> Vec<u64> {
        let pcs = &pcs[..self.goroutine_root_end(pcs)];
        pcs.iter()
            .enumerate()
            .map(|(depth, &pc)| {
                // Every frame but the leaf is a return address: look up the call itself.
                let address = if depth == 0 { pc } else { pc.saturating_sub(1) };
                self.location(address)
            })
            .collect()
    }

    /// The locations of a goroutine's creation site: its creating stack from the `go`
    /// statement on (the runtime's creation code that the probe sits in is left out), or, for
    /// a goroutine created before the attach, its `gopc` under a synthetic frame.
    fn goroutine_creation_locations(&mut self, site: &SiteKey, snapshot: &Snapshot) -> Vec<u64> {
        if site.flags & site_flag::UNKNOWN_ORIGIN != 0 {
            // gopc is a return address: the `go` statement is the call before it.
            let mut locations: Vec<u64> = (site.caller != 0)
                .then(|| self.location(site.caller - 1))
                .into_iter()
                .collect();
            locations.extend(self.synthetic(SyntheticFrame::GoroutineCreatedBeforeAttach));
            return locations;
        }
        let pcs = snapshot
            .stacks
            .get(&site.stack)
            .map_or(&[][..], Vec::as_slice);
        let runtime_frames = pcs
            .iter()
            .enumerate()
            .take_while(|&(depth, &pc)| {
                let address = if depth == 0 { pc } else { pc.saturating_sub(1) };
                self.symbolizer
                    .frames(address)
                    .last()
                    .is_some_and(|f| GOROUTINE_CREATION_FRAMES.contains(&f.function.as_str()))
            })
            .count();
        let from_go_statement = &pcs[runtime_frames..];
        let from_go_statement = &from_go_statement[..self.goroutine_root_end(from_go_statement)];
        // All of them return addresses now.
        from_go_statement
            .iter()
            .map(|&pc| self.location(pc.saturating_sub(1)))
            .collect()
    }

    /// How many frames of a stack to keep: up to the goroutine's root (`runtime.main`,
    /// `runtime.goexit`, `runtime.mstart`). Go <= 1.13 starts goroutines with a stale frame
    /// pointer, so the unwind goes on past the root into whatever that register held.
    fn goroutine_root_end(&mut self, pcs: &[u64]) -> usize {
        const GOROUTINE_ROOTS: [&str; 3] = ["runtime.main", "runtime.goexit", "runtime.mstart"];
        for (depth, &pc) in pcs.iter().enumerate() {
            let address = if depth == 0 { pc } else { pc.saturating_sub(1) };
            if !(self.mapping.start..self.mapping.limit).contains(&address) {
                continue;
            }
            let outermost = self.symbolizer.frames(address).last();
            if outermost.is_some_and(|f| GOROUTINE_ROOTS.contains(&f.function.as_str())) {
                return depth + 1;
            }
        }
        pcs.len()
    }

    /// The location of one address: in the binary (DWARF or pclntab), in a shared library
    /// (its symbol table), or bare.
    fn location(&mut self, address: u64) -> u64 {
        if (self.mapping.start..self.mapping.limit).contains(&address) {
            let frames = self.symbolizer.frames(address).to_vec();
            return self.builder.location(self.mapping_id, address, &frames);
        }
        let Some((library, function)) = self.libraries.lookup(address) else {
            return self.builder.location(0, address, &[]);
        };
        let frames: Vec<Frame> = function
            .map(|name| Frame {
                function: name.to_owned(),
                system_name: name.to_owned(),
                file: library.path.clone(),
                ..Frame::default()
            })
            .into_iter()
            .collect();
        let mapping_id = match self.library_mappings.get(&library.path) {
            Some(&id) => id,
            None => {
                let id = self.builder.add_mapping(MappingSpec {
                    start: library.start,
                    limit: library.end,
                    offset: library.offset,
                    file: library.path.clone(),
                    has_functions: true,
                    ..MappingSpec::default()
                });
                self.library_mappings.insert(library.path.clone(), id);
                id
            }
        };
        self.builder.location(mapping_id, address, &frames)
    }

    /// A single made-up frame, for things that have no stack of their own.
    fn synthetic(&mut self, frame: SyntheticFrame) -> Vec<u64> {
        let frame = Frame {
            function: frame.to_string(),
            system_name: frame.to_string(),
            ..Frame::default()
        };
        vec![self.builder.location(0, 0, &[frame])]
    }

    /// A goroutine's current stack, as Go's goroutine profile shows it: the compiler's wrappers
    /// (the `go f(x)` one, `f.gowrapN` or `f.funcN`) left out, as Go's unwinder elides them
    /// (by `funcID`, else by the `gowrapN` name), and `runtime.goexit` too, as runtime/pprof
    /// stops there; a synthetic frame for a goroutine whose stack is not in memory.
    pub(crate) fn goroutine_locations(&mut self, stack: &GoroutineStack) -> Vec<u64> {
        let pcs = match stack {
            GoroutineStack::Running => return self.synthetic(SyntheticFrame::GoroutineRunning),
            GoroutineStack::Syscall { pc } => {
                let mut locations = self.stack(&[pc.saturating_sub(1)]);
                locations.extend(self.synthetic(SyntheticFrame::SyscallNotWalked));
                return locations;
            }
            GoroutineStack::Walked { pcs, .. } => pcs,
        };
        let pcs = &pcs[..self.goroutine_root_end(pcs)];
        let mut locations = Vec::with_capacity(pcs.len());
        for (depth, &pc) in pcs.iter().enumerate() {
            // The reader gave the innermost pc as Go looks it up; the rest are return addresses.
            let address = if depth == 0 { pc } else { pc.saturating_sub(1) };
            if !(self.mapping.start..self.mapping.limit).contains(&address) {
                locations.push(self.location(address));
                continue;
            }
            let wrapper = self.symbolizer.is_wrapper(address);
            let mut frames = self.symbolizer.frames(address).to_vec();
            // The physical function is the last frame; inlined calls into it stay.
            if wrapper == Some(true) {
                frames.pop();
            }
            frames.retain(|f| {
                f.function != "runtime.goexit"
                    && (wrapper.is_some() || !goroutine_read::is_go_statement_wrapper(&f.function))
            });
            if !frames.is_empty() {
                locations.push(self.builder.location(self.mapping_id, address, &frames));
            }
        }
        locations
    }

    fn timer_locations(&mut self, site: &SiteKey, snapshot: &Snapshot) -> Vec<u64> {
        if site.flags & site_flag::UNKNOWN_ORIGIN != 0 && site.event == event::FIRED {
            // The fire-time stack is the scheduler's and says nothing about the timer's origin.
            return self.synthetic(SyntheticFrame::TimerCreatedBeforeAttach);
        }
        if site.flags & site_flag::STACK_SAMPLED_OUT != 0 {
            let mut locations = self.stack(&site_frames(site, snapshot));
            locations.extend(self.synthetic(SyntheticFrame::StackSampledOut));
            return locations;
        }
        self.stack(&site_frames(site, snapshot))
    }

    fn mapping_sample(&mut self, origin: Origin, values: Values, snapshot: &Snapshot) {
        let (locations, class) = match origin {
            Origin::PreExisting(class) => (self.synthetic(SyntheticFrame::PreExisting), class),
            Origin::Call { stack, class } => {
                let pcs = snapshot
                    .stacks
                    .get(&stack.stack)
                    .cloned()
                    .unwrap_or_default();
                let go_pcs = snapshot.stacks.get(&stack.cgo_stack);
                let locations = match go_pcs {
                    // Called from C: keep where the syscall was made, then continue with the Go
                    // stack that entered C (frame pointers cannot be followed through C).
                    Some(go_pcs) => {
                        let mut locations = self.stack(&pcs[..pcs.len().min(1)]);
                        locations.extend(self.synthetic(SyntheticFrame::CCode));
                        locations.extend(self.stack(go_pcs));
                        locations
                    }
                    None => self.stack(&pcs),
                };
                // The runtime's heap arenas are mapped from (*mheap) methods.
                let arena = pcs.iter().enumerate().any(|(depth, &pc)| {
                    let address = if depth == 0 { pc } else { pc.saturating_sub(1) };
                    self.symbolizer
                        .frames(address)
                        .iter()
                        .any(|f| f.function.starts_with("runtime.(*mheap)."))
                });
                (
                    locations,
                    if arena {
                        MappingClass::HeapArena
                    } else {
                        class
                    },
                )
            }
        };
        let label = SampleLabel::Str {
            key: LabelKey::Mapping.to_string(),
            value: class.to_string(),
        };
        self.builder.add_sample(&locations, &values, &[label]);
    }

    /// A C heap site: the libc function, the C code that called it, then the Go stack that
    /// called into C (after the C-code marker); outside a cgo call, the frames walked from
    /// the allocator.
    fn c_heap_locations(&mut self, site: &CHeapSite, snapshot: &Snapshot) -> Vec<u64> {
        let leaf = [site.ip]
            .into_iter()
            .chain((site.caller != 0).then_some(site.caller));
        let leaf: Vec<u64> = leaf.collect();
        if let Some(go_pcs) = snapshot.stacks.get(&site.cgo_stack) {
            let mut locations = self.stack(&leaf);
            locations.extend(self.synthetic(SyntheticFrame::CCode));
            locations.extend(self.stack(go_pcs));
            return locations;
        }
        let walked = snapshot
            .stacks
            .get(&site.stack)
            .map_or(&[][..], Vec::as_slice);
        let pcs: Vec<u64> = leaf
            .iter()
            .copied()
            .chain(walked.iter().skip(1).copied())
            .collect();
        self.stack(&pcs)
    }

    fn labels(&mut self, site: &SiteKey) -> Vec<SampleLabel> {
        let callback = (site.callback != 0)
            .then(|| self.symbolizer.function_name(site.callback))
            .flatten();
        let kind =
            TimerKind::of_callback(callback.as_deref(), site.flags & site_flag::PERIODIC != 0);
        let mut labels = vec![SampleLabel::Str {
            key: LabelKey::Kind.to_string(),
            value: kind.to_string(),
        }];
        if kind == TimerKind::Afterfunc
            && site.user_callback != 0
            && let Some(user) = self.symbolizer.function_name(site.user_callback)
        {
            labels.push(SampleLabel::Str {
                key: LabelKey::Callback.to_string(),
                value: user,
            });
        }
        labels
    }
}

pub fn encode(
    snapshot: &Snapshot,
    recording: &Recording,
    symbolizer: &mut Symbolizer,
    libraries: &Libraries,
) -> Result<Profile, pprof::ProfileError> {
    let mut builder = ProfileBuilder::new(&SampleType::pairs(), SampleType::DEFAULT.as_str());
    let start_nanos = recording
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    builder
        .time_nanos(i64::try_from(start_nanos).unwrap_or(i64::MAX))
        .duration_nanos(i64::try_from(recording.duration.as_nanos()).unwrap_or(i64::MAX));
    for comment in &recording.comments {
        builder.comment(comment.clone());
    }
    builder.comment(drops_comment(DROP_NAMES.into_iter().zip(snapshot.drops)));

    let mut encoder = Encoder::new(builder, symbolizer, libraries, &recording.mapping);
    let mut rows = Vec::new();
    for (site, value) in &snapshot.sites {
        let mut values: Values = [0; SampleType::ALL.len()];
        let sample_type = match site.event {
            event::CREATED => SampleType::TimersCreated,
            event::RESET => SampleType::TimersReset,
            event::STOPPED => SampleType::TimersStopped,
            event::FIRED => SampleType::TimersFired,
            _ => continue,
        };
        values[sample_type.column()] = value.count as i64;
        if site.event == event::FIRED {
            values[SampleType::TimerFireDelay.column()] = value.delay_ns as i64;
        }
        rows.push((*site, values, Vec::new()));
    }
    // Each live timer is its own sample, with what the runtime holds for it; views aggregate
    // them by stack as usual.
    // CLOCK_MONOTONIC: the clock of the runtime's `when`.
    let now = crate::goroutines::monotonic_now();
    for (address, live) in &snapshot.live {
        let mut values: Values = [0; SampleType::ALL.len()];
        values[SampleType::TimersLive.column()] = 1;
        let number = |key: LabelKey, value: i64, unit: &str| SampleLabel::Num {
            key: key.to_string(),
            value,
            unit: unit.into(),
        };
        let details = vec![
            number(LabelKey::Timer, *address as i64, ""),
            number(LabelKey::Goid, live.goid as i64, ""),
            number(LabelKey::Period, live.period, "nanoseconds"),
            // Negative: overdue (a timer a busy P has not run yet).
            number(LabelKey::DueIn, live.when - now, "nanoseconds"),
        ];
        rows.push((live.site, values, details));
    }
    for (site, values, details) in rows {
        let locations = encoder.timer_locations(&site, snapshot);
        let mut labels = encoder.labels(&site);
        labels.extend(details);
        labels.push(source_label(Source::Probe));
        encoder.builder.add_sample(&locations, &values, &labels);
    }
    for (site, value) in &snapshot.sites {
        let sample_type = match site.event {
            event::GOROUTINE_CREATED => SampleType::GoroutinesCreated,
            event::GOROUTINE_EXITED => SampleType::GoroutinesExited,
            _ => continue,
        };
        let mut values: Values = [0; SampleType::ALL.len()];
        values[sample_type.column()] = value.count as i64;
        let locations = encoder.goroutine_creation_locations(site, snapshot);
        encoder
            .builder
            .add_sample(&locations, &values, &[source_label(Source::Probe)]);
    }
    // The snapshot tier: each pending timer at the stack the creation hooks saw create it (else,
    // with every event probed, where it was first seen armed), else at its callback under the
    // synthetic frame of timers made before the attach.
    if let Some(pending) = snapshot.pending.timers() {
        pending_samples(&mut encoder, snapshot, pending);
    }

    if let Some(read) = snapshot.goroutines.snapshot() {
        goroutine_samples(&mut encoder, read);
    }

    let live_bytes = snapshot.mappings.live_bytes();
    let origins: BTreeSet<Origin> = snapshot
        .mappings
        .totals
        .keys()
        .chain(live_bytes.keys())
        .copied()
        .collect();
    for origin in origins {
        let totals = snapshot
            .mappings
            .totals
            .get(&origin)
            .copied()
            .unwrap_or_default();
        let mut values: Values = [0; SampleType::ALL.len()];
        values[SampleType::MmapCalls.column()] = totals.mmap_calls as i64;
        values[SampleType::MmapBytes.column()] = totals.mapped_bytes as i64;
        values[SampleType::MunmapBytes.column()] = totals.unmapped_bytes as i64;
        values[SampleType::MmapLiveBytes.column()] =
            live_bytes.get(&origin).copied().unwrap_or(0) as i64;
        encoder.mapping_sample(origin, values, snapshot);
    }
    let c_sites: BTreeSet<CHeapSite> = snapshot
        .c_heap
        .allocated
        .keys()
        .chain(snapshot.c_heap.live.keys())
        .copied()
        .collect();
    for site in c_sites {
        let mut values: Values = [0; SampleType::ALL.len()];
        let bytes = |totals: &std::collections::HashMap<CHeapSite, probe_common::CHeapTotals>| {
            totals.get(&site).map_or(0, |t| t.bytes as i64)
        };
        values[SampleType::CHeapAllocBytes.column()] = bytes(&snapshot.c_heap.allocated);
        values[SampleType::CHeapLiveBytes.column()] = bytes(&snapshot.c_heap.live);
        let locations = encoder.c_heap_locations(&site, snapshot);
        encoder.builder.add_sample(&locations, &values, &[]);
    }
    tracing::debug!(
        "symbolize: {} addresses, Go frames from the {}",
        encoder.symbolizer.addresses(),
        encoder.symbolizer.source().label()
    );
    let profile = encoder.builder.build()?;
    tracing::debug!(
        "encode: {} samples, {} locations, {} functions",
        profile.sample.len(),
        profile.location.len(),
        profile.function.len()
    );
    Ok(profile)
}

/// Pending timers that get a sample each, with their own labels (`timer`, `due_in`, `p`); a
/// process with more gets one sample per creation site, kind, callback and period instead
/// (comment `timers_pending_grouped`), so that a million timers cost a profile the size of their
/// sites, not of the timers.
pub const PENDING_SAMPLES_EACH: usize = 10_000;

/// Pending timers that share where they were created, what they run and their period.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PendingGroup<'t> {
    /// The creation seen by the probes; `None`: created before the attach (or forgotten).
    created_at: Option<SiteKey>,
    kind: TimerKind,
    callback: &'t str,
    /// AfterFunc: the user's function.
    user: Option<&'t str>,
    period: i64,
}

/// The `timers_pending` samples of a snapshot read: per timer, or per [`PendingGroup`] above
/// [`PENDING_SAMPLES_EACH`] timers.
fn pending_samples(encoder: &mut Encoder<'_>, snapshot: &Snapshot, pending: &TimerSnapshot) {
    let live: HashMap<u64, &probe_common::LiveTimer> =
        snapshot.live.iter().map(|(a, l)| (*a, l)).collect();
    let mut index: HashMap<PendingGroup<'_>, usize> = HashMap::new();
    let mut groups: Vec<(PendingGroup<'_>, Vec<&PendingTimer>)> = Vec::new();
    for timer in &pending.timers {
        let kind = TimerKind::of_callback(Some(&timer.callback), timer.period > 0);
        let created_at = snapshot
            .creations
            .get(&timer.address)
            .map(|creation| SiteKey {
                event: event::CREATED,
                hook: creation.hook,
                stack: creation.stack,
                caller: creation.caller,
                flags: creation.flags,
                ..SiteKey::default()
            })
            .or_else(|| live.get(&timer.address).map(|live| live.site));
        let group = PendingGroup {
            created_at,
            kind,
            callback: &timer.callback,
            user: timer
                .function
                .as_deref()
                .filter(|_| kind == TimerKind::Afterfunc),
            period: timer.period,
        };
        let at = *index.entry(group).or_insert_with(|| {
            groups.push((group, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(timer);
    }
    let each = pending.timers.len() <= PENDING_SAMPLES_EACH;
    if !each {
        encoder
            .builder
            .comment(CommentKey::TimersPendingGrouped.comment(pending.timers.len()));
    }
    let number = |key: LabelKey, value: i64, unit: &str| SampleLabel::Num {
        key: key.to_string(),
        value,
        unit: unit.into(),
    };
    for (group, timers) in groups {
        let locations = match group.created_at {
            Some(site) => encoder.timer_locations(&site, snapshot),
            None => {
                let name = group.user.unwrap_or(group.callback).to_owned();
                let frame = Frame {
                    function: name.clone(),
                    system_name: name,
                    ..Frame::default()
                };
                let mut locations = vec![encoder.builder.location(0, 0, &[frame])];
                locations.extend(encoder.synthetic(SyntheticFrame::TimerCreatedBeforeAttach));
                locations
            }
        };
        let mut labels = vec![SampleLabel::Str {
            key: LabelKey::Kind.to_string(),
            value: group.kind.to_string(),
        }];
        if let Some(user) = group.user {
            labels.push(SampleLabel::Str {
                key: LabelKey::Callback.to_string(),
                value: user.to_owned(),
            });
        }
        labels.push(number(LabelKey::Period, group.period, "nanoseconds"));
        labels.push(source_label(Source::Snapshot));
        let mut values: Values = [0; SampleType::ALL.len()];
        if !each {
            values[SampleType::TimersPending.column()] = timers.len() as i64;
            encoder.builder.add_sample(&locations, &values, &labels);
            continue;
        }
        values[SampleType::TimersPending.column()] = 1;
        for timer in timers {
            let mut labels = labels.clone();
            labels.extend([
                number(LabelKey::Timer, timer.address as i64, ""),
                number(LabelKey::DueIn, timer.when - pending.now, "nanoseconds"),
                number(LabelKey::P, i64::from(timer.p), ""),
            ]);
            encoder.builder.add_sample(&locations, &values, &labels);
        }
    }
}

/// Label `source`: which tier produced a sample.
fn source_label(source: Source) -> SampleLabel {
    SampleLabel::Str {
        key: LabelKey::Source.to_string(),
        value: source.to_string(),
    }
}

/// One `goroutines` sample per current stack, state, creation site and time waited (label
/// `source=snapshot`), its value the number of goroutines so.
fn goroutine_samples(encoder: &mut Encoder<'_>, read: &GoroutineSnapshot) {
    let mut creators: HashMap<u64, String> = HashMap::new();
    let mut groups: std::collections::BTreeMap<(&GoroutineStack, &str, String, Option<i64>), i64> =
        std::collections::BTreeMap::new();
    for g in &read.goroutines {
        let created_by = creators
            .entry(g.gopc)
            .or_insert_with(|| goroutine_read::created_by(encoder.symbolizer, g))
            .clone();
        // `waitsince` is set by GC stack scans only: 0 until one saw the goroutine blocked.
        let waited = (g.waitsince > 0 && g.state != "running")
            .then(|| (read.now - g.waitsince).max(0) / 1_000_000_000);
        *groups
            .entry((&g.stack, g.state, created_by, waited))
            .or_insert(0) += 1;
    }
    for ((stack, state, created_by, waited), count) in groups {
        let mut values: Values = [0; SampleType::ALL.len()];
        values[SampleType::Goroutines.column()] = count;
        let locations = encoder.goroutine_locations(stack);
        let text = |key: LabelKey, value: String| SampleLabel::Str {
            key: key.to_string(),
            value,
        };
        let mut labels = vec![text(LabelKey::WaitReason, state.to_owned())];
        if !created_by.is_empty() {
            labels.push(text(LabelKey::CreatedBy, created_by));
        }
        if let Some(seconds) = waited {
            labels.push(SampleLabel::Num {
                key: LabelKey::WaitSeconds.to_string(),
                value: seconds,
                unit: "seconds".into(),
            });
        }
        labels.push(source_label(Source::Snapshot));
        encoder.builder.add_sample(&locations, &values, &labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_caller_goes_after_the_probed_frame() {
        let mut snapshot = Snapshot::default();
        snapshot.stacks.insert(7, vec![0x1000, 0x3000, 0x4000]);
        let site = SiteKey {
            stack: 7,
            caller: 0x2000,
            ..SiteKey::default()
        };
        assert_eq!(
            site_frames(&site, &snapshot),
            vec![0x1000, 0x2000, 0x3000, 0x4000]
        );
        let in_body = SiteKey {
            stack: 7,
            caller: 0,
            ..SiteKey::default()
        };
        assert_eq!(
            site_frames(&in_body, &snapshot),
            vec![0x1000, 0x3000, 0x4000]
        );
        let lost = SiteKey {
            stack: probe_common::NO_STACK,
            caller: 0x2000,
            ..SiteKey::default()
        };
        assert_eq!(site_frames(&lost, &snapshot), vec![0x2000]);
    }
}
