//! Where to probe Go's calls into C (cgo), so memory mapped from C is attributed to the Go code
//! that called it: `runtime.cgocall` at its entry (it is nosplit; the Go stack is walkable
//! there) and every `RET` of `runtime.asmcgocall` (C has returned, on the same thread; a return
//! is probed with entry-style uprobes on its `RET`s, never with a uretprobe).

use iced_x86::{Decoder, DecoderOptions, Mnemonic};

use crate::{
    hooks::PlanError,
    target::{Target, prologue},
};

/// File offsets of the cgo probes in one binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgoHooks {
    /// `runtime.cgocall`, at its entry.
    pub call: u64,
    /// Each `RET` instruction of `runtime.asmcgocall`.
    pub returns: Vec<u64>,
}

const CGOCALL: &str = "runtime.cgocall";
const ASMCGOCALL: &str = "runtime.asmcgocall";

impl CgoHooks {
    /// The hooks for a binary built with cgo; `None` for a pure-Go binary.
    pub fn for_target(target: &Target) -> Result<Option<Self>, PlanError> {
        if target.buildinfo.setting("CGO_ENABLED") != Some("1") {
            return Ok(None);
        }
        let cgocall = target
            .function(CGOCALL)
            .ok_or(PlanError::MissingSymbol(CGOCALL))?;
        let code = target
            .code(cgocall, 64)
            .ok_or(PlanError::UnrecognizedPrologue(CGOCALL))?;
        // cgocall is nosplit: no stack check, so its entry runs exactly once per call and the
        // cgo programs need no morestack filtering.
        let entry_offset = prologue::probe_point(code, cgocall.address)
            .filter(|point| !point.on_stack_check)
            .ok_or(PlanError::UnrecognizedPrologue(CGOCALL))?
            .offset;
        let call = target
            .elf
            .file_offset(cgocall.address + entry_offset)
            .ok_or(PlanError::MissingSymbol(CGOCALL))?;

        let asmcgocall = target
            .function(ASMCGOCALL)
            .ok_or(PlanError::MissingSymbol(ASMCGOCALL))?;
        let size = usize::try_from(asmcgocall.size).unwrap_or(0);
        let body = target
            .code(asmcgocall, size)
            .filter(|body| !body.is_empty())
            .ok_or(PlanError::UnrecognizedPrologue(ASMCGOCALL))?;
        let returns: Vec<u64> = ret_addresses(body, asmcgocall.address)
            .into_iter()
            .filter_map(|address| target.elf.file_offset(address))
            .collect();
        if returns.is_empty() {
            return Err(PlanError::UnrecognizedPrologue(ASMCGOCALL));
        }
        Ok(Some(Self { call, returns }))
    }
}

/// Addresses of the `RET` instructions in a function's code.
fn ret_addresses(code: &[u8], entry: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut returns = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.mnemonic() == Mnemonic::Ret {
            returns.push(instruction.ip());
        }
    }
    returns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_ret() {
        // mov rax,rdi; ret; nop; cmp rax,1; jne -?; ret
        let code = [
            0x48, 0x89, 0xf8, 0xc3, 0x90, 0x48, 0x83, 0xf8, 0x01, 0x75, 0xf5, 0xc3,
        ];
        assert_eq!(ret_addresses(&code, 0x1000), vec![0x1003, 0x100b]);
    }
}
