//! ELF inspection of a target binary, as `Target::open` does it: symbols, segments, build ids,
//! the build-info section read through those segments, and the address arithmetic done on
//! what it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use probe_user::target::{BuildInfo, ElfInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(elf) = ElfInfo::parse(data) else {
        return;
    };
    let _ = elf.build_id();
    let _ = BuildInfo::read(data, elf.buildinfo_section.as_deref(), &elf.segments);
    if let Some(text) = elf.text_segment() {
        for vaddr in [text.vaddr, text.vaddr.wrapping_add(text.filesz), u64::MAX] {
            let _ = elf.file_offset(vaddr);
        }
    }
    for symbol in elf.symbols.values().take(64) {
        let _ = elf.file_offset(symbol.address);
        let _ = elf.file_offset(symbol.address.wrapping_add(symbol.size));
    }
});
