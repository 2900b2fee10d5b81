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

/// Where to probe a C function (libc's allocator) cheaply: the first of its opening
/// instructions that the kernel emulates instead of single-stepping out of line (`PUSH reg`, a
/// relative `JMP`/`Jcc`/`CALL`, `NOP`), when only instructions that write nothing but the flags
/// (`CMP`, `TEST`, `ENDBR64`) come before it. There the arguments and RSP are still as at the
/// call, so `[RSP]` is the return address and a uretprobe may share the probe. A branch in the
/// function into the skipped instructions or onto the probe would fire it twice per call: then,
/// and when nothing qualifies, the entry (offset 0).
pub fn c_probe_point(code: &[u8], entry: u64) -> CProbePoint {
    let instructions: Vec<Instruction> = Decoder::with_ip(64, code, entry, DecoderOptions::NONE)
        .into_iter()
        .take_while(|i| i.code() != Code::INVALID)
        .collect();
    let at_entry = CProbePoint {
        offset: 0,
        emulated: instructions.first().is_some_and(is_emulated),
    };
    let Some(probe) = instructions
        .iter()
        .take(4)
        .take_while(|i| is_emulated(i) || writes_only_flags(i))
        .find(|i| is_emulated(i))
    else {
        return at_entry;
    };
    let offset = probe.ip() - entry;
    let branches_into_skipped = instructions.iter().any(|i| {
        matches!(i.op0_kind(), OpKind::NearBranch64)
            && (entry + 1..=probe.ip()).contains(&i.near_branch_target())
    });
    if offset > 0 && branches_into_skipped {
        return at_entry;
    }
    CProbePoint {
        offset,
        emulated: true,
    }
}

/// A C function's probe point ([`c_probe_point`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CProbePoint {
    /// Offset from the function entry.
    pub offset: u64,
    /// The kernel emulates the instruction there (about 1 µs per hit); otherwise it is
    /// single-stepped (about 10 µs more).
    pub emulated: bool,
}

/// Instructions the x86 uprobe code emulates rather than single-steps (arch/x86/kernel/uprobes.c:
/// relative branches and calls, `NOP`, `PUSH reg`).
fn is_emulated(instruction: &Instruction) -> bool {
    match instruction.mnemonic() {
        Mnemonic::Push => instruction.op0_kind() == OpKind::Register,
        Mnemonic::Nop => matches!(instruction.code(), Code::Nopw | Code::Nopd),
        Mnemonic::Jmp
        | Mnemonic::Call
        | Mnemonic::Ja
        | Mnemonic::Jae
        | Mnemonic::Jb
        | Mnemonic::Jbe
        | Mnemonic::Je
        | Mnemonic::Jne
        | Mnemonic::Jg
        | Mnemonic::Jge
        | Mnemonic::Jl
        | Mnemonic::Jle
        | Mnemonic::Jo
        | Mnemonic::Jno
        | Mnemonic::Jp
        | Mnemonic::Jnp
        | Mnemonic::Js
        | Mnemonic::Jns => instruction.op0_kind() == OpKind::NearBranch64,
        _ => false,
    }
}

/// Instructions that change nothing a probe after them reads (registers, RSP, memory).
fn writes_only_flags(instruction: &Instruction) -> bool {
    matches!(
        instruction.mnemonic(),
        Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Endbr64
    )
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

    // Openings of Debian 12's glibc 2.36 allocator functions.

    #[test]
    fn c_functions_are_probed_on_their_first_emulated_instruction() {
        // malloc: push r12; push rbp; push rbx
        let malloc = [0x41, 0x54, 0x55, 0x53, 0x48, 0x89, 0xfb];
        assert_eq!(
            c_probe_point(&malloc, 0x98930),
            CProbePoint {
                offset: 0,
                emulated: true
            }
        );
        // free: test rdi,rdi; je rel32; push rbp
        let free = [0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0, 0x55];
        assert_eq!(
            c_probe_point(&free, 0x98ef0),
            CProbePoint {
                offset: 3,
                emulated: true
            }
        );
        // posix_memalign: cmp byte [rip+x],0; push r12; mov r12,rdx
        let posix_memalign = [
            0x80, 0x3d, 0x01, 0x02, 0x14, 0x00, 0x00, 0x41, 0x54, 0x49, 0x89, 0xd4,
        ];
        assert_eq!(
            c_probe_point(&posix_memalign, 0x9a280),
            CProbePoint {
                offset: 7,
                emulated: true
            }
        );
    }

    #[test]
    fn c_functions_fall_back_to_the_entry() {
        // mov rax,rdi; push rbx: the probe would miss a register write.
        let code = [0x48, 0x89, 0xf8, 0x53];
        assert_eq!(
            c_probe_point(&code, 0x1000),
            CProbePoint {
                offset: 0,
                emulated: false
            }
        );
        // test rdi,rdi; je +2; ...; jmp back onto the je: it would fire twice.
        let code = [0x48, 0x85, 0xff, 0x74, 0x02, 0x90, 0x90, 0xeb, 0xfa];
        assert_eq!(
            c_probe_point(&code, 0x1000),
            CProbePoint {
                offset: 0,
                emulated: false
            }
        );
    }
}
