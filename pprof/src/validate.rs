//! The rules of Go's `profile.CheckValid` (and of the string table), which `go tool pprof` would
//! also enforce.

use std::collections::HashSet;

use crate::proto::Profile;

/// Why a decoded or built profile breaks the rules of `profile.CheckValid` (and of the string
/// table), which `go tool pprof` would also reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProfile {
    #[error("invalid profile: string_table[0] must be the empty string")]
    StringTableStart,
    #[error(
        "invalid profile: {what} refers to string {index}, but the string table has {len} entries"
    )]
    StringIndex {
        what: &'static str,
        index: i64,
        len: usize,
    },
    #[error("invalid profile: profile has samples but no sample types")]
    NoSampleTypes,
    #[error(
        "invalid profile: sample {sample} has {values} values but the profile has {types} sample types"
    )]
    ValueCount {
        sample: usize,
        values: usize,
        types: usize,
    },
    #[error("invalid profile: {what} with reserved id 0")]
    ZeroId { what: &'static str },
    #[error("invalid profile: several {what}s have id {id}")]
    DuplicateId { what: &'static str, id: u64 },
    #[error("invalid profile: {from} refers to {to} {id}, which does not exist")]
    DanglingReference {
        from: String,
        to: &'static str,
        id: u64,
    },
}

fn check_string(what: &'static str, index: i64, len: usize) -> Result<(), InvalidProfile> {
    if index < 0 || index as usize >= len {
        return Err(InvalidProfile::StringIndex { what, index, len });
    }
    Ok(())
}

fn unique_ids(
    what: &'static str,
    ids: impl Iterator<Item = u64>,
) -> Result<HashSet<u64>, InvalidProfile> {
    let mut seen = HashSet::new();
    for id in ids {
        if id == 0 {
            return Err(InvalidProfile::ZeroId { what });
        }
        if !seen.insert(id) {
            return Err(InvalidProfile::DuplicateId { what, id });
        }
    }
    Ok(seen)
}

/// Checks what Go's `profile.CheckValid` and its decoder check: value counts, ids, references and
/// string indices.
pub fn validate(profile: &Profile) -> Result<(), InvalidProfile> {
    let strings = profile.string_table.len();
    if profile.string_table.first().is_none_or(|s| !s.is_empty()) {
        return Err(InvalidProfile::StringTableStart);
    }
    for vt in profile.sample_type.iter().chain(&profile.period_type) {
        check_string("a value type", vt.r#type, strings)?;
        check_string("a value type unit", vt.unit, strings)?;
    }
    for &index in &profile.comment {
        check_string("a comment", index, strings)?;
    }
    check_string("default_sample_type", profile.default_sample_type, strings)?;
    check_string("drop_frames", profile.drop_frames, strings)?;
    check_string("keep_frames", profile.keep_frames, strings)?;
    check_string("doc_url", profile.doc_url, strings)?;

    let types = profile.sample_type.len();
    if types == 0 && !profile.sample.is_empty() {
        return Err(InvalidProfile::NoSampleTypes);
    }
    let mappings = unique_ids("mapping", profile.mapping.iter().map(|m| m.id))?;
    for m in &profile.mapping {
        check_string("a mapping file name", m.filename, strings)?;
        check_string("a mapping build id", m.build_id, strings)?;
    }
    let functions = unique_ids("function", profile.function.iter().map(|f| f.id))?;
    for f in &profile.function {
        check_string("a function name", f.name, strings)?;
        check_string("a function system name", f.system_name, strings)?;
        check_string("a function file name", f.filename, strings)?;
    }
    let locations = unique_ids("location", profile.location.iter().map(|l| l.id))?;
    for l in &profile.location {
        if l.mapping_id != 0 && !mappings.contains(&l.mapping_id) {
            return Err(InvalidProfile::DanglingReference {
                from: format!("location {}", l.id),
                to: "mapping",
                id: l.mapping_id,
            });
        }
        if let Some(line) = l
            .line
            .iter()
            .find(|line| !functions.contains(&line.function_id))
        {
            return Err(InvalidProfile::DanglingReference {
                from: format!("a line of location {}", l.id),
                to: "function",
                id: line.function_id,
            });
        }
    }
    for (index, s) in profile.sample.iter().enumerate() {
        if s.value.len() != types {
            return Err(InvalidProfile::ValueCount {
                sample: index,
                values: s.value.len(),
                types,
            });
        }
        if let Some(&id) = s.location_id.iter().find(|id| !locations.contains(id)) {
            return Err(InvalidProfile::DanglingReference {
                from: format!("sample {index}"),
                to: "location",
                id,
            });
        }
        for label in &s.label {
            check_string("a label key", label.key, strings)?;
            check_string("a label value", label.str, strings)?;
            check_string("a label unit", label.num_unit, strings)?;
        }
    }
    Ok(())
}
