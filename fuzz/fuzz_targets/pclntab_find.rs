//! `.gopclntab`, the Go runtime's symbol table, as found in an ELF image (by section name, else
//! by its header in the loaded segments), and the lookups made on it: functions by index, by
//! name and by address, and source frames with inlined calls.
#![no_main]

use gobinary::{ElfInfo, Image, Pclntab};
use libfuzzer_sys::fuzz_target;

/// Most functions looked at per input, so a huge claimed count stays cheap.
const MAX_FUNCTIONS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(elf) = ElfInfo::parse(data) else {
        return;
    };
    let Ok(table) = Pclntab::find(Image::from_bytes(data.to_vec()), &elf) else {
        return;
    };
    let _ = (table.format(), table.text_start(), table.has_inline_trees());
    let mut names = Vec::new();
    for function in table.functions().take(MAX_FUNCTIONS) {
        assert!(function.entry <= function.end, "{function:?}");
        for pc in [
            function.entry,
            function.entry + (function.end - function.entry) / 2,
        ] {
            let _ = table.frames(pc);
            let _ = table.function_containing(pc);
        }
        names.push(function.name.to_owned());
    }
    for name in names.iter().take(16) {
        let _ = table.function(name);
        let _ = table.function(&format!("{name}.abi0"));
    }
    let _ = table.function("runtime.main");
    let _ = table.frames(table.text_start());
    let _ = table.frames(u64::MAX);
});
