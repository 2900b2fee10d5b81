// A library target lets capture name this crate as a build-dependency, so cargo rebuilds
// capture when the eBPF code changes (as in aya-template).
#![no_std]
