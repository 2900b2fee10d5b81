//! ELF facts the probe needs: symbols, where code lives in the file, build ids.

use std::collections::HashMap;

use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, elf, read::elf::ProgramHeader as _,
};

use super::TargetError;

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

#[derive(Debug)]
pub struct ElfInfo {
    pub symbols: HashMap<String, Symbol>,
    pub segments: Vec<Segment>,
    /// `ET_DYN`: loaded at a random bias (Go PIE still links at 0x400000).
    pub position_independent: bool,
    /// GNU build id (hex), empty when absent.
    pub gnu_build_id: String,
    /// Go build id (`.note.go.buildid`), empty when absent.
    pub go_build_id: String,
    /// Contents of `.go.buildinfo`, when the section header survives.
    pub buildinfo_section: Option<Vec<u8>>,
    pub has_dwarf: bool,
    /// `R_X86_64_RELATIVE` relocations of a PIE: link address of the word -> the link-time value
    /// the loader puts there. Some linkers leave the word itself 0 in the file.
    pub relative_relocations: HashMap<u64, u64>,
}

impl ElfInfo {
    pub fn parse(image: &[u8]) -> Result<Self, TargetError> {
        let file = object::File::parse(image).map_err(|_| TargetError::NotElf)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(TargetError::Architecture(format!(
                "{:?}",
                file.architecture()
            )));
        }
        let symbols = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some((
                    name.to_owned(),
                    Symbol {
                        address: s.address(),
                        size: s.size(),
                    },
                ))
            })
            .collect();
        if !matches!(file, object::File::Elf64(_)) {
            return Err(TargetError::NotElf);
        }
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
        let buildinfo_section = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .map(<[u8]>::to_vec);
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

/// The `PT_LOAD` segments of a 64-bit ELF file (none for anything else). Segments whose end
/// address or end offset does not fit in 64 bits (a damaged file) are left out, so `vaddr +
/// memsz`, `vaddr + filesz` and `offset + filesz` never overflow for the callers.
pub(super) fn load_segments(file: &object::File) -> Vec<Segment> {
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
