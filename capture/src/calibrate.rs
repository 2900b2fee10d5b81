//! What one uprobe hit costs the probed thread beyond the program's own run time (the trap into
//! the kernel and back), measured once per timerscope process: a function of timerscope's own
//! is timed in a loop without and with a do-nothing uprobe on it. The kernel's BPF statistics
//! cover the programs' run time; this covers the rest.
//!
//! The function begins with `PUSH RBP`, which the kernel emulates, like the instruction after a
//! Go prologue's stack check where the timer hooks sit (docs/toolchain.md, "Probing Go").

use std::{
    path::Path,
    sync::OnceLock,
    time::{Duration, Instant},
};

use aya::{
    EbpfLoader,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeScope},
    },
};
use gobinary::process;

std::arch::global_asm!(
    ".pushsection .text.timerscope_calibration,\"ax\",@progbits",
    ".globl timerscope_calibration_target",
    ".type timerscope_calibration_target,@function",
    "timerscope_calibration_target:",
    "push rbp",
    "mov rbp, rsp",
    "pop rbp",
    "ret",
    ".size timerscope_calibration_target, . - timerscope_calibration_target",
    ".popsection",
);

unsafe extern "C" {
    fn timerscope_calibration_target();
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("loading the calibration probe")]
    Load(#[from] aya::EbpfError),
    #[error("the calibration probe")]
    Program(#[from] aya::programs::ProgramError),
    #[error("timerscope's own code is in no file mapping of /proc/self/maps")]
    NotMapped,
    #[error("reading timerscope's own mappings")]
    Maps(#[source] process::ProcessError),
}

/// Calls per timed round; rounds per measurement (the fastest round counts: the machine may be
/// busy, and interference only ever adds time).
const CALLS: u32 = 4000;
const ROUNDS: u32 = 7;

/// The trap cost of one uprobe hit, measured at the first call and remembered.
pub fn uprobe_trap_cost() -> Result<Duration, &'static CalibrateError> {
    static COST: OnceLock<Result<Duration, CalibrateError>> = OnceLock::new();
    COST.get_or_init(measure).as_ref().map(|cost| *cost)
}

fn fastest_round() -> Duration {
    let target: unsafe extern "C" fn() = timerscope_calibration_target;
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                // SAFETY: the function only pushes and pops the frame pointer.
                unsafe { std::hint::black_box(target)() };
            }
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn measure() -> Result<Duration, CalibrateError> {
    let address = timerscope_calibration_target as *const () as usize as u64;
    let pid = std::process::id();
    let maps = process::maps(pid).map_err(CalibrateError::Maps)?;
    let mapping = maps
        .iter()
        .find(|m| m.start <= address && address < m.end && m.path.starts_with('/'))
        .ok_or(CalibrateError::NotMapped)?;
    let file_offset = address - mapping.start + mapping.offset;

    let plain = fastest_round();
    // Only the calibration program is loaded; the shared maps are made as small as allowed.
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("SITES", 1)
        .map_max_entries("LIVE", 1)
        .map_max_entries("STACKS", 1)
        .load(crate::EBPF_OBJECT)?;
    let program: &mut UProbe = ebpf
        .program_mut("calibrate")
        .expect("calibrate is defined in probe-ebpf")
        .try_into()?;
    program.load()?;
    program.attach(
        UProbeAttachLocation::AbsoluteOffset(file_offset),
        Path::new(&mapping.path),
        UProbeScope::CallingProcess,
    )?;
    let probed = fastest_round();
    drop(ebpf);
    let cost = probed.saturating_sub(plain) / CALLS;
    tracing::debug!("calibrate: one uprobe hit costs {cost:?} ({plain:?} -> {probed:?})");
    Ok(cost)
}
