//! Stage 4, symbolize: runtime addresses to frames (function, file, line, inlined frames).
//! Go code is symbolized from the binary's `.gopclntab`, which every Go binary keeps, stripped
//! or not: so normal, stripped and PIE builds of a program give the same frames, and the same
//! ones the Go runtime reports (Go 1.19's DWARF puts some inlined calls on the wrong line).
//! Code the pclntab does not describe (the C half of a cgo binary) comes from DWARF, loaded only
//! then, and then from `.symtab`. Cached per address.

use std::sync::Arc;

use gobinary::{GoBinary, Pclntab, dwarf};
use pprof::Frame;
use rustc_hash::FxHashMap;

/// Where a binary's Go frames come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSource {
    Pclntab,
    /// A binary whose pclntab is unreadable, but which has DWARF.
    Dwarf,
    /// Function names from `.symtab` only, or nothing.
    Symbols,
}

impl FrameSource {
    /// Written into profiles (comment `symbols`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Pclntab => "pclntab",
            Self::Dwarf => "dwarf",
            Self::Symbols => "symtab",
        }
    }
}

pub struct Symbolizer {
    binary: Arc<GoBinary>,
    dwarf: DwarfContext,
    /// Runtime address minus link address.
    bias: u64,
    /// Keyed by address with a fast hash: a stack's addresses are looked up once per event.
    frames: FxHashMap<u64, Vec<Frame>>,
}

impl Symbolizer {
    pub fn new(binary: Arc<GoBinary>, bias: u64) -> Self {
        Self {
            binary,
            dwarf: None,
            bias,
            frames: FxHashMap::default(),
        }
    }

    /// What Go frames come from.
    pub fn source(&self) -> FrameSource {
        if self.binary.pclntab.is_some() {
            FrameSource::Pclntab
        } else if self.binary.elf.has_dwarf {
            FrameSource::Dwarf
        } else {
            FrameSource::Symbols
        }
    }

    /// Whether frames carry file names and line numbers.
    pub fn has_lines(&self) -> bool {
        self.source() != FrameSource::Symbols
    }

    /// Whether inlined calls get frames of their own.
    pub fn has_inline_frames(&self) -> bool {
        match self.source() {
            FrameSource::Pclntab => self
                .binary
                .pclntab
                .as_ref()
                .is_some_and(Pclntab::has_inline_trees),
            FrameSource::Dwarf => true,
            FrameSource::Symbols => false,
        }
    }

    /// Frames at a runtime address, innermost inlined frame first, the containing function last.
    /// Empty when the address is outside the binary's code.
    pub fn frames(&mut self, address: u64) -> &[Frame] {
        let Self {
            binary,
            dwarf,
            bias,
            frames,
        } = self;
        frames
            .entry(address)
            .or_insert_with(|| lookup(binary, dwarf, address.wrapping_sub(*bias)))
    }

    /// Whether a runtime address is in a compiler-generated wrapper (Go's unwinder elides
    /// those); `None` when the binary does not tell.
    pub fn is_wrapper(&self, address: u64) -> Option<bool> {
        self.binary.is_wrapper(address.wrapping_sub(self.bias))
    }

    /// How many distinct addresses were looked up so far.
    pub fn addresses(&self) -> usize {
        self.frames.len()
    }

    /// Name of the function containing a runtime address (callbacks).
    pub fn function_name(&mut self, address: u64) -> Option<String> {
        self.frames(address).last().map(|f| f.function.clone())
    }
}

/// DWARF lookups, built the first time an address is not in the pclntab; `None` inside when the
/// binary has no DWARF.
type DwarfContext = Option<Option<addr2line::Context<dwarf::Reader>>>;

/// The pclntab for Go code, DWARF for the rest (C code of a cgo binary), `.symtab` for what has
/// no debug info.
fn lookup(binary: &GoBinary, dwarf: &mut DwarfContext, link_address: u64) -> Vec<Frame> {
    let mut frames: Vec<Frame> = binary
        .pclntab
        .as_ref()
        .map(|pclntab| pclntab.frames(link_address))
        .unwrap_or_default()
        .into_iter()
        .map(|frame| Frame {
            function: frame.function.to_owned(),
            system_name: frame.function.to_owned(),
            file: frame.file.to_owned(),
            line: i64::from(frame.line),
            start_line: i64::from(frame.start_line),
        })
        .collect();
    if frames.is_empty() {
        frames = dwarf_frames(binary, dwarf, link_address);
    }
    if frames.is_empty()
        && let Some(name) = binary.elf.function_at(link_address)
    {
        frames.push(Frame {
            function: name.to_owned(),
            system_name: name.to_owned(),
            ..Frame::default()
        });
    }
    frames
}

fn dwarf_frames(binary: &GoBinary, dwarf: &mut DwarfContext, link_address: u64) -> Vec<Frame> {
    let context = dwarf.get_or_insert_with(|| {
        let context = binary.dwarf_with_lines().and_then(dwarf::Dwarf::context);
        tracing::debug!(
            "symbolize: DWARF lookups for code outside the pclntab: {}",
            context.is_some()
        );
        context
    });
    let Some(context) = context else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    if let Ok(mut iter) = context.find_frames(link_address).skip_all_loads() {
        while let Ok(Some(frame)) = iter.next() {
            let Some(function) = frame.function.as_ref().and_then(|f| f.raw_name().ok()) else {
                continue;
            };
            let location = frame.location.as_ref();
            frames.push(Frame {
                function: function.to_string(),
                system_name: function.to_string(),
                file: location
                    .and_then(|l| l.file)
                    .map(go_file_name)
                    .unwrap_or_default()
                    .to_owned(),
                line: location.and_then(|l| l.line).map_or(0, i64::from),
                start_line: 0,
            });
        }
    }
    frames
}

/// A file name as Go reports it (runtime.Caller, pclntab): Go's DWARF gives files without a
/// directory, such as cgo's `_cgo_gotypes.go` or `<autogenerated>`, the compilation directory
/// `.`, which addr2line joins in front.
fn go_file_name(path: &str) -> &str {
    path.strip_prefix("./").unwrap_or(path)
}
