//! Building profiles. The builder interns strings, functions, locations and samples so that callers
//! (the recorder, the diff writer, tests) can add frames and samples in whatever order they meet
//! them and still get a compact profile that `go tool pprof` accepts.

use std::collections::HashMap;

use crate::error::ProfileError;
use crate::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
use crate::validate::validate;

/// One source frame of a location. In [`ProfileBuilder::location`] frames go innermost (inlined)
/// first and the physical caller last, as in `Location.line`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: String,
    pub system_name: String,
    pub file: String,
    pub line: i64,
    pub start_line: i64,
}

/// A binary or library mapped into the profiled process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MappingSpec {
    pub start: u64,
    pub limit: u64,
    pub offset: u64,
    pub file: String,
    pub build_id: String,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

/// A per-sample label: a string (`kind=ticker`) or a number with a unit (`bytes=4096 bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SampleLabel {
    Str {
        key: String,
        value: String,
    },
    Num {
        key: String,
        value: i64,
        unit: String,
    },
}

/// Interns strings into a pprof string table, index 0 being `""`.
#[derive(Debug)]
struct StringTable {
    strings: Vec<String>,
    index: HashMap<String, i64>,
}

impl StringTable {
    fn new() -> Self {
        let mut table = Self {
            strings: Vec::new(),
            index: HashMap::new(),
        };
        table.intern("");
        table
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Locations with an address are identified by it; address-less locations (synthetic stacks from
/// an already symbolized source) are identified by their frames, so that two different functions
/// at "address 0" do not collapse into one location.
#[derive(Debug, PartialEq, Eq, Hash)]
enum LocationKey {
    Address { mapping_id: u64, address: u64 },
    Frames { mapping_id: u64, lines: Vec<Line> },
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SampleKey {
    location_ids: Vec<u64>,
    labels: Vec<Label>,
}

/// Builds a [`Profile`] with interned strings, functions, locations and merged samples.
#[derive(Debug)]
pub struct ProfileBuilder {
    strings: StringTable,
    sample_types: Vec<ValueType>,
    default_sample_type: String,
    period_type: Option<ValueType>,
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
    comments: Vec<i64>,
    mappings: Vec<Mapping>,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64, i64, i64), u64>,
    locations: Vec<Location>,
    location_ids: HashMap<LocationKey, u64>,
    samples: Vec<Sample>,
    sample_index: HashMap<SampleKey, usize>,
}

impl ProfileBuilder {
    /// `sample_types` are (type, unit) pairs, one per value of every sample.
    /// `default_sample_type` must be one of the types; [`Self::build`] reports it otherwise.
    pub fn new(sample_types: &[(&str, &str)], default_sample_type: &str) -> Self {
        let mut strings = StringTable::new();
        let sample_types = sample_types
            .iter()
            .map(|(ty, unit)| ValueType {
                r#type: strings.intern(ty),
                unit: strings.intern(unit),
            })
            .collect();
        Self {
            strings,
            sample_types,
            default_sample_type: default_sample_type.to_owned(),
            period_type: None,
            period: 0,
            time_nanos: 0,
            duration_nanos: 0,
            comments: Vec::new(),
            mappings: Vec::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            samples: Vec::new(),
            sample_index: HashMap::new(),
        }
    }

    pub fn period_type(&mut self, ty: &str, unit: &str, period: i64) -> &mut Self {
        self.period_type = Some(ValueType {
            r#type: self.strings.intern(ty),
            unit: self.strings.intern(unit),
        });
        self.period = period;
        self
    }

    /// Start of collection, nanoseconds since the Unix epoch.
    pub fn time_nanos(&mut self, nanos: i64) -> &mut Self {
        self.time_nanos = nanos;
        self
    }

    pub fn duration_nanos(&mut self, nanos: i64) -> &mut Self {
        self.duration_nanos = nanos;
        self
    }

    /// Free-form comment; timerscope writes `key=value` comments such as `go_version=go1.23.9`.
    pub fn comment(&mut self, text: String) -> &mut Self {
        let index = self.strings.intern(&text);
        self.comments.push(index);
        self
    }

    /// Adds a mapping and returns its id. The first mapping added is the main binary.
    pub fn add_mapping(&mut self, spec: MappingSpec) -> u64 {
        let id = self.mappings.len() as u64 + 1;
        let mapping = Mapping {
            id,
            memory_start: spec.start,
            memory_limit: spec.limit,
            file_offset: spec.offset,
            filename: self.strings.intern(&spec.file),
            build_id: self.strings.intern(&spec.build_id),
            has_functions: spec.has_functions,
            has_filenames: spec.has_filenames,
            has_line_numbers: spec.has_line_numbers,
            has_inline_frames: spec.has_inline_frames,
        };
        self.mappings.push(mapping);
        id
    }

    fn function(&mut self, frame: &Frame) -> u64 {
        let key = (
            self.strings.intern(&frame.function),
            self.strings.intern(&frame.system_name),
            self.strings.intern(&frame.file),
            frame.start_line,
        );
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(Function {
            id,
            name: key.0,
            system_name: key.1,
            filename: key.2,
            start_line: key.3,
        });
        self.function_ids.insert(key, id);
        id
    }

    /// Returns the id of the location at `address` in mapping `mapping_id` (0: no mapping),
    /// creating it with `frames` (innermost first) the first time. A later call with the same
    /// mapping and non-zero address returns the same id and ignores its frames.
    pub fn location(&mut self, mapping_id: u64, address: u64, frames: &[Frame]) -> u64 {
        if address != 0 {
            let key = LocationKey::Address {
                mapping_id,
                address,
            };
            if let Some(&id) = self.location_ids.get(&key) {
                return id;
            }
        }
        let lines: Vec<Line> = frames
            .iter()
            .map(|frame| Line {
                function_id: self.function(frame),
                line: frame.line,
                column: 0,
            })
            .collect();
        let key = if address != 0 {
            LocationKey::Address {
                mapping_id,
                address,
            }
        } else {
            LocationKey::Frames {
                mapping_id,
                lines: lines.clone(),
            }
        };
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(Location {
            id,
            mapping_id,
            address,
            line: lines,
            is_folded: false,
        });
        self.location_ids.insert(key, id);
        id
    }

    fn label(&mut self, label: &SampleLabel) -> Label {
        match label {
            SampleLabel::Str { key, value } => Label {
                key: self.strings.intern(key),
                str: self.strings.intern(value),
                num: 0,
                num_unit: 0,
            },
            SampleLabel::Num { key, value, unit } => Label {
                key: self.strings.intern(key),
                str: 0,
                num: *value,
                num_unit: self.strings.intern(unit),
            },
        }
    }

    /// Adds a sample (`locations` leaf first). A sample with the same locations and labels as an
    /// earlier one is merged into it by adding values element-wise. A wrong number of values is
    /// reported by [`Self::build`].
    pub fn add_sample(&mut self, locations: &[u64], values: &[i64], labels: &[SampleLabel]) {
        let labels: Vec<Label> = labels.iter().map(|label| self.label(label)).collect();
        let mut sorted_labels = labels.clone();
        sorted_labels.sort_by_key(|l| (l.key, l.str, l.num, l.num_unit));
        let key = SampleKey {
            location_ids: locations.to_vec(),
            labels: sorted_labels,
        };
        if let Some(&index) = self.sample_index.get(&key) {
            let sample = &mut self.samples[index];
            if sample.value.len() == values.len() {
                for (sum, v) in sample.value.iter_mut().zip(values) {
                    *sum += v;
                }
                return;
            }
        }
        self.sample_index.insert(key, self.samples.len());
        self.samples.push(Sample {
            location_id: locations.to_vec(),
            value: values.to_vec(),
            label: labels,
        });
    }

    /// Finishes the profile and checks it as `go tool pprof` would.
    pub fn build(mut self) -> Result<Profile, ProfileError> {
        let default_sample_type = if self.default_sample_type.is_empty() {
            0
        } else {
            let wanted = self.strings.intern(&self.default_sample_type);
            if !self.sample_types.iter().any(|t| t.r#type == wanted) {
                return Err(ProfileError::UnknownDefaultSampleType(
                    self.default_sample_type,
                ));
            }
            wanted
        };
        let profile = Profile {
            sample_type: self.sample_types,
            sample: self.samples,
            mapping: self.mappings,
            location: self.locations,
            function: self.functions,
            string_table: self.strings.strings,
            drop_frames: 0,
            keep_frames: 0,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type: self.period_type,
            period: self.period,
            comment: self.comments,
            default_sample_type,
            doc_url: 0,
        };
        validate(&profile)?;
        Ok(profile)
    }
}
