//! The binary's DWARF, loaded on first use from the sections [`crate::elf::ElfInfo`] located (Go
//! compresses them: plain, `.zdebug_*` or `SHF_COMPRESSED`), for two things: struct member
//! offsets, preferred over the per-version tables because they are right even for builds the
//! tables have never seen (GOEXPERIMENTs, new patches); and frames of code the pclntab does not
//! describe (the C half of a cgo binary).

use std::{collections::HashMap, sync::Arc};

use gimli::{AttributeValue, EndianArcSlice, RunTimeEndian};
use object::CompressedFileRange;

/// The reader DWARF is parsed with: sections are decompressed into shared buffers once.
pub type Reader = EndianArcSlice<RunTimeEndian>;

/// `struct name -> member name -> byte offset` for the structures asked for.
pub type StructOffsets = HashMap<String, HashMap<String, u64>>;

/// A binary's DWARF sections, parsed.
pub struct Dwarf(Arc<gimli::Dwarf<Reader>>);

/// Which sections [`Dwarf::load`] decompresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The entries and their strings, and the line tables' headers (gimli parses a unit's with
    /// the unit): enough for [`Dwarf::struct_offsets`].
    Types,
    /// Everything, for [`Dwarf::context`].
    All,
}

impl Part {
    const TYPES: [gimli::SectionId; 6] = [
        gimli::SectionId::DebugInfo,
        gimli::SectionId::DebugAbbrev,
        gimli::SectionId::DebugStr,
        gimli::SectionId::DebugStrOffsets,
        gimli::SectionId::DebugLine,
        gimli::SectionId::DebugLineStr,
    ];
}

impl std::fmt::Debug for Dwarf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dwarf")
    }
}

impl Dwarf {
    /// Loads the DWARF of `image` from its debug sections; `None` without `.debug_info`.
    /// `Part::Types` decompresses only what a walk of the entries needs, which is most of the
    /// cost of attaching to a large binary: line and location tables are larger than the
    /// entries and only symbolizing code outside the pclntab needs them.
    pub fn load(
        image: &[u8],
        sections: &HashMap<String, CompressedFileRange>,
        part: Part,
    ) -> Option<Self> {
        sections.get(".debug_info")?;
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data: Arc<[u8]> = sections
                .get(id.name())
                .filter(|_| part == Part::All || Part::TYPES.contains(&id))
                .and_then(|range| range.data(image).ok()?.decompress().ok())
                .map_or_else(|| Arc::from(&[][..]), |bytes| Arc::from(&*bytes));
            Ok(EndianArcSlice::new(data, RunTimeEndian::Little))
        };
        let dwarf = gimli::Dwarf::load(load).ok()?;
        Some(Self(Arc::new(dwarf)))
    }

    /// An address-to-line lookup over this DWARF (each user keeps its own: it caches per unit).
    pub fn context(&self) -> Option<addr2line::Context<Reader>> {
        addr2line::Context::from_arc_dwarf(Arc::clone(&self.0)).ok()
    }

    /// Reads the members of `wanted` structures; missing structures are simply absent.
    pub fn struct_offsets(&self, wanted: &[&str]) -> StructOffsets {
        let dwarf = &*self.0;
        let mut found = StructOffsets::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let mut entries = unit.entries();
            let mut current: Option<(String, isize)> = None;
            let mut depth: isize = 0;
            while let Ok(Some((delta, entry))) = entries.next_dfs() {
                depth += delta;
                if current.as_ref().is_some_and(|(_, d)| depth <= *d) {
                    current = None;
                }
                match entry.tag() {
                    gimli::DW_TAG_structure_type => {
                        let name = entry_name(dwarf, &unit, entry);
                        current = name
                            .filter(|n| wanted.contains(&n.as_str()) && !found.contains_key(n))
                            .map(|n| (n, depth));
                    }
                    gimli::DW_TAG_member => {
                        let Some((struct_name, _)) = &current else {
                            continue;
                        };
                        let (Some(member), Ok(Some(AttributeValue::Udata(offset)))) = (
                            entry_name(dwarf, &unit, entry),
                            entry.attr_value(gimli::DW_AT_data_member_location),
                        ) else {
                            continue;
                        };
                        found
                            .entry(struct_name.clone())
                            .or_default()
                            .insert(member, offset);
                    }
                    _ => {}
                }
            }
            if wanted.iter().all(|w| found.contains_key(*w)) {
                break;
            }
        }
        found
    }
}

fn entry_name<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    entry: &gimli::DebuggingInformationEntry<R>,
) -> Option<String> {
    let value = entry.attr_value(gimli::DW_AT_name).ok()??;
    let name = dwarf.attr_string(unit, value).ok()?;
    Some(name.to_string_lossy().ok()?.into_owned())
}
