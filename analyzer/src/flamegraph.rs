//! Flame graphs through inferno: folded stacks of one sample type, optionally differential
//! against a base profile (inferno's two-count input: base, then new).

use std::collections::BTreeMap;
use std::io::Write;

use crate::diff::{DiffError, check_compatible, sample_index};
use pprof::ResolvedProfile;

#[derive(Debug, thiserror::Error)]
pub enum FlamegraphError {
    #[error(transparent)]
    Profile(#[from] DiffError),
    #[error(
        "no sample has a positive {0} value, so there is nothing to draw; choose another --sample-index"
    )]
    NothingToDraw(String),
    #[error("cannot render the flame graph")]
    Render(#[source] std::io::Error),
}

/// What was drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlamegraphSummary {
    pub sample_type: String,
    pub stacks: usize,
    pub differential: bool,
}

/// Folded stacks (`root;...;leaf` → summed value) of column `index`.
pub fn folded_stacks(profile: &ResolvedProfile, index: usize) -> BTreeMap<String, i64> {
    let mut folded = BTreeMap::new();
    for sample in &profile.samples {
        let value = sample.values[index];
        if value == 0 || sample.stack.is_empty() {
            continue;
        }
        let names: Vec<String> = profile
            .stack(sample)
            .rev()
            // `;` separates frames in the folded format; Go names do not contain it, C++ might.
            .map(|f| f.function.replace(';', ":"))
            .collect();
        *folded.entry(names.join(";")).or_insert(0) += value;
    }
    folded
}

/// Writes an SVG flame graph of `profile` (differential against `base` when given) to `out`.
pub fn write_flamegraph(
    profile: &ResolvedProfile,
    base: Option<&ResolvedProfile>,
    sample_type: Option<&str>,
    out: impl Write,
) -> Result<FlamegraphSummary, FlamegraphError> {
    if let Some(base) = base {
        check_compatible(base, profile)?;
    }
    let index = sample_index(profile, sample_type)?;
    let kind = &profile.sample_types[index];
    let after = folded_stacks(profile, index);
    // Negative values (a saved diff profile) cannot be drawn as widths.
    let lines: Vec<String> = match base {
        None => after
            .iter()
            .filter(|&(_, &v)| v > 0)
            .map(|(stack, v)| format!("{stack} {v}"))
            .collect(),
        Some(base) => {
            let before = folded_stacks(base, index);
            let mut stacks: Vec<&String> = before.keys().chain(after.keys()).collect();
            stacks.sort_unstable();
            stacks.dedup();
            stacks
                .into_iter()
                .map(|stack| {
                    let b = before.get(stack).copied().unwrap_or(0).max(0);
                    let a = after.get(stack).copied().unwrap_or(0).max(0);
                    (stack, b, a)
                })
                .filter(|&(_, b, a)| b > 0 || a > 0)
                .map(|(stack, b, a)| format!("{stack} {b} {a}"))
                .collect()
        }
    };
    if lines.is_empty() {
        return Err(FlamegraphError::NothingToDraw(kind.to_string()));
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = match base {
        Some(_) => format!("{} (differential: red grew, blue shrank)", kind.ty),
        None => kind.ty.clone(),
    };
    options.count_name = kind.unit.clone();
    options.deterministic = true;
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(FlamegraphError::Render)?;
    Ok(FlamegraphSummary {
        sample_type: kind.to_string(),
        stacks: lines.len(),
        differential: base.is_some(),
    })
}
