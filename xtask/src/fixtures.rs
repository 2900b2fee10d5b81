//! `cargo xtask fixtures`: builds every Go fixture program under `tests/fixtures/` with every Go
//! toolchain in every variant, into `$CACHE/fixtures/<hash>/` (see `timerscope_tests`).
//!
//! Recipe (change `timerscope_tests::FIXTURE_RECIPE` when changing it):
//! - sources are copied to `<dir>/src/go1.X/<name>/` with a `go.mod` saying
//!   `module timerscope.fixture/<name>` and `go 1.X` (the toolchain's language version, which
//!   selects e.g. the Go 1.23 timer semantics); binaries keep these real paths in DWARF (no
//!   `-trimpath`);
//! - `CGO_ENABLED=0` unless the fixture directory holds a file named `cgo`;
//! - `-ldflags=-linkmode=external` (the C toolchain links) when it holds a file named `external`;
//! - `GOTOOLCHAIN=local`, `GOCACHE=$CACHE/gocache/<version>`, `GOPATH=$CACHE/gopath`, no proxy;
//! - variants: normal, stripped (`-ldflags=-s -w`), pie (`-buildmode=pie`), pie-stripped.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use timerscope_tests::{
    FIXTURES_ENV, GO_VERSIONS, GoVersion, Variant, cache_dir, fixture_files, fixture_names,
    fixture_output, fixture_sources_root, fixtures_dir, go_binary, workspace_root,
};

use crate::util;

#[derive(clap::Args, Default, Clone)]
pub struct Args {
    /// Only this Go version (e.g. 1.25.5 or 1.25); repeatable.
    #[arg(long = "go", value_name = "VERSION")]
    pub go: Vec<String>,
    /// Only this fixture (a directory name under tests/fixtures); repeatable.
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Builds run in parallel.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Also delete fixture builds of other source versions (other hashes) from the cache.
    #[arg(long)]
    pub prune: bool,
}

/// Builds sharing one compile configuration (toolchain, PIE or not) run one after another, so the
/// standard library is compiled once into GOCACHE; groups run in parallel.
struct Group {
    go: &'static GoVersion,
    builds: Vec<(String, Variant)>,
}

pub fn run(args: &Args) -> Result<PathBuf> {
    let start = Instant::now();
    let all_names = fixture_names()?;
    if all_names.is_empty() {
        bail!(
            "fixtures: no fixture programs under {}",
            fixture_sources_root().display()
        );
    }
    let names: Vec<String> = if args.only.is_empty() {
        all_names.clone()
    } else {
        for n in &args.only {
            if !all_names.contains(n) {
                bail!("fixtures: no fixture {n:?}; have {}", all_names.join(", "));
            }
        }
        args.only.clone()
    };
    let versions: Vec<&'static GoVersion> = if args.go.is_empty() {
        GO_VERSIONS.iter().collect()
    } else {
        args.go
            .iter()
            .map(|v| {
                timerscope_tests::go_version(v).with_context(|| {
                    let known: Vec<&str> = GO_VERSIONS.iter().map(|g| g.version).collect();
                    format!(
                        "fixtures: unknown Go version {v:?}; have {}",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };

    let dir = fixtures_dir()?;
    fs::create_dir_all(&dir).with_context(|| format!("fixtures: creating {}", dir.display()))?;
    for go in &versions {
        if !go_binary(go).exists() {
            bail!(
                "fixtures: {} is missing; run `cargo xtask setup`",
                go_binary(go).display()
            );
        }
        for name in &names {
            prepare_sources(&dir, name, go)?;
        }
    }

    let mut groups = Vec::new();
    let (mut total, mut cached) = (0, 0);
    for go in &versions {
        for pie in [false, true] {
            let mut builds = Vec::new();
            for variant in Variant::ALL.into_iter().filter(|v| v.pie() == pie) {
                for name in &names {
                    total += 1;
                    if fixture_output(&dir, name, go, variant).is_file() {
                        cached += 1;
                    } else {
                        builds.push((name.clone(), variant));
                    }
                }
            }
            if !builds.is_empty() {
                groups.push(Group { go, builds });
            }
        }
    }
    let to_build = total - cached;
    println!(
        "fixtures: {} ({total} builds: {cached} cached, {to_build} to build)",
        dir.display()
    );

    let queue = Mutex::new(groups.into_iter().collect::<VecDeque<_>>());
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs.max(1) {
            s.spawn(|| {
                loop {
                    let Some(group) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    for (name, variant) in &group.builds {
                        let t = Instant::now();
                        let result = build(&dir, name, group.go, *variant);
                        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                        let label = format!("{} {variant} {name}", group.go);
                        match result {
                            Ok(()) => {
                                println!(
                                    "fixtures: [{n}/{to_build}] {label} ... built in {:.1}s",
                                    t.elapsed().as_secs_f64()
                                )
                            }
                            Err(e) => {
                                println!("fixtures: [{n}/{to_build}] {label} ... FAILED");
                                failures.lock().unwrap().push(format!("{label}: {e:#}"));
                            }
                        }
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("fixtures: {f}");
        }
        bail!("fixtures: {} of {to_build} builds failed", failures.len());
    }

    if args.prune {
        prune(&dir)?;
    }
    // For shell use; tests compute the same directory themselves (or read TIMERSCOPE_FIXTURES).
    let target = target_dir();
    fs::create_dir_all(&target)?;
    fs::write(target.join("fixtures-dir"), format!("{}\n", dir.display()))?;
    println!(
        "fixtures: ready in {:.1}s ({FIXTURES_ENV}={})",
        start.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(dir)
}

/// Deletes `$CACHE/fixtures/<other hash>` directories.
fn prune(keep: &Path) -> Result<()> {
    let parent = cache_dir().join("fixtures");
    for entry in fs::read_dir(&parent)? {
        let path = entry?.path();
        if path.is_dir() && path != keep {
            println!("fixtures: pruning {}", path.display());
            fs::remove_dir_all(&path)
                .with_context(|| format!("fixtures: removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => workspace_root().join(t),
        _ => workspace_root().join("target"),
    }
}

/// `<dir>/src/go1.X/<name>/`: the sources plus a go.mod for that language version.
fn source_dir(dir: &Path, name: &str, go: &GoVersion) -> PathBuf {
    dir.join("src")
        .join(format!("go{}", go.language()))
        .join(name)
}

/// Copies a fixture's sources and writes its go.mod, atomically; kept afterwards, so the paths
/// in the binaries' DWARF exist.
fn prepare_sources(dir: &Path, name: &str, go: &GoVersion) -> Result<()> {
    let dest = source_dir(dir, name, go);
    if dest.join("go.mod").is_file() {
        return Ok(());
    }
    let parent = dest.parent().unwrap();
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let src = fixture_sources_root().join(name);
    for rel in fixture_files(name)? {
        if rel.as_os_str() == "go.mod" || rel.as_os_str() == "go.sum" {
            bail!(
                "fixtures: {}: go.mod is written by xtask; remove {}",
                name,
                src.join(rel).display()
            );
        }
        let to = tmp.join(&rel);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(src.join(&rel), &to)
            .with_context(|| format!("fixtures: copying {}", src.join(&rel).display()))?;
    }
    fs::write(
        tmp.join("go.mod"),
        format!("module timerscope.fixture/{name}\n\ngo {}\n", go.language()),
    )?;
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_dir_all(&tmp);
        // Another xtask run may have put the same (content-addressed) sources there first.
        if !dest.join("go.mod").is_file() {
            return Err(e)
                .with_context(|| format!("fixtures: moving {} into place", tmp.display()));
        }
    }
    Ok(())
}

fn build(dir: &Path, name: &str, go: &GoVersion, variant: Variant) -> Result<()> {
    let src = source_dir(dir, name, go);
    let out = fixture_output(dir, name, go, variant);
    let out_dir = out.parent().unwrap();
    fs::create_dir_all(out_dir)?;
    let tmp = out_dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let cache = cache_dir();
    let cgo = fixture_sources_root().join(name).join("cgo").exists();
    let external = fixture_sources_root().join(name).join("external").exists();

    let mut cmd = Command::new(go_binary(go));
    cmd.current_dir(&src).arg("build").arg("-o").arg(&tmp);
    let ldflags: Vec<&str> = [
        variant.stripped().then_some("-s -w"),
        external.then_some("-linkmode=external"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !ldflags.is_empty() {
        cmd.arg(format!("-ldflags={}", ldflags.join(" ")));
    }
    if variant.pie() {
        cmd.arg("-buildmode=pie");
    }
    cmd.arg(".");
    for var in [
        "GOROOT",
        "GOOS",
        "GOARCH",
        "GOAMD64",
        "GODEBUG",
        "GOEXPERIMENT",
        "GOFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", cache.join("gocache").join(go.version))
        .env("GOPATH", cache.join("gopath"))
        .env("GOENV", "off")
        .env("GOWORK", "off")
        .env("GO111MODULE", "on")
        .env("GOPROXY", "off");
    let result = util::output(&mut cmd);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &out).with_context(|| format!("moving {} into place", tmp.display()))?;
    Ok(())
}
