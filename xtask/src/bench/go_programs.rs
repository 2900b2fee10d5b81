//! The Go programs of the bench that are not test fixtures, from `tests/fixtures/bench/`, built
//! with the reference Go toolchain into `$CACHE/bench/<name>/` and rebuilt only when a source
//! changes (so `cargo xtask fixtures` does not build them for every Go version and variant):
//! - `large`: most of the standard library plus generated packages of non-inlined functions,
//!   with [`LARGE_PACKAGES`] about 100 MB, a large service's size (symbolization and start-up
//!   rows), with Go 1.25's default DWARF 5 and again with DWARF 4 (`GOEXPERIMENT=nodwarf5`),
//!   which binutils 2.40 reads fully; each first build takes a few minutes on two cores; with
//!   fewer packages, the smaller binaries of the symbolization-against-size row (each size is
//!   its own module directory, so Go's build cache does not share the packages' compiled code
//!   between sizes: the first run builds each, about 10 minutes for 5 packages on a loaded
//!   machine);
//! - `paced`: timer operations at a fixed rate or back to back, at a chosen stack depth, with
//!   pending timers (watch-mode and growth rows);
//! - `server`: a net/http server with deadlines (servers row), with Go 1.19 and Go 1.25.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use timerscope_tests::{GoVersion, cache_dir, fixture_sources_root, go_binary, reference_go};

use super::report::file_size;
use crate::util;

/// Generated packages of the 100 MB binary.
pub const LARGE_PACKAGES: usize = 11;
const FUNCTIONS_PER_PACKAGE: usize = 5_000;
const FUNCTIONS_PER_FILE: usize = 1_000;
const LARGE_MODULE: &str = "timerscope.bench/large";

/// Which DWARF version a binary's debug info has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dwarf {
    /// Go 1.25's default.
    V5,
    /// `GOEXPERIMENT=nodwarf5`.
    V4,
}

impl Dwarf {
    pub fn label(self) -> &'static str {
        match self {
            Dwarf::V5 => "DWARF 5, Go 1.25's default",
            Dwarf::V4 => "DWARF 4, GOEXPERIMENT=nodwarf5",
        }
    }
}

/// The large binary: `tests/fixtures/bench/large/main.go` and `packages` generated packages.
pub fn large(dwarf: Dwarf, packages: usize) -> Result<PathBuf> {
    let mut sources = vec![(PathBuf::from("gen_table.go"), table_of_packages(packages))];
    for package in 0..packages {
        let dir = PathBuf::from(format!("gen/p{package:02}"));
        sources.push((dir.join("table.go"), table_of_functions(package)));
        for file in 0..FUNCTIONS_PER_PACKAGE / FUNCTIONS_PER_FILE {
            sources.push((
                dir.join(format!("f{file:02}.go")),
                generated_file(package, file),
            ));
        }
    }
    // The 100 MB binaries keep the names they had before the count was a parameter.
    let size = if packages == LARGE_PACKAGES {
        String::new()
    } else {
        format!("-p{packages}")
    };
    match dwarf {
        Dwarf::V5 => build(
            "large",
            &format!("large{size}"),
            reference_go(),
            sources,
            None,
        ),
        Dwarf::V4 => build(
            "large",
            &format!("large{size}-dwarf4"),
            reference_go(),
            sources,
            Some("nodwarf5"),
        ),
    }
}

/// The paced timer workload: `tests/fixtures/bench/paced/main.go`.
pub fn paced() -> Result<PathBuf> {
    build("paced", "paced", reference_go(), Vec::new(), None)
}

/// The HTTP server with deadlines, built by `go`: `tests/fixtures/bench/server/main.go`.
pub fn server(go: &'static GoVersion) -> Result<PathBuf> {
    build(
        "server",
        &format!("server-go{}", go.version),
        go,
        Vec::new(),
        None,
    )
}

/// Builds `tests/fixtures/bench/<name>/main.go` plus `generated` sources (paths relative to the
/// module) as module `timerscope.bench/<name>` into `$CACHE/bench/<output>/<output>`, unless the
/// sources there and the binary are up to date; returns the binary.
fn build(
    name: &str,
    output: &str,
    go: &'static GoVersion,
    generated: Vec<(PathBuf, String)>,
    goexperiment: Option<&str>,
) -> Result<PathBuf> {
    let dir = cache_dir().join("bench").join(output);
    let src = dir.join("src");
    let binary = dir.join(output);
    let main_go = fixture_sources_root()
        .join("bench")
        .join(name)
        .join("main.go");
    let mut sources = vec![
        (
            PathBuf::from("main.go"),
            fs::read_to_string(&main_go)
                .with_context(|| format!("bench: reading {}", main_go.display()))?,
        ),
        (
            PathBuf::from("go.mod"),
            format!("module timerscope.bench/{name}\n\ngo {}\n", go.language()),
        ),
    ];
    sources.extend(generated);
    let mut changed = !binary.is_file();
    for (path, text) in &sources {
        let path = src.join(path);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::create_dir_all(path.parent().unwrap())?;
            fs::write(&path, text).with_context(|| format!("bench: writing {}", path.display()))?;
            changed = true;
        }
    }
    if !changed {
        return Ok(binary);
    }
    println!("bench: building {output} with {go} in {}", dir.display());
    let start = Instant::now();
    let tmp = dir.join(format!("{output}.tmp"));
    let cache = cache_dir();
    let mut cmd = Command::new(go_binary(go));
    cmd.current_dir(&src)
        .args(["build", "-o"])
        .arg(&tmp)
        .arg(".")
        .env_remove("GOFLAGS")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", cache.join("gocache").join(go.version))
        .env("GOPATH", cache.join("gopath"))
        .env("GOENV", "off")
        .env("GOWORK", "off")
        .env("GOPROXY", "off");
    match goexperiment {
        Some(experiment) => cmd.env("GOEXPERIMENT", experiment),
        None => cmd.env_remove("GOEXPERIMENT"),
    };
    util::output(&mut cmd).with_context(|| format!("bench: building {output}"))?;
    fs::rename(&tmp, &binary)
        .with_context(|| format!("bench: moving {} into place", tmp.display()))?;
    println!(
        "bench: built {} ({}) in {:.0}s",
        binary.display(),
        file_size(&binary),
        start.elapsed().as_secs_f64()
    );
    Ok(binary)
}

/// `gen_table.go`: package main's list of every generated package's functions.
fn table_of_packages(packages: usize) -> String {
    let mut go = String::from(
        "// Code generated by cargo xtask bench. DO NOT EDIT.\n\npackage main\n\nimport (\n",
    );
    for p in 0..packages {
        let _ = writeln!(go, "\t\"{LARGE_MODULE}/gen/p{p:02}\"");
    }
    go.push_str(")\n\nvar genTable = [][]func(int, string) (int, string){\n");
    for p in 0..packages {
        let _ = writeln!(go, "\tp{p:02}.Table,");
    }
    go.push_str("}\n");
    go
}

/// `gen/pNN/table.go`: the package's functions, so the linker keeps them.
fn table_of_functions(package: usize) -> String {
    let mut go = format!(
        "// Code generated by cargo xtask bench. DO NOT EDIT.\n\npackage p{package:02}\n\n\
         var Table = []func(int, string) (int, string){{\n"
    );
    for f in 0..FUNCTIONS_PER_PACKAGE {
        let _ = writeln!(go, "\tGen{},", package * FUNCTIONS_PER_PACKAGE + f);
    }
    go.push_str("}\n");
    go
}

/// `gen/pNN/fMM.go`: a thousand functions, each with its own struct type, a loop, a switch and
/// calls into strconv and strings (some inlined, which gives DWARF inlined frames).
fn generated_file(package: usize, file: usize) -> String {
    let mut go = format!(
        "// Code generated by cargo xtask bench. DO NOT EDIT.\n\npackage p{package:02}\n\n\
         import (\n\t\"strconv\"\n\t\"strings\"\n)\n"
    );
    let first = package * FUNCTIONS_PER_PACKAGE + file * FUNCTIONS_PER_FILE;
    for i in first..first + FUNCTIONS_PER_FILE {
        let factor = i % 97 + 1;
        let mask = i * 2_654_435_761 % 1_000_003;
        let _ = write!(
            go,
            r#"
type rec{i} struct {{
	id    int
	name  string
	score float64
	tags  []string
}}

//go:noinline
func Gen{i}(x int, s string) (int, string) {{
	r := rec{i}{{id: x, name: s}}
	for k := 0; k < x%7; k++ {{
		r.score += float64(k * {factor})
		r.tags = append(r.tags, strconv.Itoa(k+{i}))
	}}
	switch x % 5 {{
	case 0:
		r.name = strings.ToUpper(s) + "-{i}"
	case 1:
		r.name = strings.Repeat(s, 2)
	case 2:
		r.id += len(strings.Join(r.tags, ","))
	case 3:
		r.id ^= {mask}
	default:
		r.name = strconv.Quote(s)
	}}
	if r.id%3 == 0 {{
		return r.id + int(r.score), r.name
	}}
	return r.id, r.name + strconv.FormatFloat(r.score, 'f', 2, 64)
}}
"#
        );
    }
    go
}
