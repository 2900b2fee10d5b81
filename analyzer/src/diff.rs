//! Comparing two profiles per function, as `go tool pprof -diff_base BASE NEW -top` does, and
//! writing the diff profile that `go tool pprof` shows with the same flag.

use std::collections::HashMap;

use serde::Serialize;

use pprof::{
    Frame, FunctionSums, MappingSpec, Profile, ProfileBuilder, ProfileError, ResolvedProfile,
    SampleLabel, ValueKind,
};

/// The label `go tool pprof` puts on base samples in a saved diff profile.
pub const BASE_LABEL: &str = "pprof::base";

/// Functions whose share of the total moved by more than this many percentage points are
/// flagged, unless the caller asks for another threshold.
pub const DEFAULT_THRESHOLD_PP: f64 = 15.0;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(
        "the profiles have different {what}: base has [{base}], new has [{new}]; diff two profiles of the same kind (e.g. two heap profiles)"
    )]
    Incompatible {
        what: &'static str,
        base: String,
        new: String,
    },
    #[error("no sample type {name:?} in the profiles; choose one of: {available}")]
    UnknownSampleType { name: String, available: String },
    #[error("the profiles have no sample types, so there is nothing to compare")]
    NoSampleTypes,
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Function name → (flat, cum), for the functions with a value.
fn values_by_name(sums: &FunctionSums) -> HashMap<&str, (i64, i64)> {
    sums.functions
        .iter()
        .enumerate()
        .map(|(f, name)| (name.as_str(), sums.values(f)))
        .filter(|&(_, (flat, cum))| flat != 0 || cum != 0)
        .collect()
}

/// Whether a function is in both profiles or only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Both,
    Appeared,
    Vanished,
}

/// One function's change. Shares are percent of each profile's total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffRow {
    pub function: String,
    pub presence: Presence,
    pub flat_base: i64,
    pub flat_new: i64,
    pub flat_delta: i64,
    pub cum_base: i64,
    pub cum_new: i64,
    pub cum_delta: i64,
    pub flat_share_base: f64,
    pub flat_share_new: f64,
    pub flat_share_delta_pp: f64,
    pub cum_share_base: f64,
    pub cum_share_new: f64,
    pub cum_share_delta_pp: f64,
    /// The flat or cum share moved by more than the threshold.
    pub flagged: bool,
}

/// The per-function comparison of two profiles for one sample type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    pub sample_type: String,
    pub unit: String,
    pub base_total: i64,
    pub new_total: i64,
    pub threshold_pp: f64,
    /// Functions whose values changed or whose share moved by more than the threshold, largest
    /// absolute flat change first (possibly cut to the top N).
    pub rows: Vec<DiffRow>,
    /// Rows left out by [`DiffReport::truncate`].
    pub omitted_rows: usize,
    /// Functions only in the new profile, and only in the base (all of them, also when truncated).
    pub appeared: Vec<String>,
    pub vanished: Vec<String>,
}

fn describe(kinds: &[ValueKind]) -> String {
    kinds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that two profiles can be compared or merged (same sample and period types), as
/// `go tool pprof -diff_base` requires.
pub fn check_compatible(base: &ResolvedProfile, new: &ResolvedProfile) -> Result<(), DiffError> {
    check_kinds(
        (&base.sample_types, &base.period_type),
        (&new.sample_types, &new.period_type),
    )
}

type Kinds<'a> = (&'a [ValueKind], &'a Option<ValueKind>);

fn check_kinds(
    (base_types, base_period): Kinds,
    (new_types, new_period): Kinds,
) -> Result<(), DiffError> {
    if base_types != new_types {
        return Err(DiffError::Incompatible {
            what: "sample types",
            base: describe(base_types),
            new: describe(new_types),
        });
    }
    if base_period != new_period {
        let show = |p: &Option<ValueKind>| p.as_ref().map_or(String::new(), ToString::to_string);
        return Err(DiffError::Incompatible {
            what: "period types",
            base: show(base_period),
            new: show(new_period),
        });
    }
    Ok(())
}

/// Resolves the sample type to compare: `name`, else the profile's default, else the last.
pub fn sample_index(profile: &ResolvedProfile, name: Option<&str>) -> Result<usize, DiffError> {
    index_or_error(
        &profile.sample_types,
        profile.sample_index(name),
        name,
        &profile.default_sample_type,
    )
}

fn index_or_error(
    types: &[ValueKind],
    index: Option<usize>,
    name: Option<&str>,
    default: &str,
) -> Result<usize, DiffError> {
    if types.is_empty() {
        return Err(DiffError::NoSampleTypes);
    }
    index.ok_or_else(|| DiffError::UnknownSampleType {
        name: name.unwrap_or(default).to_owned(),
        available: types
            .iter()
            .map(|t| t.ty.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn percent(part: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// Compares `new` against `base` per function for sample type `sample_type` (default: the
/// profile's default), flagging rows whose share moved by more than `threshold_pp` points.
pub fn diff(
    base: &ResolvedProfile,
    new: &ResolvedProfile,
    sample_type: Option<&str>,
    threshold_pp: f64,
) -> Result<DiffReport, DiffError> {
    let new = FunctionSums::from_resolved(new, sample_type);
    // The type chosen in the new profile, also when the base's default differs.
    let base = FunctionSums::from_resolved(base, new.sample_type().or(sample_type));
    diff_sums(&base, &new, sample_type, threshold_pp)
}

/// [`diff`] from per-function sums, which [`FunctionSums::read`] takes from a profile file in a
/// fraction of the time and memory that decoding and resolving it takes. `base` must sum the
/// sample type `new` sums (read it with `new.sample_type()`); `sample_type` is the name `new` was
/// read with, for the error when it has no such type.
pub fn diff_sums(
    base: &FunctionSums,
    new: &FunctionSums,
    sample_type: Option<&str>,
    threshold_pp: f64,
) -> Result<DiffReport, DiffError> {
    check_kinds(
        (&base.sample_types, &base.period_type),
        (&new.sample_types, &new.period_type),
    )?;
    let index = index_or_error(
        &new.sample_types,
        new.index,
        sample_type,
        &new.default_sample_type,
    )?;
    if base.index != Some(index) {
        return Err(DiffError::Incompatible {
            what: "summed sample types",
            base: base.sample_type().unwrap_or_default().to_owned(),
            new: describe(&new.sample_types[index..=index]),
        });
    }
    let (before, after) = (values_by_name(base), values_by_name(new));
    let (base_total, new_total) = (base.total, new.total);

    let mut names: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut rows: Vec<DiffRow> = names
        .into_iter()
        .filter_map(|name| {
            let b = before.get(name);
            let a = after.get(name);
            let (flat_base, cum_base) = b.copied().unwrap_or_default();
            let (flat_new, cum_new) = a.copied().unwrap_or_default();
            let presence = match (b, a) {
                (None, _) => Presence::Appeared,
                (_, None) => Presence::Vanished,
                _ => Presence::Both,
            };
            let flat_share_base = percent(flat_base, base_total);
            let flat_share_new = percent(flat_new, new_total);
            let cum_share_base = percent(cum_base, base_total);
            let cum_share_new = percent(cum_new, new_total);
            let flat_share_delta_pp = flat_share_new - flat_share_base;
            let cum_share_delta_pp = cum_share_new - cum_share_base;
            let flagged =
                flat_share_delta_pp.abs() > threshold_pp || cum_share_delta_pp.abs() > threshold_pp;
            // An unchanged value whose share moved a lot (because the total changed) still matters.
            if flat_base == flat_new && cum_base == cum_new && !flagged {
                return None;
            }
            Some(DiffRow {
                function: name.to_owned(),
                presence,
                flat_base,
                flat_new,
                flat_delta: flat_new - flat_base,
                cum_base,
                cum_new,
                cum_delta: cum_new - cum_base,
                flat_share_base,
                flat_share_new,
                flat_share_delta_pp,
                cum_share_base,
                cum_share_new,
                cum_share_delta_pp,
                flagged,
            })
        })
        .collect();
    rows.sort_by(|x, y| {
        y.flat_delta
            .abs()
            .cmp(&x.flat_delta.abs())
            .then(y.cum_delta.abs().cmp(&x.cum_delta.abs()))
            .then_with(|| x.function.cmp(&y.function))
    });
    let kind = &new.sample_types[index];
    let named = |presence| {
        rows.iter()
            .filter(|r| r.presence == presence)
            .map(|r| r.function.clone())
            .collect()
    };
    Ok(DiffReport {
        sample_type: kind.ty.clone(),
        unit: kind.unit.clone(),
        base_total,
        new_total,
        threshold_pp,
        appeared: named(Presence::Appeared),
        vanished: named(Presence::Vanished),
        rows,
        omitted_rows: 0,
    })
}

impl DiffReport {
    /// Keeps the `top` rows with the largest flat change, plus every flagged row so that no
    /// share shift is hidden (all rows when `top` is 0).
    pub fn truncate(&mut self, top: usize) {
        if top == 0 {
            return;
        }
        let before = self.rows.len();
        let mut rank = 0;
        self.rows.retain(|r| {
            rank += 1;
            rank <= top || r.flagged
        });
        self.omitted_rows += before - self.rows.len();
    }

    /// Rows whose share moved by more than the threshold.
    pub fn flagged(&self) -> impl Iterator<Item = &DiffRow> {
        self.rows.iter().filter(|r| r.flagged)
    }
}

/// Copies every sample of `source` into `builder`, re-interning mappings, locations and functions;
/// `negate` flips values and adds `pprof::base=true`, which is how pprof marks base samples.
fn append(
    builder: &mut ProfileBuilder,
    mappings: &mut HashMap<MappingSpec, u64>,
    source: &Profile,
    negate: bool,
) {
    let string = |i: i64| source.string_table[i as usize].clone();
    let mut mapping_ids = HashMap::new();
    for m in &source.mapping {
        let spec = MappingSpec {
            start: m.memory_start,
            limit: m.memory_limit,
            offset: m.file_offset,
            file: string(m.filename),
            build_id: string(m.build_id),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        };
        let id = *mappings
            .entry(spec.clone())
            .or_insert_with(|| builder.add_mapping(spec));
        mapping_ids.insert(m.id, id);
    }
    let functions: HashMap<u64, &pprof::proto::Function> =
        source.function.iter().map(|f| (f.id, f)).collect();
    let mut location_ids = HashMap::new();
    for l in &source.location {
        let frames: Vec<Frame> = l
            .line
            .iter()
            .filter_map(|line| {
                let f = functions.get(&line.function_id)?;
                Some(Frame {
                    function: string(f.name),
                    system_name: string(f.system_name),
                    file: string(f.filename),
                    line: line.line,
                    start_line: f.start_line,
                })
            })
            .collect();
        let mapping = mapping_ids.get(&l.mapping_id).copied().unwrap_or(0);
        location_ids.insert(l.id, builder.location(mapping, l.address, &frames));
    }
    for s in &source.sample {
        let locations: Vec<u64> = s.location_id.iter().map(|id| location_ids[id]).collect();
        let values: Vec<i64> = s
            .value
            .iter()
            .map(|&v| if negate { -v } else { v })
            .collect();
        let mut labels: Vec<SampleLabel> = s
            .label
            .iter()
            .map(|l| {
                if l.str != 0 {
                    SampleLabel::Str {
                        key: string(l.key),
                        value: string(l.str),
                    }
                } else {
                    SampleLabel::Num {
                        key: string(l.key),
                        value: l.num,
                        unit: string(l.num_unit),
                    }
                }
            })
            .collect();
        if negate {
            labels.push(SampleLabel::Str {
                key: BASE_LABEL.to_owned(),
                value: "true".to_owned(),
            });
        }
        builder.add_sample(&locations, &values, &labels);
    }
}

/// The diff profile `go tool pprof -diff_base` would save: the samples of `new` plus those of
/// `base` negated and labelled `pprof::base=true`, so that `go tool pprof` shows new − base.
/// Both profiles must have passed validation (decoded or built by this crate).
pub fn diff_profile(base: &Profile, new: &Profile) -> Result<Profile, DiffError> {
    let resolved_new = ResolvedProfile::new(new);
    check_compatible(&ResolvedProfile::new(base), &resolved_new)?;
    let types: Vec<(&str, &str)> = resolved_new
        .sample_types
        .iter()
        .map(|t| (t.ty.as_str(), t.unit.as_str()))
        .collect();
    let mut builder = ProfileBuilder::new(&types, &resolved_new.default_sample_type);
    if let Some(period) = &resolved_new.period_type {
        builder.period_type(&period.ty, &period.unit, new.period);
    }
    builder
        .time_nanos(new.time_nanos)
        .duration_nanos(new.duration_nanos);
    for comment in resolved_new.comments {
        builder.comment(comment);
    }
    let mut mappings = HashMap::new();
    // New first, so that the new profile's main binary stays mapping[0].
    append(&mut builder, &mut mappings, new, false);
    append(&mut builder, &mut mappings, base, true);
    Ok(builder.build()?)
}
