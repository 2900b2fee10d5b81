//! Struct member offsets from the binary's own DWARF, preferred over the per-version table
//! because they are right even for builds the table has never seen (GOEXPERIMENTs, new patches).

use std::{borrow::Cow, collections::HashMap};

use gimli::{AttributeValue, EndianSlice, RunTimeEndian};
use object::{Object as _, ObjectSection as _};

/// `struct name -> member name -> byte offset` for the structures asked for.
pub type StructOffsets = HashMap<String, HashMap<String, u64>>;

/// Reads the members of `wanted` structures; missing structures are simply absent. `None` when
/// the binary has no usable DWARF.
pub fn struct_offsets(image: &[u8], wanted: &[&str]) -> Option<StructOffsets> {
    let file = object::File::parse(image).ok()?;
    // `uncompressed_data` handles both SHF_COMPRESSED and Go's older `.zdebug_*` sections.
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, RunTimeEndian::Little));
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
                    let name = entry_name(&dwarf, &unit, entry);
                    current = name
                        .filter(|n| wanted.contains(&n.as_str()) && !found.contains_key(n))
                        .map(|n| (n, depth));
                }
                gimli::DW_TAG_member => {
                    let Some((struct_name, _)) = &current else {
                        continue;
                    };
                    let (Some(member), Ok(Some(AttributeValue::Udata(offset)))) = (
                        entry_name(&dwarf, &unit, entry),
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
    (!found.is_empty()).then_some(found)
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
