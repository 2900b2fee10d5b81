//! Stage 1, plan: per-Go-version knowledge as data. Which runtime functions to probe, where each
//! hook finds its values, and the struct offsets the probes read (from the binary's layout,
//! `gobinary::layout`). Adding a Go release is a table edit plus a fixture; nothing here is code
//! per version. The hook tables are docs/go-runtime.md, "Hooks".

use gobinary::{
    GoBinary, GoVersion, RuntimeLayout, Symbol, UnsupportedGo, body,
    layout::{GoroutineLayout, LayoutSource},
    prologue,
};
use pprof::vocabulary::{ChannelMode, Events, TimerFamily};
use probe_common::{
    GoroutineHook, HookPlan, TargetConfig, ValueSource, event, goroutine_hook, hook_flag, reg,
};

/// Where in its function a hook's probe goes, and what decoding that function fills into the
/// hook's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Right after the stack check: once per call, arguments in place (every function hook).
    AfterStackCheck,
    /// On the load of `timer.f` with which Go <= 1.13's timerproc starts running a due timer;
    /// the timer is the load's base register.
    AtCallbackLoad,
    /// Right after Go <= 1.13's `time.Sleep` stores its timer's callback; the timer is the
    /// store's base register.
    AfterCallbackStore,
    /// On timerproc's call of the callback; the worker is timerproc's bucket argument.
    AtCallbackCall,
    /// On the instruction the callback returns to.
    AfterCallbackCall,
    /// On the function's only direct call of this function, where that call's arguments are in
    /// place (Go 1.23+ `time.newTimer` calling `(*timer).modify`: the creation alone).
    AtCallOf(&'static str),
}

struct HookSpec {
    symbol: &'static str,
    placement: Placement,
    plan: HookPlan,
    /// The `--events` tiers that probe this hook.
    tiers: &'static [Events],
}

/// A hook probed right after the stack check, in `--events all`.
const fn at_entry(symbol: &'static str, plan: HookPlan) -> HookSpec {
    HookSpec {
        symbol,
        placement: Placement::AfterStackCheck,
        plan,
        tiers: &[Events::All],
    }
}

/// A creation hook probed right after the stack check: in `--events all` and `create`.
const fn creation_at_entry(symbol: &'static str, plan: HookPlan) -> HookSpec {
    HookSpec {
        tiers: &[Events::All, Events::Create],
        ..at_entry(symbol, plan)
    }
}

const fn reg(slot: u32) -> ValueSource {
    ValueSource::register(slot)
}

/// Argument word `n` (from 0) in Go's stack ABI (Go <= 1.16), at the probe after the stack
/// check: the return address is at 0(SP).
const fn arg(n: u32) -> ValueSource {
    ValueSource::stack(8 + 8 * n)
}

/// A hook whose values are all read from the timer struct.
const fn timer_in(event: u32, timer: ValueSource) -> HookPlan {
    HookPlan {
        event,
        flags: 0,
        timer,
        when: ValueSource::NONE,
        period: ValueSource::NONE,
        callback: ValueSource::NONE,
        arg_data: ValueSource::NONE,
        now: ValueSource::NONE,
        worker: ValueSource::NONE,
    }
}

/// A modify-style hook: `(t, when, period, f, arg any, seq)` in Go's register ABI.
const fn modify(event: u32, flags: u32) -> HookPlan {
    HookPlan {
        event,
        flags,
        timer: reg(reg::RAX),
        when: reg(reg::RBX),
        period: reg(reg::RCX),
        callback: reg(reg::RDI),
        // arg is an `any`: type word in RSI, data word in R8.
        arg_data: reg(reg::R8),
        now: ValueSource::NONE,
        worker: ValueSource::NONE,
    }
}

/// `modtimer(t, when, period, f, arg any, seq)` in the stack ABI: one word each, two for `arg`.
const STACK_MODTIMER: HookPlan = HookPlan {
    timer: arg(0),
    when: arg(1),
    period: arg(2),
    callback: arg(3),
    // arg(4) is the `any`'s type word.
    arg_data: arg(5),
    ..timer_in(event::RESET, ValueSource::NONE)
};

const fn fire(timer: ValueSource, now: ValueSource) -> HookPlan {
    HookPlan {
        now,
        ..timer_in(event::FIRED, timer)
    }
}

/// A hook inside a function body; the placement fills in the register or slot it reads.
const fn in_body(symbol: &'static str, placement: Placement, plan: HookPlan) -> HookSpec {
    HookSpec {
        symbol,
        placement,
        plan: HookPlan {
            flags: plan.flags | hook_flag::IN_BODY,
            ..plan
        },
        tiers: &[Events::All],
    }
}

/// Go 1.12-1.13, stack ABI. Creation is an `addtimer` of a timer that has no bucket yet (a
/// Reset stops the timer and adds it again: that counts as a reset). Sleep arms `g.timer`
/// without calling addtimer. Fires happen inside timerproc, which is also timed per goroutine.
/// Verified live on ibazel 0.10.3 (go1.12.5) and 0.11.1 (go1.13.5).
const TIMERPROC_HOOKS: &[HookSpec] = &[
    creation_at_entry(
        "runtime.addtimer",
        HookPlan {
            flags: hook_flag::CREATE_IF_UNINITIALIZED,
            ..timer_in(event::RESET, arg(0))
        },
    ),
    // Network deadlines.
    at_entry("runtime.modtimer", STACK_MODTIMER),
    at_entry("runtime.deltimer", timer_in(event::STOPPED, arg(0))),
    in_body(
        "time.Sleep",
        Placement::AfterCallbackStore,
        timer_in(event::RESET, ValueSource::NONE),
    ),
    in_body(
        "runtime.timerproc",
        Placement::AtCallbackLoad,
        fire(ValueSource::NONE, ValueSource::MONOTONIC_NOW),
    ),
    in_body(
        "runtime.timerproc",
        Placement::AtCallbackCall,
        timer_in(event::CALLBACK_BEGIN, ValueSource::NONE),
    ),
    in_body(
        "runtime.timerproc",
        Placement::AfterCallbackCall,
        timer_in(event::CALLBACK_END, ValueSource::NONE),
    ),
];

/// Family A in the stack ABI (Go 1.14-1.16): the same functions as 1.17+, arguments on the
/// stack. Verified live on ibazel 0.15.10 (go1.14.2) and etcd 3.5.1 (go1.16.3).
const STACK_STATUS_WORD_HOOKS: &[HookSpec] = &[
    creation_at_entry("runtime.addtimer", timer_in(event::CREATED, arg(0))),
    at_entry("runtime.modtimer", STACK_MODTIMER),
    at_entry("runtime.deltimer", timer_in(event::STOPPED, arg(0))),
    // runOneTimer(pp *p, t *timer, now int64)
    at_entry("runtime.runOneTimer", fire(arg(1), arg(2))),
    at_entry(
        "runtime.checkTimers",
        timer_in(event::TIMER_LOOP, ValueSource::NONE),
    ),
];

/// Family A, register ABI (Go 1.17-1.22). Verified live on 1.19/1.21/1.22, and on ibazel
/// 0.16.2 (go1.17.6).
const STATUS_WORD_HOOKS: &[HookSpec] = &[
    creation_at_entry("runtime.addtimer", timer_in(event::CREATED, reg(reg::RAX))),
    at_entry("runtime.modtimer", modify(event::RESET, 0)),
    at_entry("runtime.deltimer", timer_in(event::STOPPED, reg(reg::RAX))),
    at_entry("runtime.runOneTimer", fire(reg(reg::RBX), reg(reg::RCX))),
    at_entry(
        "runtime.checkTimers",
        timer_in(event::TIMER_LOOP, ValueSource::NONE),
    ),
];

/// Family B (Go 1.23+). Creation is the first `modify` of a timer `time.newTimer` allocated
/// (its `f` still nil); `time.newTimer` itself has no timer pointer yet. The creation tier
/// probes only `time.newTimer`'s own call of `modify` (which every reset also calls), with the
/// call's arguments in place.
const LOCKED_HOOKS: &[HookSpec] = &[
    HookSpec {
        symbol: "time.newTimer",
        placement: Placement::AtCallOf("runtime.(*timer).modify"),
        plan: HookPlan {
            flags: hook_flag::CREATE_IF_UNINITIALIZED | hook_flag::IN_BODY,
            ..modify(event::RESET, 0)
        },
        tiers: &[Events::Create],
    },
    at_entry(
        "runtime.(*timer).modify",
        modify(event::RESET, hook_flag::CREATE_IF_UNINITIALIZED),
    ),
    at_entry(
        "runtime.(*timer).stop",
        timer_in(event::STOPPED, reg(reg::RAX)),
    ),
    at_entry(
        "runtime.(*timer).unlockAndRun",
        fire(reg(reg::RAX), reg(reg::RBX)),
    ),
    at_entry(
        "runtime.(*timers).check",
        timer_in(event::TIMER_LOOP, ValueSource::NONE),
    ),
];

/// How arguments are passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abi {
    /// Go <= 1.16: on the stack; `g` lives in thread-local storage.
    Stack,
    /// Go 1.17+: in registers; `g` in R14.
    Register,
}

impl Abi {
    fn of(version: GoVersion) -> Self {
        if version.minor <= 16 {
            Abi::Stack
        } else {
            Abi::Register
        }
    }
}

/// The hooks of one timer family in one ABI.
fn family_specs(family: TimerFamily, abi: Abi) -> &'static [HookSpec] {
    match (family, abi) {
        (TimerFamily::Timerproc, _) => TIMERPROC_HOOKS,
        (TimerFamily::StatusWord, Abi::Stack) => STACK_STATUS_WORD_HOOKS,
        (TimerFamily::StatusWord, Abi::Register) => STATUS_WORD_HOOKS,
        (TimerFamily::Locked, _) => LOCKED_HOOKS,
    }
}

/// The hooks of one timer family in one ABI that the `events` tier probes.
fn hook_specs(family: TimerFamily, abi: Abi, events: Events) -> Vec<&'static HookSpec> {
    family_specs(family, abi)
        .iter()
        .filter(|spec| spec.tiers.contains(&events))
        .collect()
}

/// One hook placed in this binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedHook {
    pub symbol: &'static str,
    /// Link-time address of the probed instruction.
    pub address: u64,
    /// Offset of the probe from the function entry (after the stack check, or inside the body
    /// for Go <= 1.13's timerproc and Sleep).
    pub entry_offset: u64,
    /// File offset, what the uprobe attaches to.
    pub file_offset: u64,
    pub plan: HookPlan,
}

impl PlannedHook {
    /// Whether the hook reports creations (and so fills the creation map).
    pub fn sees_creations(&self) -> bool {
        self.plan.event == event::CREATED
            || self.plan.flags & hook_flag::CREATE_IF_UNINITIALIZED != 0
    }
}

/// Everything the probe needs for one binary.
#[derive(Clone, Debug)]
pub struct Plan {
    pub version: GoVersion,
    pub family: TimerFamily,
    /// The tier the hooks were chosen for.
    pub events: Events,
    pub hooks: Vec<PlannedHook>,
    /// Struct offsets; `tgid` and `go_func_pc` are filled at attach time.
    pub config: TargetConfig,
    /// Link address of `time.goFunc` (AfterFunc's callback), to be biased at attach; `None`
    /// when the program never calls AfterFunc (the linker dropped it).
    pub go_func: Option<u64>,
    /// Where the struct offsets came from.
    pub offsets_source: LayoutSource,
    /// Hook functions this binary does not contain.
    pub missing_hooks: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Unsupported(#[from] UnsupportedGo),
    #[error("function {0} is in neither the symbol table nor .gopclntab")]
    MissingSymbol(&'static str),
    #[error("cannot find the stack check in {0}'s prologue: refusing to probe at a guessed offset")]
    UnrecognizedPrologue(&'static str),
    #[error("cannot find {what} in the code of {symbol}: refusing to probe at a guessed place")]
    UnrecognizedBody {
        symbol: &'static str,
        what: &'static str,
    },
    #[error("goroutine probes need Go 1.17 or later (the register ABI), not {0}")]
    GoroutinesNeedRegisterAbi(GoVersion),
}

impl Plan {
    /// The hooks of tier `events` in `binary`.
    pub fn for_binary(binary: &GoBinary, events: Events) -> Result<Self, PlanError> {
        let version = binary.version();
        let layout = RuntimeLayout::of_binary(binary)?;
        let family = TimerFamily::of_go_minor(version.minor).ok_or(UnsupportedGo { version })?;
        let specs = hook_specs(family, Abi::of(version), events);
        let config = target_config(&layout, family, Abi::of(version));
        // The linker drops runtime functions a program never reaches (a program that makes no
        // timers of its own has no `runtime.addtimer`): probe what exists, refuse only when
        // nothing does. In the creation tier nothing may: a program without `time.newTimer`
        // creates no timer to see, and the snapshot still reads the runtime's heaps.
        let mut hooks = Vec::new();
        let mut missing_hooks = Vec::new();
        for &spec in &specs {
            match place(binary, spec, &config, events) {
                Ok(hook) => hooks.push(hook),
                Err(PlanError::MissingSymbol(symbol)) => {
                    if !missing_hooks.contains(&symbol) {
                        missing_hooks.push(symbol);
                    }
                }
                Err(other) => return Err(other),
            }
        }
        if let (true, Some(first)) = (hooks.is_empty() && events != Events::Create, specs.first()) {
            return Err(PlanError::MissingSymbol(first.symbol));
        }
        tracing::debug!(
            "plan: {version}, family {family}, offsets from {}, {} hooks, missing {missing_hooks:?}",
            layout.source.as_str(),
            hooks.len()
        );
        Ok(Self {
            version,
            family,
            events,
            hooks,
            config,
            go_func: binary.function("time.goFunc").map(|f| f.address),
            offsets_source: layout.source,
            missing_hooks,
        })
    }
}

/// The timer field that is nil until the first arm, for families whose hooks create on first arm
/// ([`hook_flag::CREATE_IF_UNINITIALIZED`]): Go <= 1.13's bucket, Go 1.23+'s callback.
fn unarmed_marker(layout: &RuntimeLayout, family: TimerFamily) -> Option<u32> {
    match family {
        TimerFamily::Timerproc => layout.timer.bucket,
        TimerFamily::StatusWord => None,
        TimerFamily::Locked => Some(layout.timer.f),
    }
}

/// The struct offsets the probes read. `g.goid` only where the probes can reach the current `g`
/// (R14 in the register ABI; the stack ABI keeps it in thread-local storage).
fn target_config(layout: &RuntimeLayout, family: TimerFamily, abi: Abi) -> TargetConfig {
    TargetConfig {
        timer_when: layout.timer.when,
        timer_period: layout.timer.period,
        timer_f: layout.timer.f,
        // `arg` is an `any`: its data word follows the type word.
        timer_arg_data: layout.timer.arg + 8,
        timer_unarmed_marker: unarmed_marker(layout, family).unwrap_or(0),
        g_goid: match abi {
            Abi::Register => layout.g_goid,
            Abi::Stack => 0,
        },
        ..TargetConfig::default()
    }
}

fn place(
    target: &GoBinary,
    spec: &HookSpec,
    config: &TargetConfig,
    events: Events,
) -> Result<PlannedHook, PlanError> {
    let symbol = target
        .function(spec.symbol)
        .ok_or(PlanError::MissingSymbol(spec.symbol))?;
    let (entry_offset, plan) = match spec.placement {
        Placement::AfterStackCheck => {
            let point = after_stack_check(target, spec.symbol, symbol)?;
            let mut plan = spec.plan;
            if point.on_stack_check {
                plan.flags |= hook_flag::SKIP_IF_MORESTACK;
            }
            (point.offset, plan)
        }
        placement => place_in_body(target, spec, symbol, placement, config)?,
    };
    let mut plan = plan;
    // Without stop and fire hooks a timer would never leave the live map.
    if events == Events::Create {
        plan.flags |= hook_flag::CREATION_ONLY;
    }
    let address = symbol.address + entry_offset;
    let file_offset = target
        .elf
        .file_offset(address)
        .ok_or(PlanError::MissingSymbol(spec.symbol))?;
    Ok(PlannedHook {
        symbol: spec.symbol,
        address,
        entry_offset,
        file_offset,
        plan,
    })
}

/// The probe point right after `symbol`'s stack check (`name` is its name, for errors).
fn after_stack_check(
    target: &GoBinary,
    name: &'static str,
    symbol: Symbol,
) -> Result<prologue::ProbePoint, PlanError> {
    let code = target
        .code(symbol, 64)
        .ok_or(PlanError::UnrecognizedPrologue(name))?;
    prologue::probe_point(code, symbol.address).ok_or(PlanError::UnrecognizedPrologue(name))
}

/// Offset in `symbol` of its only direct call of `callee`, where that call's arguments are in
/// place (the `CALL` is emulated by the kernel, not single-stepped).
fn at_call_of(
    target: &GoBinary,
    name: &'static str,
    symbol: Symbol,
    callee: &'static str,
) -> Result<u64, PlanError> {
    let unrecognized = PlanError::UnrecognizedBody {
        symbol: name,
        what: "exactly one direct call of the hooked callee",
    };
    let callee = target
        .function(callee)
        .ok_or(PlanError::MissingSymbol(callee))?;
    let code = usize::try_from(symbol.size)
        .ok()
        .and_then(|size| target.code(symbol, size))
        .ok_or(PlanError::UnrecognizedBody {
            symbol: name,
            what: "the function's code",
        })?;
    body::only_direct_call_to(code, symbol.address, callee.address).ok_or(unrecognized)
}

/// Decodes a function's body for an in-body hook: the probe's offset, and the plan with the
/// register or stack slot the decoding found.
fn place_in_body(
    target: &GoBinary,
    spec: &HookSpec,
    symbol: Symbol,
    placement: Placement,
    config: &TargetConfig,
) -> Result<(u64, HookPlan), PlanError> {
    let unrecognized = |what| PlanError::UnrecognizedBody {
        symbol: spec.symbol,
        what,
    };
    let code = usize::try_from(symbol.size)
        .ok()
        .and_then(|size| target.code(symbol, size))
        .ok_or(unrecognized("the function's code"))?;
    let entry = symbol.address;
    let f = u64::from(config.timer_f);
    let mut plan = spec.plan;
    let offset = match placement {
        Placement::AfterStackCheck => unreachable!("placed by `place`"),
        Placement::AtCallbackLoad => {
            // The callback's argument (`arg`, two words) is loaded next to `f`.
            let arg_type = u64::from(config.timer_arg_data - 8);
            let load = body::timer_callback_load(code, entry, f, &[arg_type, arg_type + 8])
                .ok_or(unrecognized("the load of timer.f and its argument"))?;
            plan.timer = ValueSource::register(load.timer_register);
            load.offset
        }
        Placement::AfterCallbackStore => {
            let store = body::after_timer_callback_store(code, entry, f)
                .ok_or(unrecognized("the store of timer.f"))?;
            plan.timer = ValueSource::register(store.timer_register);
            store.offset
        }
        Placement::AtCallOf(callee) => at_call_of(target, spec.symbol, symbol, callee)?,
        Placement::AtCallbackCall | Placement::AfterCallbackCall => {
            let call = body::only_indirect_call(code, entry)
                .ok_or(unrecognized("exactly one call through a register"))?;
            let frame = body::frame_size(code, entry)
                .and_then(|frame| u32::try_from(frame).ok())
                .ok_or(unrecognized("the frame size in the prologue"))?;
            // The bucket, timerproc's only argument, is the first word of the caller's
            // argument area, above the frame and the return address.
            plan.worker = ValueSource::stack(frame + 8);
            if placement == Placement::AtCallbackCall {
                call.call_offset
            } else {
                call.return_offset
            }
        }
    };
    Ok((offset, plan))
}

/// Where a goroutine hook's probe goes in its function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoroutinePlacement {
    AfterStackCheck,
    /// On the function's only direct call of this function.
    AtCallOf(&'static str),
}

/// One goroutine hook: where its probe goes and where it finds the `g`.
struct GoroutineHookSpec {
    symbol: &'static str,
    placement: GoroutinePlacement,
    hook: GoroutineHook,
}

/// Goroutine creation and exit in the register ABI (Go 1.17+), indexed by `goroutine_hook`;
/// the same in every release from 1.19 to 1.27 (docs/go-runtime.md, "Goroutine hooks").
const GOROUTINE_HOOKS: [GoroutineHookSpec; goroutine_hook::COUNT as usize] = [
    // `go` calls newproc, whose closure runs on the system stack: `newg := newproc1(...)`, then
    // `runqput(pp, newg, true)`. At that call the new g is runqput's second argument and on no
    // run queue yet, so its exit cannot come first.
    GoroutineHookSpec {
        symbol: "runtime.newproc.func1",
        placement: GoroutinePlacement::AtCallOf("runtime.runqput"),
        hook: GoroutineHook {
            g: reg(reg::RBX),
            flags: hook_flag::IN_BODY,
            _pad: 0,
        },
    },
    // Every goroutine's function returns into runtime.goexit, which calls goexit1 (as does
    // runtime.Goexit), on the exiting goroutine: g is R14.
    GoroutineHookSpec {
        symbol: "runtime.goexit1",
        placement: GoroutinePlacement::AfterStackCheck,
        hook: GoroutineHook {
            g: reg(reg::R14),
            flags: 0,
            _pad: 0,
        },
    },
];

/// One goroutine hook placed in a binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedGoroutineHook {
    pub symbol: &'static str,
    /// Offset of the probe from the function entry.
    pub entry_offset: u64,
    /// File offset, what the uprobe attaches to.
    pub file_offset: u64,
    pub hook: GoroutineHook,
}

/// The goroutine hooks of a binary, indexed by `goroutine_hook`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoroutinePlan {
    pub hooks: Vec<PlannedGoroutineHook>,
    /// Offset of `runtime.g.gopc`.
    pub g_gopc: u32,
}

impl GoroutinePlan {
    /// The goroutine hooks of `binary`, or why it has none.
    pub fn for_binary(binary: &GoBinary) -> Result<Self, PlanError> {
        let version = binary.version();
        if Abi::of(version) != Abi::Register {
            return Err(PlanError::GoroutinesNeedRegisterAbi(version));
        }
        let layout = GoroutineLayout::of_binary(binary)?;
        let hooks = GOROUTINE_HOOKS
            .iter()
            .map(|spec| {
                let symbol = binary
                    .function(spec.symbol)
                    .ok_or(PlanError::MissingSymbol(spec.symbol))?;
                let mut hook = spec.hook;
                let entry_offset = match spec.placement {
                    GoroutinePlacement::AfterStackCheck => {
                        let point = after_stack_check(binary, spec.symbol, symbol)?;
                        if point.on_stack_check {
                            hook.flags |= hook_flag::SKIP_IF_MORESTACK;
                        }
                        point.offset
                    }
                    GoroutinePlacement::AtCallOf(callee) => {
                        at_call_of(binary, spec.symbol, symbol, callee)?
                    }
                };
                let file_offset = binary
                    .elf
                    .file_offset(symbol.address + entry_offset)
                    .ok_or(PlanError::MissingSymbol(spec.symbol))?;
                Ok(PlannedGoroutineHook {
                    symbol: spec.symbol,
                    entry_offset,
                    file_offset,
                    hook,
                })
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(Self {
            hooks,
            g_gopc: layout.gopc,
        })
    }

    /// `runtime.newproc.func1+53,runtime.goexit1+4` (comment `goroutine_hooks`).
    pub fn describe(&self) -> String {
        self.hooks
            .iter()
            .map(|h| format!("{}+{}", h.symbol, h.entry_offset))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The channel mode of a process: the process's own GODEBUG wins over the binary's default.
pub fn channel_mode(
    binary: &GoBinary,
    family: TimerFamily,
    env_godebug: Option<&str>,
) -> ChannelMode {
    let version = binary.version();
    if family != TimerFamily::Locked {
        return ChannelMode::Async;
    }
    // Go 1.27 removed the setting (setting it to 1 is a fatal error at start-up).
    if version.minor >= 27 {
        return ChannelMode::Sync;
    }
    let setting = |godebug: &str| {
        godebug
            .split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == "asynctimerchan")
            .map(|(_, v)| v != "0")
            .next_back()
    };
    let async_chan = env_godebug
        .and_then(setting)
        .or_else(|| binary.buildinfo.setting("DefaultGODEBUG").and_then(setting))
        .unwrap_or(false);
    if async_chan {
        ChannelMode::Async
    } else {
        ChannelMode::Sync
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outside_the_table_are_refused_by_name() {
        for version in [
            GoVersion::new(1, 11, 13),
            GoVersion::new(1, 28, 0),
            GoVersion::new(2, 0, 0),
        ] {
            let error = PlanError::from(RuntimeLayout::of_version(version).unwrap_err());
            assert!(
                matches!(&error, PlanError::Unsupported(e) if e.version == version),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(&version.to_string()), "{message}");
        }
        for minor in 12..=27 {
            assert!(
                RuntimeLayout::of_version(GoVersion::new(1, minor, 0)).is_ok(),
                "1.{minor}"
            );
        }
    }

    #[test]
    fn each_release_has_hooks_of_its_design() {
        for minor in 12..=27 {
            let version = GoVersion::new(1, minor, 0);
            let family = TimerFamily::of_go_minor(minor).unwrap();
            let abi = Abi::of(version);
            let expected = match minor {
                ..=13 => (TimerFamily::Timerproc, Abi::Stack),
                14..=16 => (TimerFamily::StatusWord, Abi::Stack),
                17..=22 => (TimerFamily::StatusWord, Abi::Register),
                _ => (TimerFamily::Locked, Abi::Register),
            };
            assert_eq!((family, abi), expected, "1.{minor}");
            let layout = RuntimeLayout::of_version(version).unwrap();
            let config = target_config(&layout, family, abi);
            // R14 is g only in the register ABI.
            assert_eq!(config.g_goid == 0, abi == Abi::Stack, "1.{minor}");
            let specs = hook_specs(family, abi, Events::All);
            // Stack-ABI hooks read no argument registers: only slots, or what decoding finds.
            if abi == Abi::Stack {
                for spec in &specs {
                    let plan = spec.plan;
                    for source in [plan.timer, plan.when, plan.period, plan.callback, plan.now] {
                        assert_ne!(
                            source.kind,
                            probe_common::source::REGISTER,
                            "{}",
                            spec.symbol
                        );
                    }
                }
            }
            // Creation-by-first-arm hooks name the field that marks it.
            let marks_creation = specs
                .iter()
                .any(|s| s.plan.flags & hook_flag::CREATE_IF_UNINITIALIZED != 0);
            assert_eq!(
                marks_creation,
                unarmed_marker(&layout, family).is_some(),
                "1.{minor}"
            );
        }
        assert_eq!(TimerFamily::Timerproc.as_str(), "timerproc");
    }

    #[test]
    fn the_creation_tier_probes_creation_only() {
        for minor in 12..=27 {
            let version = GoVersion::new(1, minor, 0);
            let family = TimerFamily::of_go_minor(minor).unwrap();
            let abi = Abi::of(version);
            assert!(hook_specs(family, abi, Events::None).is_empty());
            let create = hook_specs(family, abi, Events::Create);
            assert!(!create.is_empty(), "1.{minor}");
            for spec in &create {
                // No per-round loop, no stop, no fire: only hooks that can create a timer.
                let plan = spec.plan;
                let creates = plan.event == event::CREATED
                    || plan.flags & hook_flag::CREATE_IF_UNINITIALIZED != 0;
                assert!(creates, "1.{minor}: {}", spec.symbol);
            }
            // Every hook is in some tier; `all` never probes a creation twice.
            let all = hook_specs(family, abi, Events::All);
            assert_eq!(
                all.len()
                    + create
                        .iter()
                        .filter(|s| !s.tiers.contains(&Events::All))
                        .count(),
                family_specs(family, abi).len(),
                "1.{minor}"
            );
        }
    }
}
