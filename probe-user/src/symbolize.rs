//! Stage 5, symbolize: runtime addresses to frames (function, file, line, inlined frames) from
//! the binary's DWARF, falling back to its symbol table. Cached per address.

use std::{collections::HashMap, path::Path};

use analyzer::Frame;

#[derive(Debug, thiserror::Error)]
#[error("cannot read debug info of {path}: {reason}")]
pub struct SymbolizeError {
    path: String,
    reason: String,
}

pub struct Symbolizer {
    loader: addr2line::Loader,
    /// Runtime address minus link address.
    bias: u64,
    frames: HashMap<u64, Vec<Frame>>,
}

impl Symbolizer {
    pub fn new(binary: &Path, bias: u64) -> Result<Self, SymbolizeError> {
        let loader = addr2line::Loader::new(binary).map_err(|e| SymbolizeError {
            path: binary.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            loader,
            bias,
            frames: HashMap::new(),
        })
    }

    /// Frames at a runtime address, innermost inlined frame first, the containing function last.
    /// Empty when the address is outside the binary's code.
    pub fn frames(&mut self, address: u64) -> &[Frame] {
        let link_address = address.wrapping_sub(self.bias);
        let loader = &self.loader;
        self.frames
            .entry(address)
            .or_insert_with(|| lookup(loader, link_address))
    }

    /// Name of the function containing a runtime address (callbacks).
    pub fn function_name(&mut self, address: u64) -> Option<String> {
        self.frames(address).last().map(|f| f.function.clone())
    }
}

fn lookup(loader: &addr2line::Loader, link_address: u64) -> Vec<Frame> {
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
