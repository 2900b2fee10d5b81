//! A symbolic view of a profile for analysis: each sample's stack as source frames (inlined frames
//! expanded, leaf first) with its values and labels, and the profile's metadata as strings.

use std::collections::HashMap;

use crate::builder::SampleLabel;
use crate::proto::Profile;
use crate::vocabulary::SampleType;

/// One source-level frame. Frames are stored once per profile in [`ResolvedProfile::frames`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolvedFrame {
    /// Function name; for a location without symbols, its address in hex.
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// Index into [`ResolvedProfile::frames`].
pub type FrameId = u32;

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSample {
    /// Leaf first, inlined frames expanded (innermost first within one location).
    pub stack: Vec<FrameId>,
    pub values: Vec<i64>,
    pub labels: Vec<SampleLabel>,
}

impl ResolvedSample {
    /// The value of string label `key`, if the sample has one.
    pub fn str_label(&self, key: impl AsRef<str>) -> Option<&str> {
        let key = key.as_ref();
        self.labels.iter().find_map(|label| match label {
            SampleLabel::Str { key: k, value } if k == key => Some(value.as_str()),
            _ => None,
        })
    }
}

/// Maps ids (of locations, functions) to their position in their list. Stacks are the bulk of a
/// large profile, so the per-frame lookup matters: ids are usually small and dense (1..=n), which
/// a plain table serves far faster than a hash map; sparse ids fall back to one.
pub(crate) enum IdSlots {
    Dense(Vec<Option<usize>>),
    Sparse(HashMap<u64, usize>),
}

impl IdSlots {
    pub(crate) fn new(ids: impl ExactSizeIterator<Item = u64> + Clone) -> Self {
        let count = ids.len();
        let max = ids.clone().max().unwrap_or(0);
        if max <= 2 * count as u64 + 1024 {
            let mut table = vec![None; max as usize + 1];
            for (slot, id) in ids.enumerate() {
                table[id as usize] = Some(slot);
            }
            Self::Dense(table)
        } else {
            Self::Sparse(ids.enumerate().map(|(slot, id)| (id, slot)).collect())
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<usize> {
        match self {
            Self::Dense(table) => usize::try_from(id)
                .ok()
                .and_then(|i| table.get(i).copied().flatten()),
            Self::Sparse(map) => map.get(&id).copied(),
        }
    }
}

/// A (type, unit) pair such as (`inuse_space`, `bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueKind {
    pub ty: String,
    pub unit: String,
}

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ty, self.unit)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedProfile {
    pub sample_types: Vec<ValueKind>,
    /// Empty when the profile names none (readers then use the last sample type).
    pub default_sample_type: String,
    pub period_type: Option<ValueKind>,
    pub period: i64,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    pub comments: Vec<String>,
    /// File and build id of `mapping[0]`, the main binary; empty when unknown.
    pub main_file: String,
    pub main_build_id: String,
    pub frames: Vec<ResolvedFrame>,
    pub samples: Vec<ResolvedSample>,
}

impl ResolvedProfile {
    /// Resolves a profile that passed [`crate::validate`] (as every decoded or built one
    /// has); references that do not resolve are skipped rather than trusted.
    pub fn new(profile: &Profile) -> Self {
        let strings = &profile.string_table;
        let string = |index: i64| -> &str {
            usize::try_from(index)
                .ok()
                .and_then(|i| strings.get(i))
                .map_or("", String::as_str)
        };
        let kind = |vt: &crate::proto::ValueType| ValueKind {
            ty: string(vt.r#type).to_owned(),
            unit: string(vt.unit).to_owned(),
        };
        let functions: HashMap<u64, &crate::proto::Function> =
            profile.function.iter().map(|f| (f.id, f)).collect();

        // Frames are deduplicated by (name, file, line) string indices so that each distinct frame
        // is one small integer in every stack.
        let mut frames = Vec::new();
        let mut frame_ids: HashMap<(i64, i64, i64), FrameId> = HashMap::new();
        // Frames of every location, stored back to back; `spans[slot]` is (start, len).
        let mut location_frames: Vec<FrameId> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(profile.location.len());
        for location in &profile.location {
            let start = location_frames.len();
            for line in &location.line {
                let Some(f) = functions.get(&line.function_id) else {
                    continue;
                };
                let key = (f.name, f.filename, line.line);
                let id = *frame_ids.entry(key).or_insert_with(|| {
                    frames.push(ResolvedFrame {
                        function: string(f.name).to_owned(),
                        file: string(f.filename).to_owned(),
                        line: line.line,
                    });
                    (frames.len() - 1) as FrameId
                });
                location_frames.push(id);
            }
            if location_frames.len() == start {
                // Unsymbolized: the address is all there is, as `go tool pprof` shows it.
                frames.push(ResolvedFrame {
                    function: format!("{:#x}", location.address),
                    file: String::new(),
                    line: 0,
                });
                location_frames.push((frames.len() - 1) as FrameId);
            }
            spans.push((start, location_frames.len() - start));
        }
        let slots = IdSlots::new(profile.location.iter().map(|l| l.id));

        let samples = profile
            .sample
            .iter()
            .map(|s| {
                let mut stack = Vec::with_capacity(s.location_id.len() + 2);
                for &id in &s.location_id {
                    if let Some(slot) = slots.get(id) {
                        let (start, len) = spans[slot];
                        stack.extend_from_slice(&location_frames[start..start + len]);
                    }
                }
                ResolvedSample {
                    stack,
                    values: s.value.clone(),
                    labels: s
                        .label
                        .iter()
                        .map(|l| {
                            if l.str != 0 {
                                SampleLabel::Str {
                                    key: string(l.key).to_owned(),
                                    value: string(l.str).to_owned(),
                                }
                            } else {
                                SampleLabel::Num {
                                    key: string(l.key).to_owned(),
                                    value: l.num,
                                    unit: string(l.num_unit).to_owned(),
                                }
                            }
                        })
                        .collect(),
                }
            })
            .collect();

        let main = profile.mapping.first();
        Self {
            sample_types: profile.sample_type.iter().map(kind).collect(),
            default_sample_type: string(profile.default_sample_type).to_owned(),
            period_type: profile.period_type.as_ref().map(kind),
            period: profile.period,
            time_nanos: profile.time_nanos,
            duration_nanos: profile.duration_nanos,
            comments: profile
                .comment
                .iter()
                .map(|&c| string(c).to_owned())
                .collect(),
            main_file: main.map_or("", |m| string(m.filename)).to_owned(),
            main_build_id: main.map_or("", |m| string(m.build_id)).to_owned(),
            frames,
            samples,
        }
    }

    /// The frames of `sample`, leaf first.
    pub fn stack<'a>(
        &'a self,
        sample: &'a ResolvedSample,
    ) -> impl DoubleEndedIterator<Item = &'a ResolvedFrame> + 'a {
        sample.stack.iter().map(|&id| &self.frames[id as usize])
    }

    /// The value of a `key=value` comment, such as `go_version` in timerscope's profiles.
    pub fn comment_value(&self, key: impl AsRef<str>) -> Option<&str> {
        let key = key.as_ref();
        self.comments.iter().find_map(|c| {
            c.split_once('=')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim())
        })
    }

    /// Index of the sample type named `name`, or of the default one (the last one when the profile
    /// names none, as `go tool pprof` does).
    pub fn sample_index(&self, name: Option<&str>) -> Option<usize> {
        sample_index_in(&self.sample_types, &self.default_sample_type, name)
    }

    /// Index of one of timerscope's sample types.
    pub fn column(&self, sample_type: SampleType) -> Option<usize> {
        self.sample_index(Some(sample_type.as_str()))
    }

    /// Whether the profile has a sample type of this name.
    pub fn has_sample_type(&self, name: impl AsRef<str>) -> bool {
        self.sample_types.iter().any(|t| t.ty == name.as_ref())
    }

    /// Sum of column `index` over all samples.
    pub fn total(&self, index: usize) -> i64 {
        self.samples.iter().map(|s| s.values[index]).sum()
    }
}

/// Index of the sample type named `name` (or `default` when `None`) in `types`; the last one
/// when neither names one, as `go tool pprof` does.
pub(crate) fn sample_index_in(
    types: &[ValueKind],
    default: &str,
    name: Option<&str>,
) -> Option<usize> {
    let wanted = name.unwrap_or(default);
    if wanted.is_empty() {
        return types.len().checked_sub(1);
    }
    types.iter().position(|t| t.ty == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Frame, MappingSpec, ProfileBuilder};

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            file: "main.go".to_owned(),
            line,
            ..Frame::default()
        }
    }

    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(&[("samples", "count")], "");
        b.comment("go_version=go1.22.10".to_owned());
        let m = b.add_mapping(MappingSpec {
            build_id: "bid".to_owned(),
            ..MappingSpec::default()
        });
        let inlined = b.location(m, 0x10, &[frame("time.After", 5), frame("main.poll", 9)]);
        let caller = b.location(m, 0x20, &[frame("main.main", 20)]);
        let bare = b.location(m, 0x30, &[]);
        b.add_sample(&[inlined, caller, bare], &[4], &[]);
        b.build().unwrap()
    }

    fn names(r: &ResolvedProfile) -> Vec<String> {
        r.stack(&r.samples[0]).map(|f| f.function.clone()).collect()
    }

    #[test]
    fn stacks_expand_inlined_frames_leaf_first() {
        let r = ResolvedProfile::new(&profile());
        assert_eq!(names(&r), ["time.After", "main.poll", "main.main", "0x30"]);
        assert_eq!(r.comment_value("go_version"), Some("go1.22.10"));
        assert_eq!(r.main_build_id, "bid");
        assert_eq!(r.sample_index(None), Some(0), "no default: the last type");
        assert_eq!(r.total(0), 4);
    }

    #[test]
    fn sparse_location_ids_resolve_like_dense_ones() {
        let mut p = profile();
        let sparse = |id: u64| (id << 40) | 0xabc;
        for l in &mut p.location {
            l.id = sparse(l.id);
        }
        for s in &mut p.sample {
            for id in &mut s.location_id {
                *id = sparse(*id);
            }
        }
        let r = ResolvedProfile::new(&p);
        assert_eq!(names(&r), ["time.After", "main.poll", "main.main", "0x30"]);
    }
}
