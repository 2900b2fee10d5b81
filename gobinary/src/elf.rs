//! The ELF facts every other reader needs, from one parse of the file: symbols, segments,
//! sections, build ids, PIE relocations.

use std::{collections::HashMap, sync::OnceLock};

use object::{
    CompressedFileRange, Object as _, ObjectSection as _, ObjectSymbol as _, elf,
    read::elf::ProgramHeader as _,
};

use crate::BinaryError;

/// A function symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Link-time virtual address.
    pub address: u64,
    pub size: u64,
}

/// A loadable segment (`PT_LOAD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub executable: bool,
    pub writable: bool,
}

/// A section's link address and where its bytes are in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub address: u64,
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug)]
pub struct ElfInfo {
    /// Function symbols by name.
    pub symbols: HashMap<String, Symbol>,
    /// Data symbols (the runtime's globals) by name.
    pub objects: HashMap<String, Symbol>,
    /// Function symbols by address, built on first use (C code of cgo binaries).
    by_address: OnceLock<FunctionTable>,
    /// `.gopclntab`, or `.data.rel.ro.gopclntab` in PIE builds of Go 1.19-1.25.
    pub pclntab_section: Option<Section>,
    /// DWARF sections by their `.debug_*` name (also for `.zdebug_*`), where and how their
    /// bytes are stored, so DWARF can be loaded later without another parse.
    pub debug_sections: HashMap<String, CompressedFileRange>,
    pub segments: Vec<Segment>,
    /// `ET_DYN`: loaded at a random bias (Go PIE still links at 0x400000).
    pub position_independent: bool,
    /// GNU build id (hex), empty when absent.
    pub gnu_build_id: String,
    /// Go build id (`.note.go.buildid`), empty when absent.
    pub go_build_id: String,
    /// `.go.buildinfo`, when the section header survives.
    pub buildinfo_section: Option<Section>,
    pub has_dwarf: bool,
    /// `R_X86_64_RELATIVE` relocations of a PIE: link address of the word -> the link-time value
    /// the loader puts there. Some linkers leave the word itself 0 in the file.
    pub relative_relocations: HashMap<u64, u64>,
}

impl ElfInfo {
    pub fn parse(image: &[u8]) -> Result<Self, BinaryError> {
        let file = object::File::parse(image).map_err(|_| BinaryError::NotElf)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(BinaryError::Architecture(format!(
                "{:?}",
                file.architecture()
            )));
        }
        if !matches!(file, object::File::Elf64(_)) {
            return Err(BinaryError::NotElf);
        }
        let mut symbols = HashMap::new();
        let mut objects = HashMap::new();
        for s in file.symbols().filter(|s| s.address() != 0) {
            let table = match s.kind() {
                object::SymbolKind::Text => &mut symbols,
                object::SymbolKind::Data => &mut objects,
                _ => continue,
            };
            if let Ok(name) = s.name() {
                let symbol = Symbol {
                    address: s.address(),
                    size: s.size(),
                };
                table.insert(name.to_owned(), symbol);
            }
        }
        let section = |names: &[&str]| {
            names.iter().find_map(|name| {
                let section = file.section_by_name(name)?;
                let (offset, size) = section.file_range()?;
                Some(Section {
                    address: section.address(),
                    offset,
                    size,
                })
            })
        };
        let pclntab_section = section(&[".gopclntab", ".data.rel.ro.gopclntab"]);
        let debug_sections = file
            .sections()
            .filter_map(|s| {
                let name = s.name().ok()?;
                let name = match name.strip_prefix(".zdebug_") {
                    Some(rest) => format!(".debug_{rest}"),
                    None if name.starts_with(".debug_") => name.to_owned(),
                    None => return None,
                };
                Some((name, s.compressed_file_range().ok()?))
            })
            .collect();
        let segments = load_segments(&file);
        let go_build_id = file
            .section_by_name(".note.go.buildid")
            .and_then(|s| s.data().ok())
            .and_then(go_note_build_id)
            .unwrap_or_default();
        let gnu_build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(hex_string)
            .unwrap_or_default();
        let buildinfo_section = section(&[".go.buildinfo"]);
        // Also finds `.zdebug_info` (zlib-compressed DWARF of older Go releases).
        let has_dwarf = file.section_by_name(".debug_info").is_some();
        let relative_relocations = file
            .dynamic_relocations()
            .into_iter()
            .flatten()
            .filter(|(_, r)| {
                matches!(r.flags(), object::RelocationFlags::Elf { r_type } if r_type == elf::R_X86_64_RELATIVE)
            })
            .map(|(address, r)| (address, r.addend() as u64))
            .collect();
        Ok(Self {
            symbols,
            objects,
            by_address: OnceLock::new(),
            pclntab_section,
            debug_sections,
            segments,
            position_independent: file.kind() == object::ObjectKind::Dynamic,
            gnu_build_id,
            go_build_id,
            buildinfo_section,
            has_dwarf,
            relative_relocations,
        })
    }

    /// File offset of a link-time address, for uprobes (which attach by file offset).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz)
            .map(|s| vaddr - s.vaddr + s.offset)
    }

    /// The first executable segment: the one `/proc/PID/maps` shows as `r-xp` for the binary.
    pub fn text_segment(&self) -> Option<&Segment> {
        self.segments.iter().find(|s| s.executable)
    }

    /// The function symbol containing a link address.
    pub fn function_at(&self, address: u64) -> Option<&str> {
        self.by_address
            .get_or_init(|| {
                FunctionTable::new(
                    self.symbols
                        .iter()
                        .map(|(name, s)| (s.address, s.size, name.clone())),
                )
            })
            .function_at(address)
    }

    /// The build id pprof mappings carry: the GNU one when present (what other tools key on),
    /// else Go's.
    pub fn build_id(&self) -> &str {
        if self.gnu_build_id.is_empty() {
            &self.go_build_id
        } else {
            &self.gnu_build_id
        }
    }
}

/// Function symbols sorted by address, for looking up the function at an address.
#[derive(Debug, Default)]
pub struct FunctionTable(Vec<(u64, u64, String)>);

impl FunctionTable {
    /// From (address, size, name) triples; of several symbols at one address the first is kept.
    pub fn new(functions: impl IntoIterator<Item = (u64, u64, String)>) -> Self {
        let mut functions: Vec<_> = functions.into_iter().collect();
        functions.sort();
        functions.dedup_by_key(|(address, _, _)| *address);
        Self(functions)
    }

    /// The function containing a link address; a zero-size symbol covers up to the next one.
    pub fn function_at(&self, address: u64) -> Option<&str> {
        let index = self
            .0
            .partition_point(|(a, _, _)| *a <= address)
            .checked_sub(1)?;
        let (start, size, name) = &self.0[index];
        (*size == 0 || address < start + size).then_some(name.as_str())
    }
}

/// The `PT_LOAD` segments of a 64-bit ELF file (none for anything else). Segments whose end
/// address or end offset does not fit in 64 bits (a damaged file) are left out, so `vaddr +
/// memsz`, `vaddr + filesz` and `offset + filesz` never overflow for the callers.
fn load_segments(file: &object::File) -> Vec<Segment> {
    let object::File::Elf64(elf_file) = file else {
        return Vec::new();
    };
    let endian = elf_file.endian();
    elf_file
        .elf_program_headers()
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| Segment {
            vaddr: ph.p_vaddr(endian),
            memsz: ph.p_memsz(endian),
            offset: ph.p_offset(endian),
            filesz: ph.p_filesz(endian),
            executable: ph.p_flags(endian) & elf::PF_X != 0,
            writable: ph.p_flags(endian) & elf::PF_W != 0,
        })
        .filter(|s| {
            s.vaddr.checked_add(s.memsz.max(s.filesz)).is_some()
                && s.offset.checked_add(s.filesz).is_some()
        })
        .collect()
}

/// `.note.go.buildid` is an ELF note named "Go" of type 4 whose payload is the build id string.
fn go_note_build_id(note: &[u8]) -> Option<String> {
    let word = |at: usize| {
        note.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let namesz = word(0)? as usize;
    let descsz = word(4)? as usize;
    let desc_at = 12 + namesz.div_ceil(4) * 4;
    let desc = note.get(desc_at..desc_at + descsz)?;
    Some(String::from_utf8_lossy(desc).into_owned())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
