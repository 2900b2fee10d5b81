//! The pprof reader: gzip or raw protobuf, then validation. Whatever `decode` accepts must be
//! safe for the readers built on it (the resolved view indexes functions, locations, strings).
//! The limit is small so that a bomb the fuzzer finds is refused within libFuzzer's memory
//! limit; anything the limit lets through must decode within it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = pprof::DecodeLimits { max_size: 64 << 20 };
    let Ok(profile) = pprof::decode_with(data, &limits) else {
        return;
    };
    let resolved = pprof::ResolvedProfile::new(&profile);
    for (index, kind) in resolved.sample_types.iter().enumerate() {
        assert!(resolved.sample_index(Some(&kind.ty)).is_some());
        for sample in &resolved.samples {
            let _ = sample.values.get(index);
            for &frame in &sample.stack {
                let _ = &resolved.frames[frame as usize].function;
            }
        }
    }
    let _ = resolved.sample_index(None);
});
