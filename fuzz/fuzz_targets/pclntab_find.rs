//! `.gopclntab`, the Go runtime's symbol table, as found in an ELF image (by section name, else
//! by its header in the loaded segments), and the lookups made on it: functions by index, by
//! name and by address, and source frames with inlined calls.
//!
//! `Pclntab::find` takes an `Image`, a mapped file: each input is written to a file in /dev/shm
//! (memory) first, mapped, and unlinked.
#![no_main]

use std::{io::Write as _, path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use probe_user::target::{Image, Pclntab};

/// Most functions looked at per input, so a huge claimed count stays cheap.
const MAX_FUNCTIONS: usize = 256;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("timerscope-fuzz-pclntab-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    let mut file = std::fs::File::create(path).expect("scratch file");
    file.write_all(data).expect("scratch write");
    drop(file);
    let image = Image::open(path);
    // The mapping keeps the bytes: nothing is left behind in /dev/shm.
    let _ = std::fs::remove_file(path);
    let Ok(image) = image else {
        return;
    };
    let Ok(table) = Pclntab::find(image) else {
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
