//! Stage 2, plan: per-Go-version knowledge as data. Which runtime functions to probe, where
//! each hook finds its values, and the struct offsets the probes read. Adding a Go release is a
//! table edit plus a fixture; nothing here is code per version.

use probe_common::{HookPlan, TargetConfig, ValueSource, event, hook_flag, reg};

use crate::target::{GoVersion, Target, dwarf, prologue};

/// The two designs of the Go runtime's timers this table knows (see go-runtime-timers.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerFamily {
    /// Go 1.14-1.22: per-P heaps of `runtime.timer` with a status word.
    StatusWord,
    /// Go 1.23+: locked timers; channel timers are heaped only while someone waits.
    Locked,
}

impl TimerFamily {
    /// Short name written into profiles (`timer_family=...`).
    pub fn label(self) -> &'static str {
        match self {
            Self::StatusWord => "A",
            Self::Locked => "B",
        }
    }
}

/// How timer channels behave in this process (GODEBUG asynctimerchan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMode {
    /// Buffered channels; unreferenced unstopped timers are not collected (Go <= 1.22, or
    /// asynctimerchan=1).
    Async,
    /// Go 1.23+ default: unbuffered, unreferenced timers are collected.
    Sync,
}

impl ChannelMode {
    pub fn label(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::Sync => "sync",
        }
    }
}

struct HookSpec {
    symbol: &'static str,
    plan: HookPlan,
}

const fn reg(slot: u32) -> ValueSource {
    ValueSource::register(slot)
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
    }
}

const fn fire(timer: ValueSource, now: ValueSource) -> HookPlan {
    HookPlan {
        now,
        ..timer_in(event::FIRED, timer)
    }
}

/// Family A, register ABI (Go 1.17-1.22). Verified live on 1.19/1.21/1.22.
const STATUS_WORD_HOOKS: &[HookSpec] = &[
    HookSpec {
        symbol: "runtime.addtimer",
        plan: timer_in(event::CREATED, reg(reg::RAX)),
    },
    HookSpec {
        symbol: "runtime.modtimer",
        plan: modify(event::RESET, 0),
    },
    HookSpec {
        symbol: "runtime.deltimer",
        plan: timer_in(event::STOPPED, reg(reg::RAX)),
    },
    HookSpec {
        symbol: "runtime.runOneTimer",
        plan: fire(reg(reg::RBX), reg(reg::RCX)),
    },
    HookSpec {
        symbol: "runtime.checkTimers",
        plan: timer_in(event::TIMER_LOOP, ValueSource::NONE),
    },
];

/// Family B (Go 1.23+). Creation is the first `modify` of a timer `time.newTimer` allocated
/// (its `f` still nil); `time.newTimer` itself has no timer pointer yet.
const LOCKED_HOOKS: &[HookSpec] = &[
    HookSpec {
        symbol: "runtime.(*timer).modify",
        plan: modify(event::RESET, hook_flag::CREATE_IF_UNINITIALIZED),
    },
    HookSpec {
        symbol: "runtime.(*timer).stop",
        plan: timer_in(event::STOPPED, reg(reg::RAX)),
    },
    HookSpec {
        symbol: "runtime.(*timer).unlockAndRun",
        plan: fire(reg(reg::RAX), reg(reg::RBX)),
    },
    HookSpec {
        symbol: "runtime.(*timers).check",
        plan: timer_in(event::TIMER_LOOP, ValueSource::NONE),
    },
];

/// Struct offsets for binaries without DWARF (from go-runtime-timers.md §5; DWARF wins when
/// present). Rows are inclusive ranges of Go 1.x minor versions.
struct LayoutRow {
    minors: (u32, u32),
    family: TimerFamily,
    timer_when: u32,
    timer_period: u32,
    timer_f: u32,
    timer_arg: u32,
    g_goid: u32,
}

const LAYOUTS: &[LayoutRow] = &[
    LayoutRow {
        minors: (19, 22),
        family: TimerFamily::StatusWord,
        timer_when: 8,
        timer_period: 16,
        timer_f: 24,
        timer_arg: 32,
        g_goid: 152,
    },
    LayoutRow {
        minors: (23, 24),
        family: TimerFamily::Locked,
        timer_when: 16,
        timer_period: 24,
        timer_f: 32,
        timer_arg: 40,
        g_goid: 160,
    },
    // 1.25 inserted `timer.rand`, shifting every later field by 8; g.goid moved back.
    LayoutRow {
        minors: (25, 27),
        family: TimerFamily::Locked,
        timer_when: 24,
        timer_period: 32,
        timer_f: 40,
        timer_arg: 48,
        g_goid: 152,
    },
];

/// One hook placed in this binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedHook {
    pub symbol: &'static str,
    /// Link-time address of the probed instruction.
    pub address: u64,
    /// Offset of the probe from the function entry (after the stack check).
    pub entry_offset: u64,
    /// File offset, what the uprobe attaches to.
    pub file_offset: u64,
    pub plan: HookPlan,
}

/// Everything the probe needs for one binary.
#[derive(Clone, Debug)]
pub struct Plan {
    pub version: GoVersion,
    pub family: TimerFamily,
    pub hooks: Vec<PlannedHook>,
    /// Struct offsets; `tgid` and `go_func_pc` are filled at attach time.
    pub config: TargetConfig,
    /// Link address of `time.goFunc` (AfterFunc's callback), to be biased at attach; `None`
    /// when the program never calls AfterFunc (the linker dropped it).
    pub go_func: Option<u64>,
    /// "dwarf" or "table".
    pub offsets_source: &'static str,
    /// Hook functions this binary does not contain.
    pub missing_hooks: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{version} has no hook table (supported: Go 1.19 to 1.27): upgrade timerscope or \
         rebuild the program with a supported Go release"
    )]
    UnsupportedVersion { version: GoVersion },
    #[error("function {0} is in neither the symbol table nor .gopclntab")]
    MissingSymbol(&'static str),
    #[error("cannot find the stack check in {0}'s prologue: refusing to probe at a guessed offset")]
    UnrecognizedPrologue(&'static str),
}

impl Plan {
    pub fn for_target(target: &Target) -> Result<Self, PlanError> {
        let version = target.version();
        let row = layout_row(version)?;
        let specs = match row.family {
            TimerFamily::StatusWord => STATUS_WORD_HOOKS,
            TimerFamily::Locked => LOCKED_HOOKS,
        };
        // The linker drops runtime functions a program never reaches (a program that makes no
        // timers of its own has no `runtime.addtimer`): probe what exists, refuse only when
        // nothing does.
        let mut hooks = Vec::new();
        let mut missing_hooks = Vec::new();
        for spec in specs {
            match place(target, spec) {
                Ok(hook) => hooks.push(hook),
                Err(PlanError::MissingSymbol(symbol)) => missing_hooks.push(symbol),
                Err(other) => return Err(other),
            }
        }
        if hooks.is_empty() {
            return Err(PlanError::MissingSymbol(specs[0].symbol));
        }
        let (config, offsets_source) = match dwarf_offsets(target) {
            Some(config) => (config, "dwarf"),
            None => (table_layout(row), "table"),
        };
        Ok(Self {
            version,
            family: row.family,
            hooks,
            config,
            go_func: target.function("time.goFunc").map(|f| f.address),
            offsets_source,
            missing_hooks,
        })
    }
}

fn place(target: &Target, spec: &HookSpec) -> Result<PlannedHook, PlanError> {
    let symbol = target
        .function(spec.symbol)
        .ok_or(PlanError::MissingSymbol(spec.symbol))?;
    let code = target
        .code(symbol, 64)
        .ok_or(PlanError::UnrecognizedPrologue(spec.symbol))?;
    let entry_offset = prologue::probe_offset(code, symbol.address)
        .ok_or(PlanError::UnrecognizedPrologue(spec.symbol))?;
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
        plan: spec.plan,
    })
}

/// The table row for a Go release; releases outside the table are refused, never guessed.
fn layout_row(version: GoVersion) -> Result<&'static LayoutRow, PlanError> {
    LAYOUTS
        .iter()
        .find(|r| version.major == 1 && (r.minors.0..=r.minors.1).contains(&version.minor))
        .ok_or(PlanError::UnsupportedVersion { version })
}

/// The struct offsets the per-version table gives, used for binaries without DWARF.
pub fn table_offsets(version: GoVersion) -> Result<TargetConfig, PlanError> {
    layout_row(version).map(table_layout)
}

fn table_layout(row: &LayoutRow) -> TargetConfig {
    TargetConfig {
        timer_when: row.timer_when,
        timer_period: row.timer_period,
        timer_f: row.timer_f,
        timer_arg_data: row.timer_arg + 8,
        g_goid: row.g_goid,
        ..TargetConfig::default()
    }
}

/// The struct offsets the binary's own DWARF gives; `None` without DWARF.
pub fn dwarf_offsets(target: &Target) -> Option<TargetConfig> {
    let offsets = dwarf::struct_offsets(target.image(), &["runtime.timer", "runtime.g"])?;
    let timer = offsets.get("runtime.timer")?;
    let field = |name: &str| timer.get(name).and_then(|&o| u32::try_from(o).ok());
    Some(TargetConfig {
        timer_when: field("when")?,
        timer_period: field("period")?,
        timer_f: field("f")?,
        // `arg` is an `any`: its data word follows the type word.
        timer_arg_data: field("arg")? + 8,
        g_goid: u32::try_from(*offsets.get("runtime.g")?.get("goid")?).ok()?,
        ..TargetConfig::default()
    })
}

/// The channel mode of a process: the process's own GODEBUG wins over the binary's default.
pub fn channel_mode(
    target: &Target,
    family: TimerFamily,
    env_godebug: Option<&str>,
) -> ChannelMode {
    let version = target.version();
    if family == TimerFamily::StatusWord {
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
        .or_else(|| target.buildinfo.setting("DefaultGODEBUG").and_then(setting))
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
            GoVersion::new(1, 18, 10),
            GoVersion::new(1, 28, 0),
            GoVersion::new(2, 0, 0),
        ] {
            let error = table_offsets(version).unwrap_err();
            assert!(
                matches!(error, PlanError::UnsupportedVersion { version: v } if v == version),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(&version.to_string()), "{message}");
        }
        for minor in 19..=27 {
            assert!(
                table_offsets(GoVersion::new(1, minor, 0)).is_ok(),
                "1.{minor}"
            );
        }
    }
}
