//! The words timerscope's profiles are written in, shared by the recorder that writes them and the
//! analyzer that reads them back: sample types, comment keys, label keys and values, synthetic
//! frames, and the timer facts the comments carry. Each has one string form, defined here once,
//! so the two sides cannot disagree. The names are part of the CLI contract (README).

use std::fmt;
use std::str::FromStr;

/// An enum whose variants each have exactly one string form: `as_str`, `Display`, `AsRef<str>`,
/// `FromStr` (which accepts exactly those forms) and `ALL`, in declaration order.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownWord { what: stringify!($name), word: s.to_owned() })
            }
        }
    };
}

/// A string that is none of a vocabulary enum's forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a known {what}")]
pub struct UnknownWord {
    what: &'static str,
    word: String,
}

string_enum! {
    /// The sample types of timerscope's profiles, in value order (`go tool pprof -sample_index`).
    pub enum SampleType {
        /// Timers created (NewTimer, After, AfterFunc, NewTicker), at the creating stack.
        TimersCreated => "timers_created",
        /// Re-arms (Reset, Sleep, network deadlines), at the resetting stack.
        TimersReset => "timers_reset",
        /// Stop calls, at the stopping stack.
        TimersStopped => "timers_stopped",
        /// Callbacks run, at the stack that created the timer.
        TimersFired => "timers_fired",
        /// Timers still pending when the recording ended, at their creating stack.
        TimersLive => "timers_live",
        /// Total lateness of fires (run time minus due time).
        TimerFireDelay => "timer_fire_delay",
        /// Successful mmap calls.
        MmapCalls => "mmap_calls",
        /// Bytes mapped (page-rounded).
        MmapBytes => "mmap_bytes",
        /// Bytes unmapped (by munmap or replaced by MAP_FIXED).
        MunmapBytes => "munmap_bytes",
        /// Bytes still mapped at the end, at the stack that mapped them.
        MmapLiveBytes => "mmap_live_bytes",
        /// Timers pending in the runtime's own timer heaps, read from process memory at the end
        /// (label `source=snapshot`), at their creating stack or their callback.
        TimersPending => "timers_pending",
        /// Goroutines read from process memory at the end, at their current stack (labels
        /// `wait_reason`, `created_by`, numeric `wait_seconds`).
        Goroutines => "goroutines",
        /// Goroutines created during the recording, at the creating stack.
        GoroutinesCreated => "goroutines_created",
        /// Goroutines that exited during the recording, at the stack that created them.
        GoroutinesExited => "goroutines_exited",
        /// C heap bytes (libc malloc and friends) allocated while recorded and not freed by
        /// its end, at the allocating stack (the Go stack that called into C).
        CHeapLiveBytes => "c_heap_live_bytes",
        /// C heap bytes allocated while recorded, freed or not.
        CHeapAllocBytes => "c_heap_alloc_bytes",
    }
}

impl SampleType {
    /// The default sample type of timerscope's profiles.
    pub const DEFAULT: SampleType = SampleType::TimersLive;

    pub const fn unit(self) -> &'static str {
        match self {
            SampleType::TimerFireDelay => "nanoseconds",
            SampleType::MmapBytes
            | SampleType::MunmapBytes
            | SampleType::MmapLiveBytes
            | SampleType::CHeapLiveBytes
            | SampleType::CHeapAllocBytes => "bytes",
            _ => "count",
        }
    }

    /// Its position in every sample's values.
    pub fn column(self) -> usize {
        SampleType::ALL
            .iter()
            .position(|&t| t == self)
            .expect("every variant is in ALL")
    }

    /// `(type, unit)` pairs of every sample type, in value order, for the builder.
    pub fn pairs() -> Vec<(&'static str, &'static str)> {
        SampleType::ALL
            .iter()
            .map(|t| (t.as_str(), t.unit()))
            .collect()
    }
}

/// Sample types of Go's own profiles (`net/http/pprof`) that the analysis has rules for.
pub mod go_sample_type {
    /// Heap profiles: bytes in use.
    pub const INUSE_SPACE: &str = "inuse_space";
    /// Goroutine profiles.
    pub const GOROUTINE: &str = "goroutine";
}

string_enum! {
    /// Keys of the `key=value` comments timerscope writes into its profiles.
    pub enum CommentKey {
        /// The target's Go version as its build info records it, e.g. `go1.20.7 X:boringcrypto`.
        GoVersion => "go_version",
        /// [`TimerFamily`].
        TimerFamily => "timer_family",
        /// [`ChannelMode`].
        TimerChannelMode => "timer_channel_mode",
        /// Where the struct offsets came from: `dwarf` or `table`.
        StructOffsets => "struct_offsets",
        /// Where Go frames came from: `pclntab`, `dwarf` or `symtab`.
        Symbols => "symbols",
        /// The probed functions, `symbol+offset`, comma-separated.
        Hooks => "hooks",
        /// Hook functions the binary does not contain.
        MissingHooks => "missing_hooks",
        /// The recorded process.
        Pid => "pid",
        /// [`CaptureTier`] at the end of the profile's interval.
        CaptureTier => "capture_tier",
        /// Hooks the overhead budget detached, `symbol+offset`, comma-separated.
        DetachedHooks => "detached_hooks",
        /// Hooks whose stack walks are sampled, `symbol+offset/N` (one walk in N hits).
        SampledStacks => "sampled_stacks",
        /// Hits whose stack walk was sampled out (their events are counted at the caller).
        StacksSampledOut => "stacks_sampled_out",
        /// The target's CPU time in timerscope's probes per second of wall time, measured over
        /// the last budget check: programs' run time plus hits times the trap cost.
        ProbeOverheadRatio => "probe_overhead_ratio",
        /// `--max-overhead` as a ratio of one CPU.
        MaxOverheadRatio => "max_overhead_ratio",
        /// Measured cost of one uprobe hit's trap to the probed thread, in nanoseconds.
        UprobeTrapNs => "uprobe_trap_ns",
        /// One step down the overhead budget took: `capture_step=<unix seconds> <what>`.
        CaptureStep => "capture_step",
        /// Why the recording ended.
        StoppedBy => "stopped_by",
        /// Go <= 1.13: goroutines that ran a timer callback while recorded.
        TimerprocGoroutines => "timerproc_goroutines",
        /// Go <= 1.13: timer callbacks run.
        TimerprocCallbacks => "timerproc_callbacks",
        /// Go <= 1.13: total time inside timer callbacks.
        TimerprocBusyNs => "timerproc_busy_ns",
        /// Go <= 1.13: time inside callbacks per timer goroutine, busiest first.
        TimerprocBusyNsEach => "timerproc_busy_ns_each",
        /// [`MemoryNumbers`] when the recording (or watch interval) started.
        MemoryStart => "memory_start",
        /// [`MemoryNumbers`] when it ended.
        MemoryEnd => "memory_end",
        /// Whether the C heap probes ran: `on`, `off` (not asked for), `no-libc` (the target
        /// links none), `detached` (removed while running, over the overhead budget), `failed`.
        CHeap => "c_heap",
        /// The probed libc and its probe points, `symbol+offset`, `(stepped)` where the kernel
        /// single-steps the probed instruction.
        CHeapProbes => "c_heap_probes",
        /// Whether the goroutine probes (goroutines created and exited, by creating stack) ran:
        /// `on`, `off` (not asked for), `detached` (removed while running, over the overhead
        /// budget), `failed` (e.g. Go <= 1.16).
        GoroutineProbes => "goroutine_probes",
        /// `on`: mmap, munmap and mremap calls probed, each at its stack; `off`: the mappings
        /// listed from /proc/PID/maps at each profile, all `[pre-existing]`, no calls counted.
        MmapProbes => "mmap_probes",
        /// The goroutine probe points, `symbol+offset`: creation, then exit.
        GoroutineHooks => "goroutine_hooks",
        /// The read of the goroutines (`goroutines` samples): `ok goroutines=N running=N
        /// syscall_unwalked=N torn=N unreadable=N truncated=N`, `refused: REASON` or
        /// `failed: REASON`.
        GoroutineSnapshot => "goroutine_snapshot",
        /// The read of the runtime's timer heaps: `ok timers=N inconsistent=M moving=K`,
        /// `refused (probes only): REASON` (the binary's layout cannot be read; pending timers come
        /// from the probes' `timers_live`) or `failed: REASON`.
        Snapshot => "snapshot",
        /// Timer creations the creation map forgot to make room for newer ones (least recently
        /// created first; `--max-creations`): a pending timer whose creation was forgotten is
        /// counted under its callback, as if created before the attach.
        CreationsEvicted => "creations_evicted",
        /// The pending timers of a snapshot read too many for a sample each (more than 10,000):
        /// their `timers_pending` samples count the timers of each creation site, kind, callback
        /// and period, without the per-timer labels `timer`, `due_in` and `p`.
        TimersPendingGrouped => "timers_pending_grouped",
    }
}

/// The process's memory at one moment: RSS from `/proc`, the runtime's own numbers read from
/// its memory (the `runtime.MemStats` fields of the same names), and the goroutine count. A
/// number that could not be read is absent. Written as the value of comment `memory_start` /
/// `memory_end`: `rss:N heap_alloc:N ...`, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryNumbers {
    pub rss: Option<u64>,
    pub heap_alloc: Option<u64>,
    pub heap_inuse: Option<u64>,
    pub heap_sys: Option<u64>,
    pub heap_released: Option<u64>,
    pub stack_inuse: Option<u64>,
    pub sys: Option<u64>,
    pub goroutines: Option<u64>,
}

impl MemoryNumbers {
    const FIELDS: [&'static str; 8] = [
        "rss",
        "heap_alloc",
        "heap_inuse",
        "heap_sys",
        "heap_released",
        "stack_inuse",
        "sys",
        "goroutines",
    ];

    fn slots(&mut self) -> [&mut Option<u64>; 8] {
        [
            &mut self.rss,
            &mut self.heap_alloc,
            &mut self.heap_inuse,
            &mut self.heap_sys,
            &mut self.heap_released,
            &mut self.stack_inuse,
            &mut self.sys,
            &mut self.goroutines,
        ]
    }

    /// The comment `key=rss:N heap_alloc:N ...` (absent numbers left out).
    pub fn comment(mut self, key: CommentKey) -> String {
        let words: Vec<String> = Self::FIELDS
            .iter()
            .zip(self.slots())
            .filter_map(|(name, value)| Some(format!("{name}:{}", (*value)?)))
            .collect();
        key.comment(words.join(" "))
    }

    /// Reads a comment value written by [`MemoryNumbers::comment`]; unknown words are skipped.
    pub fn parse(value: &str) -> MemoryNumbers {
        let mut numbers = MemoryNumbers::default();
        for word in value.split_whitespace() {
            let Some((name, n)) = word.split_once(':') else {
                continue;
            };
            let Some(slot) = Self::FIELDS.iter().position(|f| *f == name) else {
                continue;
            };
            if let Ok(n) = n.parse() {
                *numbers.slots()[slot] = Some(n);
            }
        }
        numbers
    }
}

impl CommentKey {
    /// The comment `key=value`.
    pub fn comment(self, value: impl fmt::Display) -> String {
        format!("{self}={value}")
    }
}

/// The comment that lists the losses by reason: `drops: reason=n reason=n ...`.
pub const DROPS_COMMENT_PREFIX: &str = "drops: ";

/// The drops comment for `(reason, count)` pairs.
pub fn drops_comment<'a>(drops: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let reasons: Vec<String> = drops.into_iter().map(|(r, n)| format!("{r}={n}")).collect();
    format!("{DROPS_COMMENT_PREFIX}{}", reasons.join(" "))
}

/// `(reason, count)` pairs of a drops comment; `None` for any other comment.
pub fn parse_drops_comment(comment: &str) -> Option<Vec<(String, u64)>> {
    let reasons = comment.strip_prefix(DROPS_COMMENT_PREFIX)?;
    reasons
        .split_whitespace()
        .map(|pair| {
            let (reason, n) = pair.split_once('=')?;
            Some((reason.to_owned(), n.parse().ok()?))
        })
        .collect()
}

string_enum! {
    /// Keys of per-sample labels.
    pub enum LabelKey {
        /// [`TimerKind`], on every timer sample.
        Kind => "kind",
        /// The user function an AfterFunc timer keeps alive.
        Callback => "callback",
        /// [`MappingClass`], on every mapping sample.
        Mapping => "mapping",
        /// A live timer's address (numeric).
        Timer => "timer",
        /// The goroutine that armed a live timer (numeric).
        Goid => "goid",
        /// A live timer's period, 0 unless it is a ticker (numeric, nanoseconds).
        Period => "period",
        /// How long until a live timer is due; negative when overdue (numeric, nanoseconds).
        DueIn => "due_in",
        /// Which capture tier produced a sample: [`Source`].
        Source => "source",
        /// The P whose timer heap holds a pending timer (numeric).
        P => "p",
        /// Why a goroutine is parked, as Go names it (`chan receive`, `select`, ...).
        WaitReason => "wait_reason",
        /// The function and line of the `go` statement that created a goroutine, as
        /// `function (file:line)`.
        CreatedBy => "created_by",
        /// How long a goroutine has been waiting, as far as the runtime knows (numeric, seconds).
        WaitSeconds => "wait_seconds",
    }
}

string_enum! {
    /// Which capture tier produced a sample (label `source`).
    pub enum Source {
        /// Read from the runtime's own structures in the process's memory.
        Snapshot => "snapshot",
        /// Counted by the eBPF probes.
        Probe => "probe",
    }
}

/// The `snapshot` comment's value for a successful read: `ok timers=N inconsistent=M
/// moving=K` (`moving`: heaps kept as read while they changed).
pub fn snapshot_ok(timers: usize, inconsistent: u64, moving: u32) -> String {
    format!("ok timers={timers} inconsistent={inconsistent} moving={moving}")
}

/// What a `snapshot=ok ...` comment counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOk {
    pub timers: u64,
    /// Timers or heaps left out because they changed while read.
    pub inconsistent: u64,
    /// Heaps kept as read while they changed; 0 in profiles written before it was counted.
    pub moving: u64,
}

/// The counts of a `snapshot=ok ...` comment; `None` for any other comment.
pub fn parse_snapshot_ok(comment: &str) -> Option<SnapshotOk> {
    let rest = comment
        .strip_prefix(CommentKey::Snapshot.as_str())?
        .strip_prefix("=ok ")?;
    let mut fields = rest.split_whitespace();
    let timers = fields.next()?.strip_prefix("timers=")?.parse().ok()?;
    let inconsistent = fields.next()?.strip_prefix("inconsistent=")?.parse().ok()?;
    let moving = match fields.next() {
        Some(field) => field.strip_prefix("moving=")?.parse().ok()?,
        None => 0,
    };
    Some(SnapshotOk {
        timers,
        inconsistent,
        moving,
    })
}

string_enum! {
    /// What a timer is, from the callback the runtime will call (label `kind`).
    pub enum TimerKind {
        /// `time.NewTimer`, `time.After` (callback `time.sendTime`).
        Timer => "timer",
        /// `time.NewTicker`, `time.Tick` (`time.sendTime` with a period).
        Ticker => "ticker",
        /// `time.AfterFunc`, `context.WithTimeout` (`time.goFunc`).
        Afterfunc => "afterfunc",
        /// `time.Sleep` (`runtime.goroutineReady`).
        Sleep => "sleep",
        /// Network deadlines (`runtime.netpoll*Deadline`).
        Netpoll => "netpoll",
        /// Anything else the runtime arms for itself (the scavenger, ...).
        Runtime => "runtime",
    }
}

impl TimerKind {
    /// The kind a timer whose callback is the function `callback` has.
    pub fn of_callback(callback: Option<&str>, periodic: bool) -> TimerKind {
        match callback {
            Some("time.sendTime") if periodic => TimerKind::Ticker,
            Some("time.sendTime") => TimerKind::Timer,
            Some("time.goFunc") => TimerKind::Afterfunc,
            Some("runtime.goroutineReady") => TimerKind::Sleep,
            Some(name) if name.starts_with("runtime.netpoll") => TimerKind::Netpoll,
            _ => TimerKind::Runtime,
        }
    }
}

string_enum! {
    /// What a mapping is (label `mapping`).
    pub enum MappingClass {
        Anon => "anon",
        File => "file",
        /// MAP_STACK or MAP_GROWSDOWN.
        Stack => "stack",
        /// The Go runtime's own heap arenas, mapped from `runtime.(*mheap)` methods.
        HeapArena => "heap-arena",
        /// The program break's heap (`brk`; glibc's main arena, `[heap]` in /proc/PID/maps).
        Brk => "brk",
    }
}

string_enum! {
    /// Frames timerscope makes up for things that have no stack of their own.
    pub enum SyntheticFrame {
        /// Mappings no probe saw made: those that existed before the attach, or every one when
        /// the mmap probes are off (`mmap_probes=off`).
        PreExisting => "[pre-existing]",
        /// Fires of timers created before the attach: the fire-time stack is the scheduler's.
        TimerCreatedBeforeAttach => "[timer created before attach]",
        /// Between the libc frame that made a syscall and the Go stack that called into C.
        CCode => "[C code: no frame pointers]",
        /// Events of a hook whose stack walks the overhead budget sampled: only the immediate
        /// caller is known.
        StackSampledOut => "[stack sampled out]",
        /// Exits of goroutines created before the attach: only their `go` statement is known.
        GoroutineCreatedBeforeAttach => "[goroutine created before attach]",
        /// A goroutine running on a thread when read: its stack is in that thread's registers.
        GoroutineRunning => "[goroutine running: stack not in memory]",
        /// A goroutine in a system call on Go < 1.23, which saves no frame pointer for it: only
        /// the pc where it entered the call is known.
        SyscallNotWalked => "[in syscall: stack not walked]",
    }
}

string_enum! {
    /// Which timer events the probes capture (`--events`).
    pub enum Events {
        /// Every lifecycle event: create, reset, stop, fire, and the per-P timer loop.
        All => "all",
        /// Only timer creation: no per-scheduler-round, reset, stop or fire hooks.
        Create => "create",
        /// No timer probes (mappings are still traced).
        None => "none",
    }
}

string_enum! {
    /// What the probes capture right now (comment `capture_tier`, metric
    /// `timerscope_capture_tier`): the requested [`Events`], or less after the overhead budget
    /// stepped down.
    pub enum CaptureTier {
        /// Every hook of `--events all`, every stack walked.
        All => "all",
        /// Every creation hook, every stack walked.
        Create => "create",
        /// Every requested hook, but some hooks' stack walks are sampled.
        Sampled => "sampled",
        /// Some requested hooks were detached.
        Reduced => "reduced",
        /// No timer hooks.
        None => "none",
    }
}

string_enum! {
    /// The designs of the Go runtime's timers (comment `timer_family`; docs/go-runtime.md).
    pub enum TimerFamily {
        /// Go 1.12-1.13: 64 timer buckets, each a heap run by its own `runtime.timerproc`
        /// goroutine, which calls the callbacks itself.
        Timerproc => "timerproc",
        /// Go 1.14-1.22 ("family A"): per-P heaps of `runtime.timer` with a status word.
        StatusWord => "A",
        /// Go 1.23+ ("family B"): locked timers; channel timers are heaped only while someone
        /// waits on them.
        Locked => "B",
    }
}

impl TimerFamily {
    /// The family of Go 1.`minor`; `None` for releases before timers had any of these designs
    /// (Go < 1.12, which timerscope does not support).
    pub fn of_go_minor(minor: u32) -> Option<TimerFamily> {
        match minor {
            0..=11 => None,
            12..=13 => Some(TimerFamily::Timerproc),
            14..=22 => Some(TimerFamily::StatusWord),
            _ => Some(TimerFamily::Locked),
        }
    }
}

string_enum! {
    /// How timer channels behave in the process (GODEBUG `asynctimerchan`; comment
    /// `timer_channel_mode`).
    pub enum ChannelMode {
        /// Buffered channels; unreferenced unstopped timers are not collected (Go <= 1.22, or
        /// asynctimerchan=1).
        Async => "async",
        /// The Go 1.23+ default: unbuffered, and unreferenced timers are collected.
        Sync => "sync",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_parses_back_to_itself_and_nothing_else_does() {
        for t in SampleType::ALL {
            assert_eq!(t.as_str().parse::<SampleType>(), Ok(*t));
            assert_eq!(SampleType::pairs()[t.column()].0, t.as_str());
        }
        for f in TimerFamily::ALL {
            assert_eq!(f.to_string().parse::<TimerFamily>(), Ok(*f));
        }
        assert!("C".parse::<TimerFamily>().is_err());
        assert!("timers_live ".parse::<SampleType>().is_err());
        let error = "nope".parse::<TimerKind>().unwrap_err();
        assert_eq!(error.to_string(), "\"nope\" is not a known TimerKind");
    }

    #[test]
    fn memory_numbers_round_trip_through_their_comment() {
        let numbers = MemoryNumbers {
            rss: Some(4096),
            heap_alloc: Some(123),
            goroutines: Some(7),
            ..MemoryNumbers::default()
        };
        let comment = numbers.comment(CommentKey::MemoryEnd);
        assert_eq!(comment, "memory_end=rss:4096 heap_alloc:123 goroutines:7");
        let value = comment.split_once('=').unwrap().1;
        assert_eq!(MemoryNumbers::parse(value), numbers);
        assert_eq!(
            MemoryNumbers::parse("rss:x future:1"),
            MemoryNumbers::default()
        );
    }

    #[test]
    fn families_follow_the_go_release() {
        assert_eq!(TimerFamily::of_go_minor(11), None);
        assert_eq!(TimerFamily::of_go_minor(13), Some(TimerFamily::Timerproc));
        assert_eq!(TimerFamily::of_go_minor(14), Some(TimerFamily::StatusWord));
        assert_eq!(TimerFamily::of_go_minor(22), Some(TimerFamily::StatusWord));
        assert_eq!(TimerFamily::of_go_minor(23), Some(TimerFamily::Locked));
        assert_eq!(TimerFamily::Locked.as_str(), "B");
    }

    #[test]
    fn kinds_follow_the_callback() {
        let kind = |callback, periodic| TimerKind::of_callback(callback, periodic);
        assert_eq!(kind(Some("time.sendTime"), false), TimerKind::Timer);
        assert_eq!(kind(Some("time.sendTime"), true), TimerKind::Ticker);
        assert_eq!(kind(Some("time.goFunc"), false), TimerKind::Afterfunc);
        assert_eq!(
            kind(Some("runtime.goroutineReady"), false),
            TimerKind::Sleep
        );
        assert_eq!(
            kind(Some("runtime.netpollReadDeadline"), false),
            TimerKind::Netpoll
        );
        assert_eq!(
            kind(Some("runtime.(*scavengerState).init.func1"), false),
            TimerKind::Runtime
        );
        assert_eq!(kind(None, false), TimerKind::Runtime);
    }

    #[test]
    fn drops_comments_round_trip() {
        let comment = drops_comment([("stack_map_full", 3), ("read_fault", 0)]);
        assert_eq!(comment, "drops: stack_map_full=3 read_fault=0");
        assert_eq!(
            parse_drops_comment(&comment),
            Some(vec![
                ("stack_map_full".to_owned(), 3),
                ("read_fault".to_owned(), 0)
            ])
        );
        assert_eq!(parse_drops_comment("go_version=go1.25.5"), None);
        assert_eq!(CommentKey::Pid.comment(42), "pid=42");
        let snapshot = CommentKey::Snapshot.comment(snapshot_ok(12, 1, 2));
        assert_eq!(snapshot, "snapshot=ok timers=12 inconsistent=1 moving=2");
        assert_eq!(
            parse_snapshot_ok(&snapshot),
            Some(SnapshotOk {
                timers: 12,
                inconsistent: 1,
                moving: 2
            })
        );
        assert_eq!(
            parse_snapshot_ok("snapshot=ok timers=3 inconsistent=0"),
            Some(SnapshotOk {
                timers: 3,
                inconsistent: 0,
                moving: 0
            })
        );
        assert_eq!(
            parse_snapshot_ok("snapshot=ok timers=3 inconsistent=0 moving=x"),
            None
        );
        assert_eq!(parse_snapshot_ok("snapshot=refused: go1.11"), None);
    }
}
