//! eBPF side of timerscope. Small programs that only read what userspace's plan names, take a
//! user stack and update aggregate maps; every Go-version difference arrives as data.
#![no_std]
#![no_main]

mod calibrate;
mod cgo;
mod cheap;
mod goroutines;
mod maps;
mod mmap;
mod regs;
mod stacks;
mod timers;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
