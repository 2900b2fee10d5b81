//! Stage 2, attach: load the eBPF object with the plan as data, attach one uprobe per hook
//! (scoped to the target pid) and the mmap tracepoint. Dropping [`Probe`] detaches everything.

use std::{collections::HashMap, num::NonZeroU32, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, RingBuf},
    programs::{
        TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use probe_common::{GoroutineHook, HookPlan, TargetConfig};

use crate::{
    cgo::CgoHooks,
    cheap::CHeapHooks,
    plan::{GoroutinePlan, Plan},
};

/// Sizes of the kernel maps; every overflow is counted as a drop, never silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Distinct (event, stack, callback) sites.
    pub sites: u32,
    /// Timers tracked as live at once.
    pub live: u32,
    /// Distinct user stacks.
    pub stacks: u32,
    /// C heap blocks tracked as live at once.
    pub c_blocks: u32,
    /// Timer creations remembered for the snapshot (least recently created evicted first).
    pub creations: u32,
    /// Goroutines created while recorded tracked until their exit.
    pub goroutines: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            sites: 16384,
            live: 65536,
            stacks: 16384,
            c_blocks: 262_144,
            creations: 65536,
            goroutines: 65_536,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "loading the eBPF programs failed (needs root with CAP_SYS_ADMIN, and a kernel with BTF)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("uprobe on {symbol}")]
    Uprobe {
        symbol: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "tracefs is not mounted and cannot be mounted at /sys/kernel/tracing (mount it: mount -t \
         tracefs nodev /sys/kernel/tracing; in a container, also give it CAP_SYS_ADMIN or bind-mount \
         the host's /sys/kernel/tracing)"
    )]
    Tracefs(#[source] std::io::Error),
    #[error(
        "the kernel refused memory for eBPF map {map} ({errno}): raise the memory limit timerscope \
         runs under (its cgroup's memory.max; ulimit -l unlimited on kernels before 5.11) or lower \
         --max-sites, --max-live, --max-stacks and --max-c-blocks"
    )]
    MapMemory { map: String, errno: String },
    #[error(
        "too many open files while attaching the probes ({errno}): each uprobe and map is a file \
         descriptor; raise the limit (ulimit -n 65536, or LimitNOFILE= in the service unit)"
    )]
    OpenFiles { errno: String },
    #[error("pid 0 is not a process")]
    ZeroPid,
}

impl AttachError {
    /// The error as the resource limit it ran into, when it is one: an exhausted descriptor
    /// table (EMFILE, ENFILE) anywhere, or a map the kernel would not allocate (ENOMEM, E2BIG;
    /// EPERM is the RLIMIT_MEMLOCK refusal of kernels before 5.11).
    fn named_limit(self) -> Self {
        let errno = |error: &std::io::Error| {
            let code = error.raw_os_error().unwrap_or(0);
            let name = nix::errno::Errno::from_raw(code);
            format!("{name}")
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&self);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
            {
                return Self::OpenFiles { errno: errno(io) };
            }
            cause = error.source();
        }
        if let Self::Load(aya::EbpfError::MapError(aya::maps::MapError::CreateError {
            name,
            io_error,
        })) = &self
            && matches!(
                io_error.raw_os_error(),
                Some(libc::ENOMEM | libc::E2BIG | libc::EPERM)
            )
        {
            return Self::MapMemory {
                map: name.clone(),
                errno: errno(io_error),
            };
        }
        self
    }

    /// A resource limit of the host (memory for maps, file descriptors), not a bug or a refusal.
    pub fn is_resource_limit(&self) -> bool {
        matches!(self, Self::MapMemory { .. } | Self::OpenFiles { .. })
    }
}

/// Loaded and attached probes for one target process.
pub struct Probe {
    pub ebpf: Ebpf,
    /// Completed mmap-family calls, drained by [`crate::collect::drain_mmap_events`].
    pub mmap_events: RingBuf<MapData>,
    /// Each timer hook's uprobe link, by hook index; `None` once detached.
    links: Vec<Option<UProbeLinkId>>,
    /// The goroutine hooks' programs are loaded and attached.
    goroutines_attached: bool,
    /// The uprobe programs loaded (their run time is the target's).
    uprobe_programs: Vec<&'static str>,
}

/// What the kernel's BPF statistics say about a set of programs (cumulative since load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub run_time_ns: u64,
    pub run_count: u64,
}

const TIMER_PROGRAM: &str = "timer_hook";
const CGO_CALL_PROGRAM: &str = "cgo_call";
const CGO_RETURN_PROGRAM: &str = "cgo_return";
/// Tracepoint programs, each named after its `syscalls/` tracepoint.
const MMAP_PROGRAMS: [&str; 6] = [
    "sys_enter_mmap",
    "sys_exit_mmap",
    "sys_enter_munmap",
    "sys_exit_munmap",
    "sys_enter_mremap",
    "sys_exit_mremap",
];

impl Probe {
    /// Loads the programs for `pid` with `plan`, and attaches the timer hooks to `binary` (a path
    /// that names the target's executable, e.g. `/proc/PID/exe`). `bias` is the load bias of
    /// the binary in the target (0 unless PIE). `goroutines` configures the goroutine probes,
    /// which [`Probe::attach_goroutines`] attaches.
    pub fn attach(
        plan: &Plan,
        cgo: Option<&CgoHooks>,
        goroutines: Option<&GoroutinePlan>,
        binary: &Path,
        pid: u32,
        bias: u64,
        sizes: MapSizes,
    ) -> Result<Self, AttachError> {
        // Before anything is loaded: a failure here leaves nothing behind. Later failures drop
        // what was loaded, which detaches it.
        ensure_tracefs()?;
        Self::try_attach(plan, cgo, goroutines, binary, pid, bias, sizes)
            .map_err(AttachError::named_limit)
    }

    fn try_attach(
        plan: &Plan,
        cgo: Option<&CgoHooks>,
        goroutines: Option<&GoroutinePlan>,
        binary: &Path,
        pid: u32,
        bias: u64,
        sizes: MapSizes,
    ) -> Result<Self, AttachError> {
        let pid = NonZeroU32::new(pid).ok_or(AttachError::ZeroPid)?;
        let config = TargetConfig {
            tgid: pid.get(),
            go_func_pc: plan.go_func.map_or(0, |f| f.wrapping_add(bias)),
            timer_fields_end: plan.config.fields_end(),
            g_gopc: goroutines.map_or(0, |g| g.g_gopc),
            ..plan.config
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("SITES", sizes.sites)
            .map_max_entries("LIVE", sizes.live)
            .map_max_entries("STACKS", sizes.stacks)
            .map_max_entries("C_HEAP_BLOCKS", sizes.c_blocks)
            .map_max_entries("CREATIONS", sizes.creations)
            .map_max_entries("C_HEAP_SITES", sizes.sites)
            .map_max_entries("GOROUTINES", sizes.goroutines)
            .load(crate::EBPF_OBJECT)?;

        let mut hooks: Array<_, HookPlan> = Array::try_from(
            ebpf.map_mut("HOOKS")
                .expect("HOOKS is defined in probe-ebpf"),
        )
        .map_err(|source| AttachError::Map {
            name: "HOOKS",
            source,
        })?;
        for (index, hook) in plan.hooks.iter().enumerate() {
            hooks
                .set(index as u32, hook.plan, 0)
                .map_err(|source| AttachError::Map {
                    name: "HOOKS",
                    source,
                })?;
        }

        let program: &mut UProbe = program_mut(&mut ebpf, TIMER_PROGRAM)?;
        program.load().map_err(|source| AttachError::Program {
            name: TIMER_PROGRAM,
            source,
        })?;
        let mut links = Vec::with_capacity(plan.hooks.len());
        for (index, hook) in plan.hooks.iter().enumerate() {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(hook.file_offset),
                // The cookie selects the hook's plan in HOOKS.
                cookie: Some(index as u64),
            };
            let link = program
                .attach(point, binary, UProbeScope::OneProcess(pid))
                .map_err(|source| AttachError::Uprobe {
                    symbol: hook.symbol,
                    source,
                })?;
            links.push(Some(link));
        }

        let mut uprobe_programs = vec![TIMER_PROGRAM];
        if let Some(cgo) = cgo {
            uprobe_programs.extend([CGO_CALL_PROGRAM, CGO_RETURN_PROGRAM]);
            for name in [CGO_CALL_PROGRAM, CGO_RETURN_PROGRAM] {
                let program: &mut UProbe = program_mut(&mut ebpf, name)?;
                program
                    .load()
                    .map_err(|source| AttachError::Program { name, source })?;
            }
            let points = std::iter::once((CGO_CALL_PROGRAM, cgo.call))
                .chain(cgo.returns.iter().map(|&ret| (CGO_RETURN_PROGRAM, ret)));
            for (name, file_offset) in points {
                let program: &mut UProbe = program_mut(&mut ebpf, name)?;
                let location = UProbeAttachLocation::AbsoluteOffset(file_offset);
                program
                    .attach(location, binary, UProbeScope::OneProcess(pid))
                    .map_err(|source| AttachError::Uprobe {
                        symbol: name,
                        source,
                    })?;
            }
        }

        let mmap_events = RingBuf::try_from(
            ebpf.take_map("MMAP_EVENTS")
                .expect("MMAP_EVENTS is defined in probe-ebpf"),
        )
        .map_err(|source| AttachError::Map {
            name: "MMAP_EVENTS",
            source,
        })?;
        set_armed(&mut ebpf, true)?;
        Ok(Self {
            ebpf,
            mmap_events,
            links,
            goroutines_attached: false,
            uprobe_programs,
        })
    }

    /// Detaches one timer hook (by plan index); the others keep counting. Idempotent.
    pub fn detach_hook(&mut self, index: usize) -> Result<(), AttachError> {
        let Some(link) = self.links.get_mut(index).and_then(Option::take) else {
            return Ok(());
        };
        let program: &mut UProbe = program_mut(&mut self.ebpf, TIMER_PROGRAM)?;
        program.detach(link).map_err(|source| AttachError::Program {
            name: TIMER_PROGRAM,
            source,
        })
    }

    /// Whether a timer hook is still attached.
    pub fn hook_attached(&self, index: usize) -> bool {
        self.links.get(index).is_some_and(Option::is_some)
    }

    /// Makes hook `index` walk its stack at one hit in `rate` (1: every hit).
    pub fn set_stack_sampling(&mut self, index: usize, rate: u32) -> Result<(), AttachError> {
        let map_error = |source| AttachError::Map {
            name: "STACK_SAMPLING",
            source,
        };
        let mut sampling: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut("STACK_SAMPLING")
                .expect("STACK_SAMPLING is defined in probe-ebpf"),
        )
        .map_err(map_error)?;
        sampling.set(index as u32, rate, 0).map_err(map_error)
    }

    /// Run time and run count of the uprobe programs, from the kernel's BPF statistics (zero
    /// unless [`enable_run_time_stats`] holds them on).
    pub fn uprobe_stats(&self) -> Result<ProgramStats, AttachError> {
        let mut total = ProgramStats::default();
        for &name in &self.uprobe_programs {
            let info = self
                .ebpf
                .program(name)
                .expect("program is defined in probe-ebpf")
                .info()
                .map_err(|source| AttachError::Program { name, source })?;
            total.run_time_ns += info.run_time().as_nanos() as u64;
            total.run_count += info.run_count();
        }
        Ok(total)
    }
}

/// Turns on the kernel's BPF run-time statistics for as long as the returned descriptor is open
/// (`BPF_ENABLE_STATS`; the kernel counts run time and runs of every program meanwhile).
pub fn enable_run_time_stats() -> Result<std::os::fd::OwnedFd, std::io::Error> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|error| error.io_error)
}

const C_HEAP_ALLOC_PROGRAM: &str = "c_heap_alloc";
const C_HEAP_RETURN_PROGRAM: &str = "c_heap_alloc_return";
const C_HEAP_FREE_PROGRAM: &str = "c_heap_free";
const C_HEAP_UPROBE_PROGRAMS: [&str; 3] = [
    C_HEAP_ALLOC_PROGRAM,
    C_HEAP_RETURN_PROGRAM,
    C_HEAP_FREE_PROGRAM,
];
/// The brk tracepoints belong to the C heap group: glibc's main arena grows by brk.
const C_HEAP_TRACEPOINTS: [&str; 2] = ["sys_enter_brk", "sys_exit_brk"];

impl Probe {
    /// Attaches the C heap probes (libc's allocation functions and brk) as one group, which
    /// [`Probe::detach_c_heap`] removes again. On error the group is left detached.
    pub fn attach_c_heap(&mut self, hooks: &CHeapHooks, pid: u32) -> Result<(), AttachError> {
        let result = self.try_attach_c_heap(hooks, pid);
        if result.is_err() {
            self.detach_c_heap();
        }
        result
    }

    fn try_attach_c_heap(&mut self, hooks: &CHeapHooks, pid: u32) -> Result<(), AttachError> {
        let pid = NonZeroU32::new(pid).ok_or(AttachError::ZeroPid)?;
        // They trap in the target like the timer hooks: the overhead budget counts them.
        self.uprobe_programs.extend(C_HEAP_UPROBE_PROGRAMS);
        let ebpf = &mut self.ebpf;
        for name in C_HEAP_UPROBE_PROGRAMS {
            let program: &mut UProbe = program_mut(ebpf, name)?;
            program
                .load()
                .map_err(|source| AttachError::Program { name, source })?;
        }
        for probe in &hooks.probes {
            let programs: &[&'static str] = if probe.function == probe_common::c_heap_fn::FREE {
                &[C_HEAP_FREE_PROGRAM]
            } else {
                // Entry and return share the probe point: one breakpoint.
                &[C_HEAP_ALLOC_PROGRAM, C_HEAP_RETURN_PROGRAM]
            };
            for &name in programs {
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(probe.file_offset),
                    cookie: Some(u64::from(probe.function)),
                };
                let program: &mut UProbe = program_mut(ebpf, name)?;
                program
                    .attach(point, &hooks.attach_path, UProbeScope::OneProcess(pid))
                    .map_err(|source| AttachError::Uprobe {
                        symbol: probe.symbol,
                        source,
                    })?;
            }
        }
        for name in C_HEAP_TRACEPOINTS {
            let tracepoint: &mut TracePoint = program_mut(ebpf, name)?;
            let program_error = |source| AttachError::Program { name, source };
            tracepoint.load().map_err(program_error)?;
            tracepoint.attach("syscalls", name).map_err(program_error)?;
        }
        Ok(())
    }

    /// Attaches the mmap, munmap and mremap tracepoints. They are `syscalls/` tracepoints: while
    /// any is attached, every system call of every process on the host takes the kernel's
    /// slower traced path (docs/toolchain.md), which is why `watch` asks for them only with
    /// `--mmap`.
    pub fn attach_mmap(&mut self) -> Result<(), AttachError> {
        self.try_attach_mmap().map_err(AttachError::named_limit)
    }

    fn try_attach_mmap(&mut self) -> Result<(), AttachError> {
        for name in MMAP_PROGRAMS {
            let tracepoint: &mut TracePoint = program_mut(&mut self.ebpf, name)?;
            let program_error = |source| AttachError::Program { name, source };
            tracepoint.load().map_err(program_error)?;
            tracepoint.attach("syscalls", name).map_err(program_error)?;
        }
        Ok(())
    }

    /// Detaches the C heap group (unloading its programs); what it collected stays in the maps.
    /// Safe while calls are in flight: a return the kernel already redirected completes
    /// without the program.
    pub fn detach_c_heap(&mut self) {
        self.uprobe_programs
            .retain(|name| !C_HEAP_UPROBE_PROGRAMS.contains(name));
        for name in C_HEAP_UPROBE_PROGRAMS {
            if let Ok(program) = program_mut::<UProbe>(&mut self.ebpf, name) {
                let _ = program.unload();
            }
        }
        for name in C_HEAP_TRACEPOINTS {
            if let Ok(program) = program_mut::<TracePoint>(&mut self.ebpf, name) {
                let _ = program.unload();
            }
        }
    }
}

/// The goroutine programs, indexed by `probe_common::goroutine_hook`.
const GOROUTINE_PROGRAMS: [&str; probe_common::goroutine_hook::COUNT as usize] =
    ["goroutine_created", "goroutine_exited"];

impl Probe {
    /// Attaches the goroutine probes of `plan` to `binary` as one group, which
    /// [`Probe::detach_goroutines`] removes again. On error the group is left detached.
    pub fn attach_goroutines(
        &mut self,
        plan: &GoroutinePlan,
        binary: &Path,
        pid: u32,
    ) -> Result<(), AttachError> {
        let result = self.try_attach_goroutines(plan, binary, pid);
        if result.is_err() {
            self.detach_goroutines();
        }
        result
    }

    fn try_attach_goroutines(
        &mut self,
        plan: &GoroutinePlan,
        binary: &Path,
        pid: u32,
    ) -> Result<(), AttachError> {
        let pid = NonZeroU32::new(pid).ok_or(AttachError::ZeroPid)?;
        let map_error = |source| AttachError::Map {
            name: "GOROUTINE_HOOKS",
            source,
        };
        let mut hooks: Array<_, GoroutineHook> = Array::try_from(
            self.ebpf
                .map_mut("GOROUTINE_HOOKS")
                .expect("GOROUTINE_HOOKS is defined in probe-ebpf"),
        )
        .map_err(map_error)?;
        for (index, hook) in plan.hooks.iter().enumerate() {
            hooks.set(index as u32, hook.hook, 0).map_err(map_error)?;
        }
        // They trap in the target like the timer hooks: the overhead budget counts them.
        self.uprobe_programs.extend(GOROUTINE_PROGRAMS);
        self.goroutines_attached = true;
        for (&name, hook) in GOROUTINE_PROGRAMS.iter().zip(&plan.hooks) {
            let program: &mut UProbe = program_mut(&mut self.ebpf, name)?;
            program
                .load()
                .map_err(|source| AttachError::Program { name, source })?;
            let location = UProbeAttachLocation::AbsoluteOffset(hook.file_offset);
            program
                .attach(location, binary, UProbeScope::OneProcess(pid))
                .map_err(|source| AttachError::Uprobe {
                    symbol: hook.symbol,
                    source,
                })?;
        }
        Ok(())
    }

    /// Detaches the goroutine probes (unloading their programs) together: an exit hook without
    /// its creation hook, or the reverse, would count goroutines as piling up or vanishing.
    /// What they collected stays in the maps.
    pub fn detach_goroutines(&mut self) {
        self.goroutines_attached = false;
        self.uprobe_programs
            .retain(|name| !GOROUTINE_PROGRAMS.contains(name));
        for name in GOROUTINE_PROGRAMS {
            if let Ok(program) = program_mut::<UProbe>(&mut self.ebpf, name) {
                let _ = program.unload();
            }
        }
    }

    /// Hits of the goroutine hooks so far (creations and exits seen), while they are attached.
    pub fn goroutine_hits(&self) -> Option<u64> {
        if !self.goroutines_attached {
            return None;
        }
        crate::collect::goroutine_hits(&self.ebpf)
            .ok()
            .map(|hits| hits.iter().sum())
    }
}

/// Arms or disarms every probe at once (see `ARMED` in probe-ebpf).
fn set_armed(ebpf: &mut Ebpf, armed: bool) -> Result<(), AttachError> {
    let map_error = |source| AttachError::Map {
        name: "ARMED",
        source,
    };
    let mut flag: Array<_, u32> = Array::try_from(
        ebpf.map_mut("ARMED")
            .expect("ARMED is defined in probe-ebpf"),
    )
    .map_err(map_error)?;
    flag.set(0, u32::from(armed), 0).map_err(map_error)
}

/// Maps the probes fill, read by [`crate::collect`].
const PROBE_MAPS: [&str; 12] = [
    "SITES",
    "C_HEAP_SITES",
    "C_HEAP_BLOCKS",
    "LIVE",
    "STACKS",
    "HOOK_HITS",
    "STACKS_SAMPLED_OUT",
    "DROPS",
    "DELAY_HIST",
    "TIMER_WORKERS",
    "CREATIONS",
    "CREATIONS_ADDED",
];

/// The probe's maps, kept after its programs were detached, so a final read sees one consistent
/// state (no event lands between reading the counts and reading the live timers).
pub struct ProbeMaps(HashMap<&'static str, Map>);

impl crate::collect::Maps for ProbeMaps {
    fn get_map(&self, name: &'static str) -> &Map {
        self.0.get(name).expect("map kept at detach")
    }
}

impl Probe {
    /// Stops every program counting at once (`ARMED`); the links stay until [`Probe::detach`].
    pub fn disarm(&mut self) -> Result<(), AttachError> {
        set_armed(&mut self.ebpf, false)
    }

    /// Detaches every uprobe and tracepoint; returns the maps and the mmap ring buffer.
    pub fn detach(mut self) -> (ProbeMaps, RingBuf<MapData>) {
        // Stop counting everywhere at once before the uprobes go away one by one. If the flag
        // cannot be written the map is gone, and so are the programs' effects.
        let _ = set_armed(&mut self.ebpf, false);
        let maps = PROBE_MAPS
            .into_iter()
            .map(|name| {
                (
                    name,
                    self.ebpf
                        .take_map(name)
                        .expect("map is defined in probe-ebpf"),
                )
            })
            .collect();
        // Dropping the programs closes their links: nothing fires after this.
        drop(self.ebpf);
        (ProbeMaps(maps), self.mmap_events)
    }
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, AttachError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .expect("program is defined in probe-ebpf")
        .try_into()
        .map_err(|source| AttachError::Program { name, source })
}

/// Tracepoint ids are read from tracefs; mount it when the system has not (as bpftrace would
/// need too).
fn ensure_tracefs() -> Result<(), AttachError> {
    const TRACEFS: &str = "/sys/kernel/tracing";
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("nodev"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| AttachError::Tracefs(errno.into()))
}
