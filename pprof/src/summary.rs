//! Per-function sums of a profile, read without building the whole profile: what a diff needs.
//!
//! [`crate::decode`] makes an owned copy of every string, location and sample, and a
//! [`ResolvedProfile`] another one; for two large profiles that is most of a diff's time and
//! memory. [`FunctionSums::read`] instead walks the decompressed protobuf in place: one pass for
//! the metadata, functions and locations (strings stay slices of the buffer), a second that
//! streams the samples and adds each to its functions' sums, keeping nothing per sample. Input
//! the lean walk does not accept goes through [`crate::decode`], so errors read exactly as
//! everywhere else and nothing is summed from an invalid profile.

use std::collections::HashMap;
use std::path::Path;
use std::{fs, io};

use prost::bytes::Buf as _;
use prost::encoding::{WireType, decode_key, decode_varint};

use crate::error::ProfileError;
use crate::read::{DecodeLimits, decode_with, inflate_reader};
use crate::resolved::{IdSlots, ResolvedProfile, ValueKind, sample_index_in};

/// The flat and cum value of every function for one sample type. Functions sharing a name are
/// one function, as at `go tool pprof`'s default granularity; recursion counts once in cum.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSums {
    pub sample_types: Vec<ValueKind>,
    /// Empty when the profile names none (readers then use the last sample type).
    pub default_sample_type: String,
    pub period_type: Option<ValueKind>,
    /// The sample type summed: the one asked for, else the default, else the last; `None` when
    /// the profile has no such type (then nothing is summed).
    pub index: Option<usize>,
    /// Function names; for a location without symbols, its address in hex.
    pub functions: Vec<String>,
    /// `flat[f]`: the value of the samples whose leaf is function `f`.
    flat: Vec<i64>,
    /// `cum[f]`: the value of the samples with function `f` anywhere in the stack.
    cum: Vec<i64>,
    /// The sum of absolute sample values (pprof's denominator of shares).
    pub total: i64,
}

impl FunctionSums {
    /// Reads a gzipped or raw profile, as [`crate::decode_with`] would accept it within
    /// `limits`, summing sample type `sample_type` (default: the profile's default, else the
    /// last).
    pub fn read(
        bytes: &[u8],
        sample_type: Option<&str>,
        limits: &DecodeLimits,
    ) -> Result<Self, ProfileError> {
        let (raw, _) = inflate_reader(bytes, limits)?;
        match Lean::read(&raw, sample_type) {
            Some(sums) => Ok(sums),
            // Malformed or invalid: the full decoder says why (or, should it accept what the
            // lean walk does not, sums from the decoded profile).
            None => Ok(Self::from_resolved(
                &ResolvedProfile::new(&decode_with(bytes, limits)?),
                sample_type,
            )),
        }
    }

    /// Reads a profile file, as [`crate::read_file_with`] would accept it within `limits`.
    pub fn read_file(
        path: &Path,
        sample_type: Option<&str>,
        limits: &DecodeLimits,
    ) -> Result<Self, ProfileError> {
        let read_error = |source| ProfileError::Read {
            path: path.to_owned(),
            source,
        };
        let file = fs::File::open(path).map_err(read_error)?;
        let (raw, _) = inflate_reader(io::BufReader::new(file), limits).map_err(|e| match e {
            ProfileError::ReadInput(source) => read_error(source),
            other => other,
        })?;
        match Lean::read(&raw, sample_type) {
            Some(sums) => Ok(sums),
            None => Ok(Self::from_resolved(
                &ResolvedProfile::new(&decode_with(&raw, limits)?),
                sample_type,
            )),
        }
    }

    /// Sums a profile already resolved.
    pub fn from_resolved(profile: &ResolvedProfile, sample_type: Option<&str>) -> Self {
        let index = profile.sample_index(sample_type);
        let mut sums = Summer::default();
        let frame_function: Vec<u32> = profile
            .frames
            .iter()
            .map(|f| sums.function(&f.function))
            .collect();
        if let Some(index) = index {
            for sample in &profile.samples {
                let stack = sample.stack.iter().map(|&f| frame_function[f as usize]);
                sums.add(stack, sample.values[index]);
            }
        }
        sums.finish(
            profile.sample_types.clone(),
            profile.default_sample_type.clone(),
            profile.period_type.clone(),
            index,
        )
    }

    /// The name of the sample type summed.
    pub fn sample_type(&self) -> Option<&str> {
        Some(self.sample_types[self.index?].ty.as_str())
    }

    /// (flat, cum) of function `function` (an index into `functions`).
    pub fn values(&self, function: usize) -> (i64, i64) {
        (self.flat[function], self.cum[function])
    }
}

/// Accumulates sums sample by sample.
#[derive(Default)]
struct Summer {
    names: Vec<String>,
    slots: HashMap<String, u32>,
    flat: Vec<i64>,
    cum: Vec<i64>,
    total: i64,
    /// The last sample that counted each function, so that recursion counts once in cum.
    counted_in: Vec<u64>,
    samples: u64,
}

impl Summer {
    /// The slot of the function called `name`.
    fn function(&mut self, name: &str) -> u32 {
        if let Some(&slot) = self.slots.get(name) {
            return slot;
        }
        let slot = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.slots.insert(name.to_owned(), slot);
        self.flat.push(0);
        self.cum.push(0);
        self.counted_in.push(u64::MAX);
        slot
    }

    /// Adds one sample: its functions leaf first, and its value.
    fn add(&mut self, mut stack: impl Iterator<Item = u32>, value: i64) {
        self.total += value.abs();
        if value == 0 {
            return;
        }
        let sample = self.samples;
        self.samples += 1;
        let Some(leaf) = stack.next() else {
            return;
        };
        self.flat[leaf as usize] += value;
        for function in std::iter::once(leaf).chain(stack) {
            let function = function as usize;
            if self.counted_in[function] != sample {
                self.counted_in[function] = sample;
                self.cum[function] += value;
            }
        }
    }

    fn finish(
        self,
        sample_types: Vec<ValueKind>,
        default_sample_type: String,
        period_type: Option<ValueKind>,
        index: Option<usize>,
    ) -> FunctionSums {
        FunctionSums {
            sample_types,
            default_sample_type,
            period_type,
            index,
            functions: self.names,
            flat: self.flat,
            cum: self.cum,
            total: self.total,
        }
    }
}

// Field numbers of google/pprof `proto/profile.proto` (as in `crate::proto`).
const PROFILE_SAMPLE_TYPE: u32 = 1;
const PROFILE_SAMPLE: u32 = 2;
const PROFILE_LOCATION: u32 = 4;
const PROFILE_FUNCTION: u32 = 5;
const PROFILE_STRING_TABLE: u32 = 6;
const PROFILE_PERIOD_TYPE: u32 = 11;
const PROFILE_DEFAULT_SAMPLE_TYPE: u32 = 14;
const VALUE_TYPE_TYPE: u32 = 1;
const VALUE_TYPE_UNIT: u32 = 2;
const SAMPLE_LOCATION_ID: u32 = 1;
const SAMPLE_VALUE: u32 = 2;
const LOCATION_ID: u32 = 1;
const LOCATION_ADDRESS: u32 = 3;
const LOCATION_LINE: u32 = 4;
const LINE_FUNCTION_ID: u32 = 1;
const FUNCTION_ID: u32 = 1;
const FUNCTION_NAME: u32 = 2;

/// One field of a message: its number and its value (a varint, or the bytes of a
/// length-delimited field; fixed-width fields are skipped).
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Calls `each` for every field of the message in `buf`; `None` when it is malformed (or
/// `each` says so).
fn fields<'a>(mut buf: &'a [u8], mut each: impl FnMut(u32, Field<'a>) -> Option<()>) -> Option<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        let field = match wire_type {
            WireType::Varint => Field::Varint(decode_varint(&mut buf).ok()?),
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let bytes = buf.get(..len)?;
                buf.advance(len);
                Field::Bytes(bytes)
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let len = if wire_type == WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                buf.get(..len)?;
                buf.advance(len);
                Field::Fixed
            }
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        each(tag, field)?;
    }
    Some(())
}

/// Appends a repeated varint field, packed or not, to `out`.
fn push_varints(field: Field<'_>, out: &mut Vec<u64>) -> Option<()> {
    match field {
        Field::Varint(v) => out.push(v),
        Field::Bytes(mut packed) => {
            while !packed.is_empty() {
                out.push(decode_varint(&mut packed).ok()?);
            }
        }
        Field::Fixed => return None,
    }
    Some(())
}

fn varint(field: Field<'_>) -> Option<u64> {
    match field {
        Field::Varint(v) => Some(v),
        _ => None,
    }
}

fn bytes(field: Field<'_>) -> Option<&[u8]> {
    match field {
        Field::Bytes(b) => Some(b),
        _ => None,
    }
}

/// A (type, unit) value type as string indices.
fn value_type(message: &[u8]) -> Option<(u64, u64)> {
    let (mut ty, mut unit) = (0, 0);
    fields(message, |tag, field| {
        match tag {
            VALUE_TYPE_TYPE => ty = varint(field)?,
            VALUE_TYPE_UNIT => unit = varint(field)?,
            _ => {}
        }
        Some(())
    })?;
    Some((ty, unit))
}

/// The walk over the decompressed protobuf. Every `None` sends the input to the full decoder.
struct Lean<'a> {
    strings: Vec<&'a str>,
    sample_types: Vec<(u64, u64)>,
    period_type: Option<(u64, u64)>,
    default_sample_type: u64,
    /// (id, name string index) of each function.
    functions: Vec<(u64, u64)>,
    /// (id, address, span in `location_functions`) of each location.
    locations: Vec<(u64, u64, (u32, u32))>,
    /// Function ids of each location's lines, back to back.
    location_functions: Vec<u64>,
}

impl<'a> Lean<'a> {
    fn read(raw: &'a [u8], sample_type: Option<&str>) -> Option<FunctionSums> {
        let mut lean = Lean {
            strings: Vec::new(),
            sample_types: Vec::new(),
            period_type: None,
            default_sample_type: 0,
            functions: Vec::new(),
            locations: Vec::new(),
            location_functions: Vec::new(),
        };
        fields(raw, |tag, field| lean.metadata(tag, field))?;
        let string = |index: u64| -> Option<&str> {
            usize::try_from(index)
                .ok()
                .and_then(|i| lean.strings.get(i).copied())
        };
        if lean.strings.first() != Some(&"") {
            return None;
        }
        let kind = |(ty, unit): (u64, u64)| {
            Some(ValueKind {
                ty: string(ty)?.to_owned(),
                unit: string(unit)?.to_owned(),
            })
        };
        let sample_types = lean
            .sample_types
            .iter()
            .map(|&vt| kind(vt))
            .collect::<Option<Vec<_>>>()?;
        let period_type = match lean.period_type {
            Some(vt) => Some(kind(vt)?),
            None => None,
        };
        let default_sample_type = string(lean.default_sample_type)?.to_owned();
        let types = sample_types.len();
        let index = sample_index_in(&sample_types, &default_sample_type, sample_type);

        let mut sums = Summer::default();
        let function_ids = unique_slots(lean.functions.iter().map(|f| f.0))?;
        let function_slots = lean
            .functions
            .iter()
            .map(|&(_, name)| Some(sums.function(string(name)?)))
            .collect::<Option<Vec<u32>>>()?;
        // Each location's functions, leaf first, back to back; `spans[slot]` is (start, len).
        let mut stacks: Vec<u32> = Vec::with_capacity(lean.location_functions.len());
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(lean.locations.len());
        for &(_, address, (start, len)) in &lean.locations {
            let begin = stacks.len() as u32;
            for &id in &lean.location_functions[start as usize..(start + len) as usize] {
                stacks.push(function_slots[function_ids.get(id)?]);
            }
            if len == 0 {
                // Unsymbolized: the address is all there is, as `go tool pprof` shows it.
                stacks.push(sums.function(&format!("{address:#x}")));
            }
            spans.push((begin, stacks.len() as u32 - begin));
        }
        let location_ids = unique_slots(lean.locations.iter().map(|l| l.0))?;
        drop(lean.location_functions);

        let (mut location_ids_of_sample, mut values, mut sample_spans) =
            (Vec::new(), Vec::new(), Vec::new());
        fields(raw, |tag, field| {
            if tag != PROFILE_SAMPLE {
                return Some(());
            }
            location_ids_of_sample.clear();
            values.clear();
            fields(bytes(field)?, |tag, field| match tag {
                SAMPLE_LOCATION_ID => push_varints(field, &mut location_ids_of_sample),
                SAMPLE_VALUE => push_varints(field, &mut values),
                _ => Some(()),
            })?;
            if values.len() != types {
                return None;
            }
            sample_spans.clear();
            for &id in &location_ids_of_sample {
                sample_spans.push(spans[location_ids.get(id)?]);
            }
            let Some(index) = index else {
                return Some(());
            };
            let stack = sample_spans
                .iter()
                .flat_map(|&(start, len)| &stacks[start as usize..(start + len) as usize])
                .copied();
            // Values are int64 varints: two's complement in 64 bits.
            sums.add(stack, values[index] as i64);
            Some(())
        })?;
        Some(sums.finish(sample_types, default_sample_type, period_type, index))
    }

    /// Takes in one top-level field of the first pass (samples wait for the second).
    fn metadata(&mut self, tag: u32, field: Field<'a>) -> Option<()> {
        match tag {
            PROFILE_SAMPLE_TYPE => self.sample_types.push(value_type(bytes(field)?)?),
            PROFILE_PERIOD_TYPE => self.period_type = Some(value_type(bytes(field)?)?),
            PROFILE_DEFAULT_SAMPLE_TYPE => self.default_sample_type = varint(field)?,
            PROFILE_STRING_TABLE => self.strings.push(std::str::from_utf8(bytes(field)?).ok()?),
            PROFILE_FUNCTION => {
                let (mut id, mut name) = (0, 0);
                fields(bytes(field)?, |tag, field| {
                    match tag {
                        FUNCTION_ID => id = varint(field)?,
                        FUNCTION_NAME => name = varint(field)?,
                        _ => {}
                    }
                    Some(())
                })?;
                self.functions.push((id, name));
            }
            PROFILE_LOCATION => {
                let (mut id, mut address) = (0, 0);
                let start = self.location_functions.len();
                let functions = &mut self.location_functions;
                fields(bytes(field)?, |tag, field| {
                    match tag {
                        LOCATION_ID => id = varint(field)?,
                        LOCATION_ADDRESS => address = varint(field)?,
                        LOCATION_LINE => {
                            let mut function = 0;
                            fields(bytes(field)?, |tag, field| {
                                if tag == LINE_FUNCTION_ID {
                                    function = varint(field)?;
                                }
                                Some(())
                            })?;
                            functions.push(function);
                        }
                        _ => {}
                    }
                    Some(())
                })?;
                let span = (
                    u32::try_from(start).ok()?,
                    u32::try_from(self.location_functions.len() - start).ok()?,
                );
                self.locations.push((id, address, span));
            }
            _ => {}
        }
        Some(())
    }
}

/// Slots of ids that must be non-zero and unique, as `profile.CheckValid` requires.
fn unique_slots(ids: impl ExactSizeIterator<Item = u64> + Clone) -> Option<IdSlots> {
    let slots = IdSlots::new(ids.clone());
    let unique = ids
        .enumerate()
        .all(|(slot, id)| id != 0 && slots.get(id) == Some(slot));
    unique.then_some(slots)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message as _;

    use super::*;
    use crate::builder::{Frame, MappingSpec, ProfileBuilder};
    use crate::proto::Profile;
    use crate::read::decode;
    use crate::write::encode_gzip;

    fn frame(function: &str, line: i64) -> Frame {
        Frame {
            function: function.to_owned(),
            file: "main.go".to_owned(),
            line,
            ..Frame::default()
        }
    }

    /// Inlined frames, recursion, two functions of one name in different files, an
    /// unsymbolized location, a stackless sample and negative values.
    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(&[("created", "count"), ("live", "count")], "live");
        b.period_type("timers", "count", 1);
        let m = b.add_mapping(MappingSpec::default());
        let inlined = b.location(m, 0x10, &[frame("time.After", 5), frame("main.poll", 9)]);
        let recursive = b.location(m, 0x20, &[frame("main.walk", 20)]);
        let other_file = b.location(
            m,
            0x30,
            &[Frame {
                file: "other.go".to_owned(),
                ..frame("main.walk", 3)
            }],
        );
        let bare = b.location(m, 0x40, &[]);
        let root = b.location(m, 0x50, &[frame("main.main", 1)]);
        b.add_sample(
            &[inlined, recursive, other_file, recursive, root],
            &[4, 2],
            &[],
        );
        b.add_sample(&[bare, root], &[1, -3], &[]);
        b.add_sample(&[recursive, root], &[0, 5], &[]);
        b.add_sample(&[], &[7, 7], &[]);
        b.build().unwrap()
    }

    /// Per sample type asked for: the index summed, the total and (flat, cum) by name.
    type Seen = (Option<usize>, i64, BTreeMap<String, (i64, i64)>);

    /// What a diff sees of each sample type; slot order aside.
    fn seen(read: impl Fn(Option<&str>) -> FunctionSums) -> Vec<Seen> {
        ["created", "live", "nope"]
            .into_iter()
            .map(Some)
            .chain([None])
            .map(|name| {
                let sums = read(name);
                let by_name = sums
                    .functions
                    .iter()
                    .enumerate()
                    .map(|(f, n)| (n.clone(), sums.values(f)))
                    .collect();
                (sums.index, sums.total, by_name)
            })
            .collect()
    }

    fn lean(bytes: &[u8]) -> impl Fn(Option<&str>) -> FunctionSums + '_ {
        |name| FunctionSums::read(bytes, name, &DecodeLimits::default()).unwrap()
    }

    fn resolved(p: &Profile) -> impl Fn(Option<&str>) -> FunctionSums + '_ {
        |name| FunctionSums::from_resolved(&ResolvedProfile::new(p), name)
    }

    #[test]
    fn lean_read_sums_like_the_resolved_profile() {
        let p = profile();
        let expected = seen(resolved(&p));
        assert_eq!(seen(lean(&encode_gzip(&p))), expected);
        assert_eq!(seen(lean(&p.encode_to_vec())), expected);
        assert!(
            Lean::read(&p.encode_to_vec(), None).is_some(),
            "the lean walk, not the fallback"
        );

        let sums =
            |name| FunctionSums::read(&p.encode_to_vec(), name, &DecodeLimits::default()).unwrap();
        let of = |sums: &FunctionSums, name: &str| {
            sums.values(sums.functions.iter().position(|n| n == name).unwrap())
        };
        let live = sums(None);
        assert_eq!(live.sample_type(), Some("live"), "the default");
        assert_eq!(
            of(&live, "main.walk"),
            (5, 7),
            "recursion counts once in cum"
        );
        assert_eq!(of(&live, "time.After"), (2, 2), "inlined frame is the leaf");
        assert_eq!(of(&live, "0x40"), (-3, -3), "unsymbolized: its address");
        assert_eq!(of(&live, "main.main"), (0, 4));
        assert_eq!(live.total, 17, "absolute values, stackless ones too");
        let created = sums(Some("created"));
        assert_eq!((of(&created, "main.main"), created.total), ((0, 5), 12));
        assert_eq!(sums(Some("nope")).index, None);
    }

    #[test]
    fn sparse_ids_and_unpacked_fields_read_the_same() {
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
        let expected = seen(resolved(&p));
        let bytes = p.encode_to_vec();
        assert_eq!(seen(lean(&bytes)), expected);

        // The same samples with their repeated fields unpacked, as proto2 writers emit them.
        p.sample.clear();
        let mut bytes = p.encode_to_vec();
        for s in &profile().sample {
            let mut sample = Vec::new();
            for &id in &s.location_id {
                prost::encoding::uint64::encode(SAMPLE_LOCATION_ID, &sparse(id), &mut sample);
            }
            for v in &s.value {
                prost::encoding::int64::encode(SAMPLE_VALUE, v, &mut sample);
            }
            prost::encoding::bytes::encode(PROFILE_SAMPLE, &sample, &mut bytes);
        }
        assert_eq!(seen(lean(&bytes)), expected);
    }

    #[test]
    fn invalid_profiles_fail_as_decode_does() {
        let mut p = profile();
        p.sample[0].location_id.push(999);
        let bytes = p.encode_to_vec();
        assert!(Lean::read(&bytes, None).is_none());
        let lean = FunctionSums::read(&bytes, None, &DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert_eq!(lean, decode(&bytes).unwrap_err().to_string());
        assert!(lean.contains("location 999"), "{lean}");

        let mut p = profile();
        p.function[1].id = p.function[0].id;
        let bytes = encode_gzip(&p);
        let lean = FunctionSums::read(&bytes, None, &DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert_eq!(lean, decode(&bytes).unwrap_err().to_string());

        let truncated = &encode_gzip(&profile())[..40];
        let lean = FunctionSums::read(truncated, None, &DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert_eq!(lean, decode(truncated).unwrap_err().to_string());
        assert!(matches!(
            FunctionSums::read(b"\x0a\xff", None, &DecodeLimits::default()),
            Err(ProfileError::NotAProfile(_))
        ));
    }
}
