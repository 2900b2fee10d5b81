//! The readers of a live Go runtime's state (pending timers, goroutines) over a synthetic
//! process image: a real Go binary's layouts and globals, with the fuzzer's bytes where the
//! runtime's structures would be. Whatever the bytes, a read ends with a result or an error,
//! bounded, never a panic or a hang.
//!
//! The input is the words of the globals the readers start from (`runtime.allglen`,
//! `runtime.allgptr`, `runtime.allp` as ptr/len/cap), then the bytes of a heap mapped at
//! [`HEAP`], where Go puts its arena. The binary is `TIMERSCOPE_FUZZ_GO_BINARY` (`cargo xtask
//! fuzz` sets it to the reference Go toolchain's own `go` command, which keeps its symbols).
#![no_main]

use std::sync::OnceLock;

use gobinary::{
    GoBinary,
    layout::GoroutineLayout,
    runtime::{BufferMemory, RuntimeImage, goroutines, timers::TimerReader},
};
use libfuzzer_sys::fuzz_target;

/// Where the synthetic heap is mapped: the first address of Go's heap arenas on amd64.
const HEAP: u64 = 0xc0_0000_0000;
/// The globals, in the order their words come in the input.
const GLOBALS: [(&str, usize); 3] = [
    ("runtime.allglen", 1),
    ("runtime.allgptr", 1),
    ("runtime.allp", 3),
];

struct Readers {
    binary: GoBinary,
    timers: TimerReader,
    goroutines: GoroutineLayout,
}

fn readers() -> &'static Readers {
    static READERS: OnceLock<Readers> = OnceLock::new();
    READERS.get_or_init(|| {
        let path = std::env::var_os("TIMERSCOPE_FUZZ_GO_BINARY").expect(
            "set TIMERSCOPE_FUZZ_GO_BINARY to a Go binary with a symbol table (cargo xtask fuzz does)",
        );
        let binary = GoBinary::open(path.as_ref()).expect("a Go binary");
        let timers = TimerReader::new(&binary).expect("the binary's timer heap layout");
        let goroutines = GoroutineLayout::of_binary(&binary).expect("the binary's g layout");
        Readers {
            binary,
            timers,
            goroutines,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let readers = readers();
    let words = GLOBALS.iter().map(|(_, n)| n).sum::<usize>() * 8;
    let (globals, heap) = data.split_at(data.len().min(words));
    let mut globals = globals.to_vec();
    globals.resize(words, 0);
    let image = {
        let mut memory = BufferMemory::default();
        let mut at = 0;
        for (name, count) in GLOBALS {
            let address = readers.binary.elf.objects[name].address;
            memory.map(address, globals[at..at + count * 8].to_vec());
            at += count * 8;
        }
        memory.map(HEAP, heap.to_vec());
        RuntimeImage {
            binary: &readers.binary,
            memory,
            bias: 0,
        }
    };
    if let Ok(snapshot) = readers.timers.read(&image) {
        for timer in &snapshot.timers {
            assert!(timer.when > 0, "{timer:?}");
        }
    }
    if let Ok(read) = goroutines::read(&image, &readers.goroutines) {
        let allglen = u64::from_le_bytes(globals[..8].try_into().unwrap());
        assert!(read.goroutines.len() as u64 + read.torn + read.unreadable <= allglen);
    }
});
