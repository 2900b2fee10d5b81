//! The target and symbolize stages on real fixture builds, without probes: `.gopclntab` of a
//! stripped build agrees with `.symtab` and DWARF of the unstripped one (internally and
//! externally linked, PIE or not), compressed DWARF reads like plain DWARF, and the per-version
//! struct offset table agrees with DWARF.
// Each test binary uses a few of the package's dependencies.
#![allow(unused_crate_dependencies)]

mod common;

use std::{path::Path, process::Command};

use std::sync::Arc;

use capture::{
    plan::Plan,
    symbolize::{FrameSource, Symbolizer},
};
use gobinary::{GoBinary, RuntimeLayout, layout::LayoutSource};
use pprof::{Frame, vocabulary::Events};
use timerscope_tests::{GoVersion, Variant, fixture_path, reference_go};

/// Unstripped builds and their stripped twins (same link addresses).
const TWINS: [(Variant, Variant); 2] = [
    (Variant::Normal, Variant::Stripped),
    (Variant::Pie, Variant::PieStripped),
];
/// Internally linked pure Go, and cgo linked by the C linker.
const FIXTURES: [&str; 2] = ["timers", "cgotimers"];

fn open(name: &str, go: &GoVersion, variant: Variant) -> GoBinary {
    let path = fixture_path(name, go, variant).expect("fixture built");
    GoBinary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The symbolizer `record` uses, for a binary on disk (link addresses).
fn symbolizer(path: &Path) -> Symbolizer {
    let binary = GoBinary::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Symbolizer::new(Arc::new(binary), 0)
}

/// A name with array lengths elided, as the runtime names generated equality functions
/// (`type:.eq.[...]main.field` where `.symtab` has `type:.eq.[3]main.field`, sharing code
/// with `[8]`); `Target::function` cannot map those back.
fn without_array_lengths(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after.find(']') {
            Some(close) if after[1..close].bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str("[...]");
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn pclntab_finds_every_symtab_function(go: &GoVersion) {
    for name in FIXTURES {
        for (full, stripped) in TWINS {
            let full_target = open(name, go, full);
            let bare = open(name, go, stripped);
            let context = format!("{name} {go} {stripped}");
            assert!(
                bare.elf.symbols.is_empty() && !bare.elf.has_dwarf,
                "{context}: really stripped"
            );
            let table = bare.pclntab.as_ref().expect("a pclntab");
            assert_eq!(
                Some(table.text_start()),
                full_target.function("runtime.text").map(|s| s.address),
                "{context}: text base is runtime.text"
            );
            assert!(table.has_inline_trees(), "{context}");
            let go_text =
                table.functions().next().unwrap().entry..table.functions().last().unwrap().end;
            let mut checked = 0;
            for (symbol_name, symbol) in &full_target.elf.symbols {
                // Linker markers have no size; C functions are outside the Go text.
                if symbol.size == 0 || !go_text.contains(&symbol.address) {
                    continue;
                }
                checked += 1;
                match bare.function(symbol_name) {
                    Some(found) => {
                        assert_eq!(found.address, symbol.address, "{context}: {symbol_name}")
                    }
                    None => {
                        let function = table.function_containing(symbol.address);
                        assert!(
                            function.is_some_and(|f| f.entry == symbol.address
                                && without_array_lengths(f.name)
                                    == without_array_lengths(symbol_name)),
                            "{context}: {symbol_name} at {:#x}: table has {function:?}",
                            symbol.address
                        );
                    }
                }
            }
            assert_eq!(
                checked,
                table.function_count(),
                "{context}: one symbol per function"
            );
        }
    }
}
per_go_version!(
    pclntab_finds_every_symtab_function,
    super::pclntab_finds_every_symtab_function
);

/// One frame as compared here: function, file, line.
type Line = (String, String, i64);

/// Every instruction address of the program's own functions (`main.*`).
fn user_code(target: &GoBinary) -> Vec<u64> {
    let table = target.pclntab.as_ref().expect("a pclntab");
    let pcs: Vec<u64> = table
        .functions()
        .filter(|f| f.name.starts_with("main."))
        .flat_map(|f| f.entry..f.end)
        .collect();
    assert!(!pcs.is_empty());
    pcs
}

fn symbolized(symbolizer: &mut Symbolizer, pc: u64) -> Vec<Line> {
    symbolizer
        .frames(pc)
        .iter()
        .map(|f: &Frame| (f.function.clone(), f.file.clone(), f.line))
        .collect()
}

/// Frames straight from DWARF, files as Go names them (no `./` for directory-less files).
fn dwarf_frames(loader: &addr2line::Loader, pc: u64) -> Vec<Line> {
    let mut frames = Vec::new();
    let mut iter = loader.find_frames(pc).expect("DWARF lookup");
    while let Some(frame) = iter.next().expect("DWARF frame") {
        let function = frame
            .function
            .expect("named")
            .raw_name()
            .unwrap()
            .into_owned();
        let file = frame
            .location
            .as_ref()
            .and_then(|l| l.file)
            .unwrap_or_default();
        frames.push((
            function,
            file.strip_prefix("./").unwrap_or(file).to_owned(),
            frame.location.and_then(|l| l.line).map_or(0, i64::from),
        ));
    }
    frames
}

/// Whether code the compiler generated (no source file of its own) is in the frames.
fn autogenerated(frames: &[Line]) -> bool {
    frames
        .iter()
        .any(|(_, file, _)| file.is_empty() || file == "<autogenerated>")
}

/// All builds of a program symbolize alike (all from the pclntab), and that agrees with the
/// unstripped build's DWARF on every function and on the innermost file:line. Callers' lines
/// are not compared: Go 1.19's DWARF puts some inlined calls on the wrong line (cgotimers'
/// `t.Stop()` on main.go:63 instead of 60), where the pclntab is right.
fn pclntab_frames_match_dwarf_in_user_code(go: &GoVersion) {
    for name in FIXTURES {
        for (full, stripped) in TWINS {
            let context = format!("{name} {go} {stripped}");
            let full_path = fixture_path(name, go, full).unwrap();
            let bare_path = fixture_path(name, go, stripped).unwrap();
            let mut unstripped = symbolizer(&full_path);
            let mut pclntab = symbolizer(&bare_path);
            assert_eq!(pclntab.source(), FrameSource::Pclntab, "{context}");
            assert!(
                pclntab.has_lines() && pclntab.has_inline_frames(),
                "{context}"
            );
            let dwarf = addr2line::Loader::new(&full_path).unwrap();
            let mut inlined = 0;
            for pc in user_code(&GoBinary::open(&bare_path).unwrap()) {
                let frames = symbolized(&mut pclntab, pc);
                assert_eq!(
                    symbolized(&mut unstripped, pc),
                    frames,
                    "{context}: pc {pc:#x}"
                );
                let from_dwarf = dwarf_frames(&dwarf, pc);
                if autogenerated(&frames) || autogenerated(&from_dwarf) {
                    continue;
                }
                let functions =
                    |frames: &[Line]| frames.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
                assert_eq!(
                    functions(&frames),
                    functions(&from_dwarf),
                    "{context}: pc {pc:#x}"
                );
                assert_eq!(frames[0], from_dwarf[0], "{context}: pc {pc:#x}");
                inlined += usize::from(frames.len() > 1);
            }
            // The user code calls into inlined time/runtime code, so inline trees were read.
            assert!(inlined > 0, "{context}: no inlined frame in user code");
        }
    }
}
per_go_version!(
    pclntab_frames_match_dwarf_in_user_code,
    super::pclntab_frames_match_dwarf_in_user_code
);

/// `objcopy --compress-debug-sections=STYLE`: `zlib-gnu` makes the `.zdebug_*` sections older
/// Go releases wrote, `zlib` SHF_COMPRESSED ones (Go 1.11+).
fn compressed_copy(binary: &Path, style: &str, dir: &Path) -> std::path::PathBuf {
    let output = dir.join(format!("compressed-{style}"));
    let status = Command::new("objcopy")
        .arg(format!("--compress-debug-sections={style}"))
        .arg(binary)
        .arg(&output)
        .status()
        .expect("objcopy runs");
    assert!(
        status.success(),
        "objcopy --compress-debug-sections={style}"
    );
    output
}

/// Struct offsets, Go frames (DWARF's own) and C frames (which timerscope takes from DWARF)
/// read the same from compressed DWARF as from plain.
#[test]
fn compressed_dwarf_reads_like_plain_dwarf() {
    let plain = fixture_path("cgotimers", reference_go(), Variant::Normal).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wanted = ["runtime.timer", "runtime.g"];
    let plain_target = GoBinary::open(&plain).unwrap();
    let plain_offsets = plain_target.dwarf().unwrap().struct_offsets(&wanted);
    assert!(plain_offsets.len() == wanted.len(), "{plain_offsets:?}");
    let plain_dwarf = addr2line::Loader::new(&plain).unwrap();
    let pcs = user_code(&plain_target);
    let c_function = plain_target
        .function("hours_for")
        .expect("C function in .symtab");
    for (style, section, shf_compressed) in [
        ("zlib-gnu", ".zdebug_info", false),
        ("zlib", ".debug_info", true),
    ] {
        let copy = compressed_copy(&plain, style, dir.path());
        let sections = Command::new("readelf")
            .arg("-SW")
            .arg(&copy)
            .output()
            .unwrap();
        let sections = String::from_utf8_lossy(&sections.stdout);
        let info = sections
            .lines()
            .find(|l| l.contains(&format!(" {section} ")))
            .unwrap_or_else(|| panic!("{style}: no {section}:\n{sections}"));
        // readelf shows SHF_COMPRESSED as flag C.
        let flag_c = info.split_whitespace().any(|f| f == "C");
        assert_eq!(flag_c, shf_compressed, "{info}");

        let target = GoBinary::open(&copy).unwrap();
        assert!(target.elf.has_dwarf, "{style}");
        let offsets = target.dwarf().map(|d| d.struct_offsets(&wanted));
        assert_eq!(offsets.as_ref(), Some(&plain_offsets), "{style}");
        let compressed = addr2line::Loader::new(&copy).unwrap();
        for &pc in &pcs {
            assert_eq!(
                dwarf_frames(&compressed, pc),
                dwarf_frames(&plain_dwarf, pc),
                "{style}: {pc:#x}"
            );
        }
        let mut symbolizer = symbolizer(&copy);
        let c_frames = symbolized(&mut symbolizer, c_function.address);
        assert_eq!(c_frames.len(), 1, "{style}: {c_frames:?}");
        let (function, file, line) = &c_frames[0];
        assert_eq!(function, "hours_for", "{style}");
        assert!(
            file.ends_with("callback.c") && *line == 4,
            "{style}: {c_frames:?}"
        );
    }
}

/// The table hooks.rs falls back to without DWARF gives exactly what each release's DWARF says,
/// and stripped builds get the hooks the unstripped ones get, found through pclntab.
fn struct_offset_table_matches_dwarf(go: &GoVersion) {
    for (full, stripped) in TWINS {
        let full_target = open("timers", go, full);
        let bare = open("timers", go, stripped);
        let table = RuntimeLayout::of_version(full_target.version()).expect("a table row");
        let from_dwarf = RuntimeLayout::of_binary(&full_target).unwrap();
        assert_eq!(from_dwarf.source, LayoutSource::Dwarf, "{go} {full}");
        assert_eq!(
            RuntimeLayout {
                source: LayoutSource::Table,
                ..from_dwarf
            },
            table,
            "{go} {full}"
        );
        let with_dwarf = Plan::for_binary(&full_target, Events::All).unwrap();
        let without = Plan::for_binary(&bare, Events::All).unwrap();
        assert_eq!(
            (with_dwarf.offsets_source, without.offsets_source),
            (LayoutSource::Dwarf, LayoutSource::Table)
        );
        assert_eq!(without.config, with_dwarf.config, "{go} {stripped}");
        assert_eq!(without.hooks, with_dwarf.hooks, "{go} {stripped}");
        assert!(
            without.missing_hooks.is_empty(),
            "{go} {stripped}: {:?}",
            without.missing_hooks
        );
        assert_eq!(without.go_func, with_dwarf.go_func, "{go} {stripped}");
    }
}
per_go_version!(
    struct_offset_table_matches_dwarf,
    super::struct_offset_table_matches_dwarf
);
