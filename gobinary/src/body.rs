//! x86 decoding of function bodies. Probe points inside a function body: Go <= 1.13 runs timers
//! in `runtime.timerproc`, which calls each timer's callback itself, and `time.Sleep` arms its timer without calling any
//! hookable function: those events have no function entry of their own. They are found by
//! decoding that function in that binary (the register allocation differs per build), never at
//! fixed offsets, and a function whose code does not match is refused, not guessed at.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use probe_common::reg;

/// An instruction that reads or writes a timer field through a register holding the timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerAccess {
    /// Offset from the function entry of the probe point.
    pub offset: u64,
    /// `pt_regs` slot of the register holding the `*runtime.timer` there.
    pub timer_register: u32,
}

/// An indirect call (a timer's callback) and the instruction it returns to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndirectCall {
    pub call_offset: u64,
    pub return_offset: u64,
}

fn decode(code: &[u8], entry: u64) -> Vec<Instruction> {
    Decoder::with_ip(64, code, entry, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

/// `[base + displacement]` with a general-purpose base that is neither the stack nor the frame
/// pointer nor RIP, and no index: a field of a struct a register points at.
fn field_operand(instruction: &Instruction, operand: u32) -> Option<(Register, u64)> {
    if instruction.op_kind(operand) != OpKind::Memory
        || instruction.memory_index() != Register::None
        || instruction.memory_segment() != Register::DS
    {
        return None;
    }
    let base = instruction.memory_base();
    if matches!(
        base,
        Register::RSP | Register::RBP | Register::RIP | Register::None
    ) {
        return None;
    }
    Some((base, instruction.memory_displacement64()))
}

/// `MOV r64, [base + displacement]`.
fn load(instruction: &Instruction) -> Option<(Register, u64)> {
    (instruction.mnemonic() == Mnemonic::Mov
        && instruction.op0_kind() == OpKind::Register
        && pt_regs_slot(instruction.op0_register()).is_some())
    .then(|| field_operand(instruction, 1))?
}

/// `MOV [base + displacement], r64`.
fn store(instruction: &Instruction) -> Option<(Register, u64)> {
    (instruction.mnemonic() == Mnemonic::Mov
        && instruction.op1_kind() == OpKind::Register
        && pt_regs_slot(instruction.op1_register()).is_some())
    .then(|| field_operand(instruction, 0))?
}

/// The load of `timer.f` with which timerproc starts running a timer: the first 64-bit load at
/// `[reg + f]` followed, within a few instructions, by loads of every offset in `companions`
/// (the callback's argument words) through the same register. The probe goes on the load.
pub fn timer_callback_load(
    code: &[u8],
    entry: u64,
    f: u64,
    companions: &[u64],
) -> Option<TimerAccess> {
    let instructions = decode(code, entry);
    instructions
        .iter()
        .enumerate()
        .find_map(|(i, instruction)| {
            let (base, _) = load(instruction).filter(|&(_, d)| d == f)?;
            let window = &instructions[i + 1..(i + 9).min(instructions.len())];
            let companions_follow = companions
                .iter()
                .all(|&c| window.iter().any(|next| load(next) == Some((base, c))));
            companions_follow.then_some(())?;
            Some(TimerAccess {
                offset: instruction.ip() - entry,
                timer_register: pt_regs_slot(base)?,
            })
        })
}

/// The instruction after the first 64-bit store to `[reg + f]`: Sleep has just set its timer's
/// callback. A pointer store has a write-barrier twin on a slow path that jumps back to this
/// very instruction, so a probe here sees both paths; the register still holds the timer (the
/// barrier preserves general registers).
pub fn after_timer_callback_store(code: &[u8], entry: u64, f: u64) -> Option<TimerAccess> {
    let instructions = decode(code, entry);
    let at = instructions
        .iter()
        .position(|i| store(i).is_some_and(|(_, d)| d == f))?;
    let (base, _) = store(&instructions[at])?;
    let next = instructions.get(at + 1)?;
    Some(TimerAccess {
        offset: next.ip() - entry,
        timer_register: pt_regs_slot(base)?,
    })
}

/// The function's only call through a register (timerproc's `f(arg, seq)`); `None` when there
/// is none or more than one.
pub fn only_indirect_call(code: &[u8], entry: u64) -> Option<IndirectCall> {
    let instructions = decode(code, entry);
    let mut calls = instructions
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Call && i.op0_kind() == OpKind::Register);
    let call = calls.next()?;
    if calls.next().is_some() {
        return None;
    }
    Some(IndirectCall {
        call_offset: call.ip() - entry,
        return_offset: call.next_ip() - entry,
    })
}

/// Offset from the entry of the function's only direct call of `callee` (a link address);
/// `None` when there is none or more than one. At the call the callee's arguments are in place.
pub fn only_direct_call_to(code: &[u8], entry: u64, callee: u64) -> Option<u64> {
    let instructions = decode(code, entry);
    let mut calls = instructions.iter().filter(|i| {
        i.mnemonic() == Mnemonic::Call
            && i.op0_kind() == OpKind::NearBranch64
            && i.near_branch_target() == callee
    });
    let call = calls.next()?;
    if calls.next().is_some() {
        return None;
    }
    Some(call.ip() - entry)
}

/// The frame size a stack-ABI prologue allocates (`SUB RSP, imm` within the first few
/// instructions): in the body the caller's argument words start at `frame + 8` from RSP.
pub fn frame_size(code: &[u8], entry: u64) -> Option<u64> {
    decode(code, entry).iter().take(6).find_map(|i| {
        (i.mnemonic() == Mnemonic::Sub
            && i.op0_kind() == OpKind::Register
            && i.op0_register() == Register::RSP
            && matches!(
                i.op1_kind(),
                OpKind::Immediate8to64 | OpKind::Immediate32to64
            ))
        .then(|| i.immediate(1))
    })
}

/// The `struct pt_regs` slot of a 64-bit general-purpose register.
fn pt_regs_slot(register: Register) -> Option<u32> {
    Some(match register {
        Register::RAX => reg::RAX,
        Register::RBX => reg::RBX,
        Register::RCX => reg::RCX,
        Register::RDX => reg::RDX,
        Register::RSI => reg::RSI,
        Register::RDI => reg::RDI,
        Register::R8 => reg::R8,
        Register::R9 => reg::R9,
        Register::R10 => reg::R10,
        Register::R11 => reg::R11,
        Register::R12 => reg::R12,
        Register::R13 => reg::R13,
        Register::R14 => reg::R14,
        Register::R15 => reg::R15,
        _ => return None,
    })
}

/// Addresses of the `RET` instructions in a function's code (cgo's `runtime.asmcgocall`: a
/// return is probed with entry-style uprobes on its `RET`s, never with a uretprobe).
pub fn ret_addresses(code: &[u8], entry: u64) -> Vec<u64> {
    decode(code, entry)
        .iter()
        .filter(|instruction| instruction.mnemonic() == Mnemonic::Ret)
        .map(Instruction::ip)
        .collect()
}

#[cfg(test)]
mod tests {
    //! Byte sequences as Go 1.12/1.13 emit them (taken from timerproc and time.Sleep of real
    //! binaries, shortened).

    use super::*;

    const ENTRY: u64 = 0x44_9c00;

    #[test]
    fn finds_the_only_direct_call_of_a_callee() {
        let code = [
            0xe8, 0xfb, 0x00, 0x00, 0x00, // call ENTRY+0x100
            0x48, 0x89, 0xc3, // mov rbx,rax
            0xe8, 0xf3, 0x01, 0x00, 0x00, // call ENTRY+0x200
            0xff, 0xd2, // call rdx
        ];
        assert_eq!(only_direct_call_to(&code, ENTRY, ENTRY + 0x200), Some(8));
        assert_eq!(only_direct_call_to(&code, ENTRY, ENTRY + 0x300), None);
        let twice = [code[..5].to_vec(), vec![0xe8, 0xf6, 0x00, 0x00, 0x00]].concat();
        assert_eq!(only_direct_call_to(&twice, ENTRY, ENTRY + 0x100), None);
    }

    #[test]
    fn finds_the_callback_load_with_its_argument_loads() {
        let code = [
            0x48, 0x8b, 0x44, 0x24, 0x20, // mov rax,[rsp+0x20]   (a local, not a field)
            0x48, 0x8b, 0x41, 0x20, // mov rax,[rcx+0x20]         (no argument loads follow)
            0x48, 0x89, 0x44, 0x24, 0x58, // mov [rsp+0x58],rax
            0x48, 0x8b, 0x43, 0x20, // mov rax,[rbx+0x20]         t.f
            0x48, 0x89, 0x44, 0x24, 0x58, // mov [rsp+0x58],rax
            0x48, 0x8b, 0x73, 0x30, // mov rsi,[rbx+0x30]         t.arg data
            0x48, 0x8b, 0x7b, 0x28, // mov rdi,[rbx+0x28]         t.arg type
        ];
        assert_eq!(
            timer_callback_load(&code, ENTRY, 0x20, &[0x28, 0x30]),
            Some(TimerAccess {
                offset: 14,
                timer_register: reg::RBX
            })
        );
        assert_eq!(timer_callback_load(&code, ENTRY, 0x18, &[0x28]), None);
    }

    #[test]
    fn probes_after_the_callback_store() {
        let code = [
            0x0f, 0x11, 0x42, 0x20, // movups [rdx+0x20],xmm0    (zeroing, not a GPR store)
            0x48, 0x89, 0x54, 0x24, 0x20, // mov [rsp+0x20],rdx  (a spill)
            0x48, 0x89, 0x51, 0x20, // mov [rcx+0x20],rdx         t.f = goroutineReady
            0x48, 0x8d, 0x15, 0, 0, 0, 0, // lea rdx,[rip]       (the probe goes here)
        ];
        assert_eq!(
            after_timer_callback_store(&code, ENTRY, 0x20),
            Some(TimerAccess {
                offset: 13,
                timer_register: reg::RCX
            })
        );
    }

    #[test]
    fn finds_the_only_indirect_call_and_the_frame() {
        let code = [
            0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff, // mov rcx,fs:[-8]
            0x48, 0x3b, 0x61, 0x10, // cmp rsp,[rcx+0x10]
            0x0f, 0x86, 0x27, 0x03, 0, 0, // jbe
            0x48, 0x83, 0xec, 0x70, // sub rsp,0x70
            0x48, 0x8b, 0x02, // mov rax,[rdx]
            0xff, 0xd0, // call rax
            0x48, 0x8b, 0x44, 0x24, 0x78, // mov rax,[rsp+0x78]
        ];
        assert_eq!(frame_size(&code, ENTRY), Some(0x70));
        assert_eq!(
            only_indirect_call(&code, ENTRY),
            Some(IndirectCall {
                call_offset: 26,
                return_offset: 28
            })
        );
        let mut twice = code.to_vec();
        twice.extend_from_slice(&[0xff, 0xd0]);
        assert_eq!(only_indirect_call(&twice, ENTRY), None);
    }

    #[test]
    fn finds_every_ret() {
        // mov rax,rdi; ret; nop; cmp rax,1; jne -?; ret
        let code = [
            0x48, 0x89, 0xf8, 0xc3, 0x90, 0x48, 0x83, 0xf8, 0x01, 0x75, 0xf5, 0xc3,
        ];
        assert_eq!(ret_addresses(&code, 0x1000), vec![0x1003, 0x100b]);
    }
}
