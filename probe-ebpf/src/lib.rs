// A library target lets probe-user name this crate as a build-dependency, so cargo rebuilds
// probe-user when the eBPF code changes (as in aya-template).
#![no_std]
