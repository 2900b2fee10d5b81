//! Stage 5, symbolize: runtime addresses to frames (function, file, line, inlined frames) from
//! the binary's DWARF (plain, `.zdebug_*` or `SHF_COMPRESSED`), else from its `.gopclntab`,
//! which stripped Go binaries keep; `.symtab` names what neither covers. Cached per address.

use std::{collections::HashMap, path::Path};

use analyzer::Frame;

use crate::target::{Image, Pclntab};

#[derive(Debug, thiserror::Error)]
#[error("cannot read debug info of {path}: {reason}")]
pub struct SymbolizeError {
    path: String,
    reason: String,
}

/// Where a binary's frames come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSource {
    Dwarf,
    Pclntab,
    /// Function names from `.symtab` only, or nothing.
    Symbols,
}

impl FrameSource {
    /// Written into profiles (`symbols=...`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Dwarf => "dwarf",
            Self::Pclntab => "pclntab",
            Self::Symbols => "symtab",
        }
    }
}

pub struct Symbolizer {
    /// DWARF and `.symtab`, through addr2line (which decompresses sections as needed).
    loader: addr2line::Loader,
    has_dwarf: bool,
    pclntab: Option<Pclntab>,
    /// Runtime address minus link address.
    bias: u64,
    frames: HashMap<u64, Vec<Frame>>,
}

impl Symbolizer {
    pub fn new(binary: &Path, bias: u64) -> Result<Self, SymbolizeError> {
        let error = |reason: String| SymbolizeError {
            path: binary.display().to_string(),
            reason,
        };
        let image = Image::open(binary).map_err(|e| error(e.to_string()))?;
        let has_dwarf = crate::target::ElfInfo::parse(&image)
            .map_err(|e| error(e.to_string()))?
            .has_dwarf;
        let loader = addr2line::Loader::new(binary).map_err(|e| error(e.to_string()))?;
        let pclntab = Pclntab::find(image)
            .inspect_err(|e| tracing::warn!("symbolize: {}: {e}", binary.display()))
            .ok();
        Ok(Self {
            loader,
            has_dwarf,
            pclntab,
            bias,
            frames: HashMap::new(),
        })
    }

    /// What most frames come from: DWARF when the binary has it, else the pclntab.
    pub fn source(&self) -> FrameSource {
        if self.has_dwarf {
            FrameSource::Dwarf
        } else if self.pclntab.is_some() {
            FrameSource::Pclntab
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
            FrameSource::Dwarf => true,
            FrameSource::Pclntab => self.pclntab.as_ref().is_some_and(Pclntab::has_inline_trees),
            FrameSource::Symbols => false,
        }
    }

    /// Frames at a runtime address, innermost inlined frame first, the containing function last.
    /// Empty when the address is outside the binary's code.
    pub fn frames(&mut self, address: u64) -> &[Frame] {
        let link_address = address.wrapping_sub(self.bias);
        let (loader, pclntab) = (&self.loader, self.pclntab.as_ref());
        self.frames
            .entry(address)
            .or_insert_with(|| lookup(loader, pclntab, link_address))
    }

    /// Name of the function containing a runtime address (callbacks).
    pub fn function_name(&mut self, address: u64) -> Option<String> {
        self.frames(address).last().map(|f| f.function.clone())
    }
}

/// DWARF first; the pclntab for code DWARF does not describe (all of it in a stripped binary);
/// `.symtab` for the rest (C code of a cgo binary without debug info).
fn lookup(loader: &addr2line::Loader, pclntab: Option<&Pclntab>, link_address: u64) -> Vec<Frame> {
    let mut frames = dwarf_frames(loader, link_address);
    if frames.is_empty()
        && let Some(pclntab) = pclntab
    {
        frames = pclntab
            .frames(link_address)
            .into_iter()
            .map(|frame| Frame {
                function: frame.function.to_owned(),
                system_name: frame.function.to_owned(),
                file: frame.file.to_owned(),
                line: i64::from(frame.line),
                start_line: i64::from(frame.start_line),
            })
            .collect();
    }
    if frames.is_empty()
        && let Some(name) = loader.find_symbol(link_address)
    {
        frames.push(Frame {
            function: name.to_owned(),
            system_name: name.to_owned(),
            ..Frame::default()
        });
    }
    frames
}

fn dwarf_frames(loader: &addr2line::Loader, link_address: u64) -> Vec<Frame> {
    let mut frames = Vec::new();
    if let Ok(mut iter) = loader.find_frames(link_address) {
        while let Ok(Some(frame)) = iter.next() {
            let Some(function) = frame.function.as_ref().and_then(|f| f.raw_name().ok()) else {
                continue;
            };
            let location = frame.location.as_ref();
            frames.push(Frame {
                function: function.to_string(),
                system_name: function.to_string(),
                file: location.and_then(|l| l.file).unwrap_or_default().to_owned(),
                line: location.and_then(|l| l.line).map_or(0, i64::from),
                start_line: 0,
            });
        }
    }
    frames
}
