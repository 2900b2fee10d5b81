//! Building, validating, encoding, decoding and writing pprof profiles.
//!
//! The builder interns strings, functions, locations and samples so that callers (the recorder,
//! the diff writer, tests) can add frames and samples in whatever order they meet them and still get
//! a compact profile that `go tool pprof` accepts.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

use crate::pprof::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// What can go wrong building, reading or writing a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "empty input: the profile file has no bytes (was the recorder stopped before it wrote?)"
    )]
    EmptyInput,
    #[error("truncated gzip stream: the file was cut short; copy or record it again")]
    TruncatedGzip(#[source] io::Error),
    #[error("corrupt gzip stream: the file is damaged; copy or record it again")]
    CorruptGzip(#[source] io::Error),
    #[error("not a profile: input is neither gzip nor a pprof protobuf; pass a .pb.gz or .pb file")]
    NotAProfile(#[source] prost::DecodeError),
    #[error(
        "not a profile: the gzip content is not a pprof protobuf; pass a pprof file, not another gzip file"
    )]
    GzipNotAProfile(#[source] prost::DecodeError),
    #[error(transparent)]
    Invalid(#[from] InvalidProfile),
    #[error("default sample type {0:?} is not one of the profile's sample types; name one of them")]
    UnknownDefaultSampleType(String),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to write {0}: it is a symbolic link; remove it or choose another path")]
    OutputIsSymlink(PathBuf),
    #[error("refusing to write {0}: it exists and is not a regular file; choose another path")]
    OutputNotRegularFile(PathBuf),
    #[error("cannot write {0}: its directory does not exist; create it first")]
    OutputDirMissing(PathBuf),
}

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

/// Serializes and gzips a profile, the on-disk form `go tool pprof` expects.
pub fn encode_gzip(profile: &Profile) -> Vec<u8> {
    let raw = profile.encode_to_vec();
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(raw.len() / 4 + 64),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    encoder
        .write_all(&raw)
        .and_then(|()| encoder.try_finish())
        .expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Writes `profile` gzipped to `path` atomically (see [`write_bytes_atomic`]).
pub fn write_atomic(path: &Path, profile: &Profile) -> Result<(), ProfileError> {
    write_bytes_atomic(path, &encode_gzip(profile))
}

/// Checks that `path` can take a profile (its directory exists; it is absent or a regular file,
/// not a symbolic link) and returns its directory. Recorders call this before they start, so a
/// bad `--output` fails at once instead of after the recording.
pub fn check_output_path(path: &Path) -> Result<&Path, ProfileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(ProfileError::OutputDirMissing(path.to_owned()));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(ProfileError::OutputIsSymlink(path.to_owned()));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(ProfileError::OutputNotRegularFile(path.to_owned()));
        }
        _ => {}
    }
    Ok(dir)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written, synced
/// and renamed over `path`, so readers never see a half-written file. Refuses symbolic links and
/// non-regular files at `path`, and a missing directory.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let dir = check_output_path(path)?;
    let write_error = |source| ProfileError::Write {
        path: path.to_owned(),
        source,
    };
    // Temporary files are private (0600); the result should be readable like any output file,
    // or keep the mode of the file it replaces.
    let permissions = match fs::metadata(path) {
        Ok(meta) => meta.permissions(),
        Err(_) => fs::Permissions::from_mode(0o644),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".timerscope-")
        .suffix(".tmp")
        .permissions(permissions)
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(write_error)?;
    temp.persist(path).map_err(|e| write_error(e.error))?;
    // The rename is durable only once the directory entry is synced too.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(())
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes a gzipped or raw pprof protobuf and validates it.
pub fn decode(bytes: &[u8]) -> Result<Profile, ProfileError> {
    if bytes.is_empty() {
        return Err(ProfileError::EmptyInput);
    }
    let profile = if bytes.starts_with(&GZIP_MAGIC) {
        let mut raw = Vec::with_capacity(bytes.len() * 4);
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ProfileError::TruncatedGzip(e),
                _ => ProfileError::CorruptGzip(e),
            })?;
        Profile::decode(raw.as_slice()).map_err(ProfileError::GzipNotAProfile)?
    } else {
        Profile::decode(bytes).map_err(ProfileError::NotAProfile)?
    };
    validate(&profile)?;
    Ok(profile)
}

/// Reads and decodes a profile file.
pub fn read_file(path: &Path) -> Result<Profile, ProfileError> {
    let bytes = fs::read(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            system_name: function.to_owned(),
            file: file.to_owned(),
            line,
            start_line: 1,
        }
    }

    fn timer_profile() -> Profile {
        let mut b = ProfileBuilder::new(
            &[("timers_created", "count"), ("timers_live", "count")],
            "timers_live",
        );
        b.period_type("timers", "count", 1)
            .time_nanos(1_700_000_000_000_000_000)
            .duration_nanos(10_000_000_000)
            .comment("go_version=go1.23.9".to_owned());
        let main = b.add_mapping(MappingSpec {
            start: 0x400000,
            limit: 0x800000,
            file: "/bin/app".to_owned(),
            build_id: "abc".to_owned(),
            has_functions: true,
            ..MappingSpec::default()
        });
        let after_func = b.location(
            main,
            0x401000,
            &[
                frame("time.AfterFunc", "/go/src/time/sleep.go", 170),
                frame("main.leaky", "/src/main.go", 12),
            ],
        );
        let caller = b.location(main, 0x402000, &[frame("main.main", "/src/main.go", 30)]);
        let label = SampleLabel::Str {
            key: "kind".to_owned(),
            value: "afterfunc".to_owned(),
        };
        b.add_sample(&[after_func, caller], &[3, 2], std::slice::from_ref(&label));
        b.add_sample(&[after_func, caller], &[4, 1], &[label]);
        b.add_sample(&[caller], &[1, 0], &[]);
        b.build().expect("valid profile")
    }

    #[test]
    fn round_trip_keeps_everything_and_merges_samples() {
        let profile = timer_profile();
        assert_eq!(profile.sample.len(), 2, "identical samples merge");
        assert_eq!(profile.sample[0].value, vec![7, 3]);
        assert_eq!(profile.function.len(), 3);
        let decoded = decode(&encode_gzip(&profile)).unwrap();
        assert_eq!(decoded, profile);
        let raw = decode(&profile.encode_to_vec()).unwrap();
        assert_eq!(raw, profile);
        assert_eq!(profile.string_table[0], "");
        let default = profile.default_sample_type as usize;
        assert_eq!(profile.string_table[default], "timers_live");
    }

    #[test]
    fn interning_reuses_locations_and_functions() {
        let mut b = ProfileBuilder::new(&[("samples", "count")], "samples");
        let m = b.add_mapping(MappingSpec::default());
        let a = b.location(m, 0x10, &[frame("main.f", "m.go", 3)]);
        let again = b.location(m, 0x10, &[frame("ignored", "x.go", 9)]);
        let synthetic_f = b.location(0, 0, &[frame("main.f", "m.go", 4)]);
        let synthetic_g = b.location(0, 0, &[frame("main.g", "m.go", 4)]);
        assert_eq!(a, again);
        assert_ne!(synthetic_f, synthetic_g);
        let p = b.build().unwrap();
        assert_eq!(p.location.len(), 3);
        assert_eq!(p.function.len(), 2, "main.f interned once");
    }

    #[test]
    fn build_rejects_wrong_value_count_and_unknown_default() {
        let mut b = ProfileBuilder::new(&[("a", "count"), ("b", "count")], "a");
        b.add_sample(&[], &[1], &[]);
        assert!(matches!(
            b.build(),
            Err(ProfileError::Invalid(InvalidProfile::ValueCount {
                values: 1,
                types: 2,
                ..
            }))
        ));
        let b = ProfileBuilder::new(&[("a", "count")], "nope");
        assert!(matches!(
            b.build(),
            Err(ProfileError::UnknownDefaultSampleType(name)) if name == "nope"
        ));
    }

    #[test]
    fn build_rejects_dangling_location() {
        let mut b = ProfileBuilder::new(&[("a", "count")], "a");
        b.add_sample(&[42], &[1], &[]);
        let err = b.build().unwrap_err();
        assert!(
            matches!(
                err,
                ProfileError::Invalid(InvalidProfile::DanglingReference { id: 42, .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn decode_reports_each_kind_of_bad_input() {
        assert!(matches!(decode(&[]), Err(ProfileError::EmptyInput)));
        let gz = encode_gzip(&timer_profile());
        assert!(matches!(
            decode(&gz[..gz.len() / 2]),
            Err(ProfileError::TruncatedGzip(_))
        ));
        assert!(matches!(
            decode(b"hello, this is plain text"),
            Err(ProfileError::NotAProfile(_))
        ));
        let mut corrupt = gz.clone();
        let n = corrupt.len();
        corrupt[n - 6] ^= 0xff; // inside the CRC32 trailer
        assert!(matches!(
            decode(&corrupt),
            Err(ProfileError::CorruptGzip(_))
        ));
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(&[0xff; 16]).unwrap();
        assert!(matches!(
            decode(&e.finish().unwrap()),
            Err(ProfileError::GzipNotAProfile(_))
        ));

        let mut broken = timer_profile();
        broken.location[0].mapping_id = 99;
        assert!(matches!(
            decode(&broken.encode_to_vec()),
            Err(ProfileError::Invalid(InvalidProfile::DanglingReference {
                to: "mapping",
                id: 99,
                ..
            }))
        ));
        let mut broken = timer_profile();
        broken.function[1].id = broken.function[0].id;
        assert!(matches!(
            decode(&broken.encode_to_vec()),
            Err(ProfileError::Invalid(InvalidProfile::DuplicateId {
                what: "function",
                ..
            }))
        ));
        let mut broken = timer_profile();
        broken.string_table[0] = "x".to_owned();
        assert!(matches!(
            decode(&broken.encode_to_vec()),
            Err(ProfileError::Invalid(InvalidProfile::StringTableStart))
        ));
        let mut broken = timer_profile();
        broken.sample[0].label[0].str = 10_000;
        assert!(matches!(
            decode(&broken.encode_to_vec()),
            Err(ProfileError::Invalid(InvalidProfile::StringIndex {
                index: 10_000,
                ..
            }))
        ));
        let mut broken = timer_profile();
        broken.mapping[0].id = 0;
        assert!(matches!(
            decode(&broken.encode_to_vec()),
            Err(ProfileError::Invalid(InvalidProfile::ZeroId {
                what: "mapping"
            }))
        ));
    }

    #[test]
    fn write_atomic_writes_and_refuses_bad_targets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pb.gz");
        let profile = timer_profile();
        write_atomic(&path, &profile).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, &profile).expect("overwriting a regular file is fine");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640,
            "keeps the mode of the file it replaces"
        );
        assert_eq!(read_file(&path).unwrap(), profile);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");

        let link = dir.path().join("link.pb.gz");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            write_atomic(&link, &profile),
            Err(ProfileError::OutputIsSymlink(_))
        ));
        assert!(matches!(
            write_atomic(dir.path(), &profile),
            Err(ProfileError::OutputNotRegularFile(_))
        ));
        let missing = dir.path().join("nope").join("t.pb.gz");
        let err = write_atomic(&missing, &profile).unwrap_err();
        assert!(matches!(err, ProfileError::OutputDirMissing(_)));
        assert!(err.to_string().contains("create it first"), "{err}");
        assert!(matches!(
            read_file(&missing),
            Err(ProfileError::Read { .. })
        ));
    }
}
