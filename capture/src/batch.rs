//! Whole hash maps read in batches (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6; the probes need
//! `bpf_loop`, Linux 5.17, so every kernel they load on has it): a few system calls per map
//! instead of two per entry (`BPF_MAP_GET_NEXT_KEY`, then a lookup), which made reading a full
//! creation map every interval cost more than everything else `watch` does.

use std::{
    collections::HashMap,
    hash::Hash,
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Pod,
    maps::{Map, MapError},
    sys::SyscallError,
};

/// Entries asked for per call. The kernel copies whole buckets, so a call must have room for
/// the fullest bucket: far more than a hash bucket holds.
const BATCH_ENTRIES: usize = 4096;

/// `BPF_MAP_LOOKUP_BATCH` (`enum bpf_cmd` in the kernel's uapi `linux/bpf.h`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash (or LRU hash) map `map`, whose keys are `K` and values `V`. Entries
/// changed during the read may be missed or seen in their old state, as with any iteration of
/// a live map; none is seen twice.
pub fn entries<K: Pod + Eq + Hash, V: Pod>(map: &Map) -> Result<HashMap<K, V>, MapError> {
    let data = match map {
        Map::HashMap(data) | Map::LruHashMap(data) => data,
        _ => {
            return Err(MapError::InvalidMapType { map_type: u32::MAX });
        }
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let mut keys: Vec<K> = Vec::with_capacity(BATCH_ENTRIES);
    let mut values: Vec<V> = Vec::with_capacity(BATCH_ENTRIES);
    // The position between calls, opaque (a bucket index for hash maps).
    let mut position = 0u64;
    let mut entries = HashMap::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                (&raw const position) as u64
            },
            out_batch: (&raw mut position) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH_ENTRIES as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        first = false;
        // SAFETY: `attr` is a valid `bpf_attr` batch member of the size passed; the buffers it
        // points to have room for `count` keys and values, the sizes the map was created with.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (result < 0).then(io::Error::last_os_error);
        let read = (attr.count as usize).min(BATCH_ENTRIES);
        // SAFETY: the kernel wrote `attr.count` keys and values.
        unsafe {
            keys.set_len(read);
            values.set_len(read);
        }
        entries.extend(keys.drain(..).zip(values.drain(..)));
        match error {
            None => {}
            // The end of the map, after the entries of this call.
            Some(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(entries),
            Some(io_error) => {
                return Err(MapError::SyscallError(SyscallError {
                    call: "bpf_map_lookup_batch",
                    io_error,
                }));
            }
        }
    }
}
