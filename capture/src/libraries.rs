//! Shared libraries mapped into the target (libc, the C parts of a cgo program): which one an
//! address falls in, and the function there, from the library's own `.symtab`/`.dynsym`.
//!
//! Libraries are read through `/proc/PID/map_files/`, which works for files that exist only
//! inside the target's mount namespace, and while the process is alive: [`Libraries::refresh`]
//! loads new ones as they are mapped, so they can still be named after the target exited.

use std::{collections::HashMap, fs};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};

use gobinary::{
    elf::FunctionTable,
    process::{self, MapEntry},
};

/// One library's function symbols and how its file offsets map to its addresses.
struct LibrarySymbols {
    functions: FunctionTable,
    /// (file offset, link address, file size) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

impl LibrarySymbols {
    fn parse(data: &[u8]) -> Option<Self> {
        let file = object::File::parse(data).ok()?;
        let functions = FunctionTable::new(
            file.symbols()
                .chain(file.dynamic_symbols())
                .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
                .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned()))),
        );
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        Some(Self {
            functions,
            segments,
        })
    }

    /// The function at a file offset.
    fn function_at(&self, file_offset: u64) -> Option<&str> {
        let &(offset, address, _) = self
            .segments
            .iter()
            .find(|(offset, _, size)| (*offset..offset + size).contains(&file_offset))?;
        self.functions.function_at(file_offset - offset + address)
    }
}

/// The executable mappings of one process's libraries, and their symbols.
pub struct Libraries {
    pid: u32,
    /// The target's own binary (symbolized from DWARF/pclntab elsewhere).
    main_binary: String,
    mappings: Vec<MapEntry>,
    /// Symbols by library path; `None` when the file has none or could not be read.
    symbols: HashMap<String, Option<LibrarySymbols>>,
}

impl Libraries {
    pub fn new(pid: u32, main_binary: &str) -> Self {
        let mut libraries = Self {
            pid,
            main_binary: main_binary.to_owned(),
            mappings: Vec::new(),
            symbols: HashMap::new(),
        };
        if let Ok(maps) = process::maps(pid) {
            libraries.refresh(maps);
        }
        libraries
    }

    /// Picks up libraries mapped since the last call (dlopen, or the dynamic loader after
    /// exec) from the process's `/proc/PID/maps`. Cheap when nothing changed.
    pub fn refresh(&mut self, maps: Vec<MapEntry>) {
        for entry in maps {
            let is_library = entry.perms.contains('x')
                && entry.path.starts_with('/')
                && entry.path != self.main_binary;
            if !is_library || self.mappings.iter().any(|m| m.start == entry.start) {
                continue;
            }
            if !self.symbols.contains_key(&entry.path) {
                let file = format!(
                    "/proc/{}/map_files/{:x}-{:x}",
                    self.pid, entry.start, entry.end
                );
                let symbols = fs::read(&file)
                    .ok()
                    .and_then(|data| LibrarySymbols::parse(&data));
                self.symbols.insert(entry.path.clone(), symbols);
            }
            self.mappings.push(entry);
        }
    }

    /// The library mapping holding a runtime address, and the function there when known.
    pub fn lookup(&self, address: u64) -> Option<(&MapEntry, Option<&str>)> {
        let mapping = self
            .mappings
            .iter()
            .find(|m| (m.start..m.end).contains(&address))?;
        let function = self
            .symbols
            .get(&mapping.path)?
            .as_ref()
            .and_then(|symbols| symbols.function_at(address - mapping.start + mapping.offset));
        Some((mapping, function))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_functions_of_our_own_libc() {
        let pid = std::process::id();
        let own = fs::read_link("/proc/self/exe").unwrap();
        let libraries = Libraries::new(pid, own.to_str().unwrap());
        // The address of libc's `getpid`, as this process has it mapped.
        let getpid = libc::getpid as *const () as u64;
        let (mapping, function) = libraries.lookup(getpid).expect("libc is mapped");
        assert!(mapping.path.contains("libc"), "{}", mapping.path);
        // libc may export it under an alias too (`__getpid`).
        assert!(
            function.is_some_and(|f| f.ends_with("getpid")),
            "{function:?}"
        );
        assert!(libraries.lookup(0x10).is_none());
    }
}
