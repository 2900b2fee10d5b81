//! The memory a profile takes once decoded, estimated from its wire form without decoding it.
//! An entry costs a few bytes on the wire but a whole struct in memory (an empty sample is 2
//! bytes encoded, about 100 decoded), so the inflated size alone does not bound the decode.

use std::mem::size_of;

use prost::DecodeError;
use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::proto::{Function, Label, Line, Location, Mapping, Sample, ValueType};

/// What the allocator adds to each heap allocation (glibc's chunk header, rounded up).
const ALLOCATION_OVERHEAD: u64 = 16;

/// A decoded profile's estimated size and its entry counts (for the error message).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub bytes: u64,
    pub samples: u64,
    pub locations: u64,
    pub strings: u64,
}

/// Bytes a `Vec<T>` of `len` elements may hold after pushes (capacity doubles), plus its
/// allocation's overhead.
fn vec_bytes<T>(len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    len.next_power_of_two()
        .saturating_mul(size_of::<T>() as u64)
        .saturating_add(ALLOCATION_OVERHEAD)
}

/// Splits off the body of a length-delimited field.
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let start: &'a [u8] = buf;
    let mut body = start;
    let len = decode_varint(&mut body)? as usize;
    // skip_field checks the length against what remains, with the error decoding would give.
    skip_field(WireType::LengthDelimited, 1, buf, DecodeContext::default())?;
    Ok(&body[..len])
}

/// Elements of a repeated scalar field: a packed run counts its varints, an unpacked one is one.
fn scalars(wire_type: WireType, buf: &mut &[u8], tag: u32) -> Result<u64, DecodeError> {
    match wire_type {
        WireType::LengthDelimited => {
            Ok(delimited(buf)?.iter().filter(|&&b| b < 0x80).count() as u64)
        }
        _ => skip_field(wire_type, tag, buf, DecodeContext::default()).map(|()| 1),
    }
}

/// Counts the entries of each field number of a message at its top level, skipping what is not
/// counted; `nested(tag, body)` adds the in-memory size of a length-delimited field.
fn scan(
    mut buf: &[u8],
    counts: &mut [u64; 16],
    mut nested: impl FnMut(u32, &[u8]) -> Result<u64, DecodeError>,
    scalar_tags: &[u32],
) -> Result<u64, DecodeError> {
    let mut bytes = 0u64;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let slot = tag as usize;
        if scalar_tags.contains(&tag) {
            counts[slot] += scalars(wire_type, &mut buf, tag)?;
        } else if wire_type == WireType::LengthDelimited && slot < counts.len() {
            let body = delimited(&mut buf)?;
            counts[slot] += 1;
            bytes = bytes.saturating_add(nested(tag, body)?);
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(bytes)
}

fn sample_bytes(body: &[u8]) -> Result<u64, DecodeError> {
    let mut counts = [0; 16];
    scan(body, &mut counts, |_, _| Ok(0), &[1, 2])?;
    Ok(vec_bytes::<u64>(counts[1]) + vec_bytes::<i64>(counts[2]) + vec_bytes::<Label>(counts[3]))
}

fn location_bytes(body: &[u8]) -> Result<u64, DecodeError> {
    let mut counts = [0; 16];
    scan(body, &mut counts, |_, _| Ok(0), &[])?;
    Ok(vec_bytes::<Line>(counts[4]))
}

/// The estimated size of `raw` (a pprof protobuf) once decoded into [`crate::Profile`].
pub(crate) fn footprint(raw: &[u8]) -> Result<Footprint, DecodeError> {
    let mut counts = [0; 16];
    let nested = scan(
        raw,
        &mut counts,
        |tag, body| match tag {
            2 => sample_bytes(body),
            4 => location_bytes(body),
            6 if !body.is_empty() => Ok(body.len() as u64 + ALLOCATION_OVERHEAD),
            _ => Ok(0),
        },
        &[13],
    )?;
    let bytes = nested
        .saturating_add(vec_bytes::<ValueType>(counts[1]))
        .saturating_add(vec_bytes::<Sample>(counts[2]))
        .saturating_add(vec_bytes::<Mapping>(counts[3]))
        .saturating_add(vec_bytes::<Location>(counts[4]))
        .saturating_add(vec_bytes::<Function>(counts[5]))
        .saturating_add(vec_bytes::<String>(counts[6]))
        .saturating_add(vec_bytes::<i64>(counts[13]));
    Ok(Footprint {
        bytes,
        samples: counts[2],
        locations: counts[4],
        strings: counts[6],
    })
}
