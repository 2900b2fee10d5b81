//! Round trips through the builder, reader and writer.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message as _;

use crate::proto::Sample;
use crate::*;

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

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(raw).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_gzip_bomb_stops_at_the_limit_naming_the_flag() {
    let limits = DecodeLimits { max_size: 1 << 20 };
    let bomb = gzip(&vec![0; 8 << 20]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let error = decode_with(&bomb, &limits).unwrap_err();
    assert!(matches!(error, ProfileError::TooLarge { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("--max-profile-size"), "{message}");
    assert!(message.contains("1.0 MiB"), "{message}");
    // Raw protobuf beyond the limit is refused the same way, and so is a file.
    let raw = encode_gzip(&timer_profile());
    let raw = {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let small = DecodeLimits {
        max_size: raw.len() as u64 - 1,
    };
    assert!(matches!(
        decode_with(&raw, &small),
        Err(ProfileError::TooLarge { .. })
    ));
    assert!(decode(&raw).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.pb.gz");
    fs::write(&path, &bomb).unwrap();
    assert!(matches!(
        read_file_with(&path, &limits),
        Err(ProfileError::TooLarge { .. })
    ));
}

#[test]
fn many_tiny_entries_are_bounded_by_their_decoded_size() {
    // An empty sample is 2 bytes on the wire (field 2, length 0) and a whole Sample decoded:
    // 1 MiB of them would take tens of MiB.
    let mut raw = Vec::new();
    for _ in 0..(512 << 10) {
        raw.extend_from_slice(&[0x12, 0x00]);
    }
    let limits = DecodeLimits { max_size: 4 << 20 };
    let error = decode_with(&gzip(&raw), &limits).unwrap_err();
    let ProfileError::DecodedTooLarge {
        samples, estimate, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(*samples, 512 << 10);
    assert!(estimate.as_u64() > 4 << 20, "{error}");
    assert!(error.to_string().contains("--max-profile-size"), "{error}");
    // Empty strings the same: each is a String decoded.
    let strings: Vec<u8> = std::iter::repeat_n([0x32u8, 0x00], 512 << 10)
        .flatten()
        .collect();
    assert!(matches!(
        decode_with(&strings, &limits),
        Err(ProfileError::DecodedTooLarge {
            strings: 524288,
            ..
        })
    ));
}

#[test]
fn the_estimate_covers_what_a_real_profile_takes() {
    let profile = timer_profile();
    let raw = profile.encode_to_vec();
    let estimate = crate::footprint::footprint(&raw).unwrap();
    let actual: usize = size_of::<Sample>() * profile.sample.len()
        + profile
            .sample
            .iter()
            .map(|s| {
                s.location_id.len() * 8
                    + s.value.len() * 8
                    + s.label.len() * size_of::<proto::Label>()
            })
            .sum::<usize>()
        + profile
            .string_table
            .iter()
            .map(|s| s.len() + size_of::<String>())
            .sum::<usize>();
    assert!(estimate.bytes >= actual as u64, "{estimate:?} < {actual}");
    assert_eq!(estimate.samples, profile.sample.len() as u64);
    assert_eq!(estimate.strings, profile.string_table.len() as u64);
    assert_eq!(decode(&raw).unwrap(), profile);
}
