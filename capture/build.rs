use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;
// A build-dependency only so that cargo rebuilds the object when the eBPF crate changes.
use probe_ebpf as _;

/// The eBPF object's name: probe-ebpf's binary target, embedded by lib.rs.
const OBJECT: &str = "probe";

/// Builds the eBPF object (probe-ebpf) with nightly for the BPF target; lib.rs embeds it.
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "probe-ebpf")
        .ok_or_else(|| anyhow!("probe-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
        .as_str();

    // aya-build builds in a target dir under OUT_DIR, and `cargo clippy` and `cargo build` give
    // this script different OUT_DIRs: `cargo xtask test`, which runs both, would compile the eBPF
    // crate twice. So it builds in one directory per profile (`<target>/<profile>/probe-ebpf`),
    // under a lock, and the object is copied to this script's OUT_DIR.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let shared = shared_build_dir(&out_dir);
    fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    let lock = fs::File::create(shared.join(".lock"))
        .with_context(|| format!("creating {}", shared.join(".lock").display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", shared.display()))?;
    // SAFETY: a build script is single-threaded here; aya-build reads OUT_DIR from the
    // environment and has no other way to be given a directory.
    unsafe { std::env::set_var("OUT_DIR", &shared) };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: name.as_str(),
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    fs::copy(shared.join(OBJECT), out_dir.join(OBJECT))
        .with_context(|| format!("copying {OBJECT} to {}", out_dir.display()))?;
    Ok(())
}

/// `<target>/<profile>/probe-ebpf` for an OUT_DIR of `<target>/<profile>/build/<pkg>-<hash>/out`;
/// OUT_DIR itself if it is laid out otherwise.
fn shared_build_dir(out_dir: &Path) -> PathBuf {
    match out_dir.ancestors().nth(3) {
        Some(profile_dir)
            if out_dir
                .parent()
                .and_then(Path::parent)
                .is_some_and(|build| build.ends_with("build")) =>
        {
            profile_dir.join("probe-ebpf")
        }
        _ => out_dir.to_owned(),
    }
}
