//! Where to probe Go's calls into C (cgo), so memory mapped from C is attributed to the Go code
//! that called it: `runtime.cgocall` at its entry (it is nosplit; the Go stack is walkable
//! there) and every `RET` of `runtime.asmcgocall` (C has returned, on the same thread; a return
//! is probed with entry-style uprobes on its `RET`s, never with a uretprobe).

use gobinary::{GoBinary, body, prologue};

use crate::plan::PlanError;

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
    pub fn for_binary(target: &GoBinary) -> Result<Option<Self>, PlanError> {
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
        let code = target
            .code(asmcgocall, size)
            .filter(|code| !code.is_empty())
            .ok_or(PlanError::UnrecognizedPrologue(ASMCGOCALL))?;
        let returns: Vec<u64> = body::ret_addresses(code, asmcgocall.address)
            .into_iter()
            .filter_map(|address| target.elf.file_offset(address))
            .collect();
        if returns.is_empty() {
            return Err(PlanError::UnrecognizedPrologue(ASMCGOCALL));
        }
        Ok(Some(Self { call, returns }))
    }
}
