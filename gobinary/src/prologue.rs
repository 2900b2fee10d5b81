//! Where to put a uprobe in a Go function: on its stack-check branch.
//!
//! A Go function starts `CMPQ SP, 0x10(R14); JBE morestack` (systemstack functions compare
//! 0x18(R14); big frames compare R12 = SP-framesize; Go <= 1.16 loads g from TLS into a register
//! first). The CMP, with its memory operand, is single-stepped out of line by the kernel
//! (~10 µs); so is the frame setup after the JBE before Go 1.21 (`SUBQ $n, SP`). The JBE itself
//! is emulated (cheap), and there the argument registers are intact and the frame not yet pushed.
//! When the branch is taken the function restarts from its entry after growing the stack, so the
//! probe skips hits whose flags say the branch is taken (CF or ZF set): each call counts once.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Where in a function to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePoint {
    /// Offset from the function entry.
    pub offset: u64,
    /// The probe sits on the stack-check branch: hits that take it must be skipped.
    pub on_stack_check: bool,
}

/// The probe point of a function. `None` when the prologue is not a recognizable Go prologue
/// (the caller must refuse rather than guess).
///
/// A `//go:nosplit` function has no stack check and opens with its frame setup (`PUSHQ BP` since
/// Go 1.21ish, `SUBQ $n, SP` before): nothing restarts it, so its entry fires exactly once.
pub fn probe_point(code: &[u8], entry: u64) -> Option<ProbePoint> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let first = decoder.decode();
    let pushes_frame = first.mnemonic() == Mnemonic::Push && first.op0_register() == Register::RBP;
    let grows_frame = first.mnemonic() == Mnemonic::Sub
        && first.op0_register() == Register::RSP
        && matches!(
            first.op1_kind(),
            OpKind::Immediate8to64 | OpKind::Immediate32to64
        );
    if pushes_frame || grows_frame {
        return Some(ProbePoint {
            offset: 0,
            on_stack_check: false,
        });
    }
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut previous: Option<Instruction> = None;
    // The stack check is always within the first few instructions.
    for _ in 0..6 {
        if !decoder.can_decode() {
            return None;
        }
        let instruction = decoder.decode();
        if instruction.code() == Code::INVALID {
            return None;
        }
        let after_check = previous.is_some_and(|cmp| is_stack_check(&cmp));
        if after_check && matches!(instruction.mnemonic(), Mnemonic::Jbe) {
            return Some(ProbePoint {
                offset: instruction.ip() - entry,
                on_stack_check: true,
            });
        }
        previous = Some(instruction);
    }
    None
}

/// `CMP SP|R12|reg, [reg + 0x10|0x18]`: compare against g.stackguard0/1.
fn is_stack_check(instruction: &Instruction) -> bool {
    instruction.mnemonic() == Mnemonic::Cmp
        && instruction.op0_kind() == OpKind::Register
        && matches!(instruction.op0_register(), Register::RSP | Register::R12)
        && instruction.op1_kind() == OpKind::Memory
        && matches!(instruction.memory_displacement64(), 0x10 | 0x18)
        && instruction.memory_index() == Register::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_short_jbe() {
        // cmp rsp,[r14+0x10]; jbe +0x20; push rbp
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        assert_eq!(
            probe_point(&code, 0x401000),
            Some(ProbePoint {
                offset: 4,
                on_stack_check: true
            })
        );
    }

    #[test]
    fn finds_a_near_jbe_on_the_g0_guard() {
        // cmp rsp,[r14+0x18]; jbe rel32; push rbp
        let code = [0x49, 0x3b, 0x66, 0x18, 0x0f, 0x86, 0x10, 0, 0, 0, 0x55];
        assert_eq!(
            probe_point(&code, 0x401000),
            Some(ProbePoint {
                offset: 4,
                on_stack_check: true
            })
        );
    }

    #[test]
    fn handles_big_frames_comparing_r12() {
        // lea r12,[rsp-0x1000]; cmp r12,[r14+0x10]; jbe +0x40; push rbp
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xf0, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x40,
            0x55,
        ];
        assert_eq!(
            probe_point(&code, 0x401000),
            Some(ProbePoint {
                offset: 12,
                on_stack_check: true
            })
        );
    }

    #[test]
    fn handles_the_stack_abi_prologue_loading_g_from_tls() {
        // mov rcx, fs:[-8]; cmp rsp,[rcx+0x10]; jbe +0x30; sub rsp,0x18
        let code = [
            0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x48, 0x3b, 0x61, 0x10, 0x76,
            0x30, 0x48, 0x83, 0xec, 0x18,
        ];
        assert_eq!(
            probe_point(&code, 0x401000),
            Some(ProbePoint {
                offset: 13,
                on_stack_check: true
            })
        );
    }

    #[test]
    fn probes_nosplit_functions_at_their_entry() {
        // push rbp; mov rbp,rsp; sub rsp,0x10
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10];
        assert_eq!(
            probe_point(&code, 0x401000),
            Some(ProbePoint {
                offset: 0,
                on_stack_check: false
            })
        );
        // sub rsp,0x30; mov [rsp+0x28],rbp (the frame setup before Go 1.21)
        let code = [0x48, 0x83, 0xec, 0x30, 0x48, 0x89, 0x6c, 0x24, 0x28];
        assert_eq!(
            probe_point(&code, 0x401000),
            Some(ProbePoint {
                offset: 0,
                on_stack_check: false
            })
        );
    }

    #[test]
    fn rejects_code_that_is_neither() {
        // mov rax,rdi; ret
        let code = [0x48, 0x89, 0xf8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3];
        assert_eq!(probe_point(&code, 0x401000), None);
    }
}
