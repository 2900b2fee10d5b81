use which::which;

/// Rebuild the eBPF object when bpf-linker changes (aya-template does the same): cargo cannot see
/// the linker as a dependency otherwise.
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found on PATH: run `cargo xtask setup` (installs bpf-linker 0.13 for LLVM 22)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
