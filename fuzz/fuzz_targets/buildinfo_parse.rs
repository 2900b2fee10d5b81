//! Go build info: the Go 1.18+ `.go.buildinfo` contents (as the ELF reader hands them over),
//! the search by magic used when section headers are gone, and `BuildInfo::read` over the
//! input as a whole image loaded in one writable segment (Go 1.13-1.17 pointer format,
//! resolved through that segment; Go 1.12's `runtime.buildVersion` string).
#![no_main]

use gobinary::{BuildInfo, GoVersion, elf::Segment};
use libfuzzer_sys::fuzz_target;

/// Where the input is loaded: where Go links a non-PIE amd64 binary.
const LOAD_ADDRESS: u64 = 0x40_0000;

fn check(info: &BuildInfo) {
    assert_eq!(GoVersion::parse(&info.version_string), Some(info.version));
    let _ = info.setting("DefaultGODEBUG");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = BuildInfo::parse(data) {
        check(&info);
    }
    let _ = BuildInfo::find(data);
    let segment = Segment {
        vaddr: LOAD_ADDRESS,
        memsz: data.len() as u64,
        offset: 0,
        filesz: data.len() as u64,
        executable: false,
        writable: true,
    };
    if let Ok(info) = BuildInfo::read(data, None, &[segment], None) {
        check(&info);
    }
    let _ = BuildInfo::read(data, Some(data), &[segment], None);
    let _ = GoVersion::parse(&String::from_utf8_lossy(data));
});
