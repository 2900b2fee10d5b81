//! ELF inspection of a target binary, as `GoBinary::open` does it: symbols, segments, sections,
//! build ids, the build info and pclntab read through them, and the address arithmetic done on
//! what it returns.
#![no_main]

use gobinary::{ElfInfo, GoBinary, Image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(elf) = ElfInfo::parse(data) else {
        return;
    };
    let _ = elf.build_id();
    let _ = elf.function_at(0x40_1000);
    let _ = GoBinary::from_image(Image::from_bytes(data.to_vec()));
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
