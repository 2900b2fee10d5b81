//! Where to probe the C heap: the target's libc, and in it `malloc`, `calloc`, `realloc`,
//! `free`, `posix_memalign` and `aligned_alloc`, each on its first instruction the kernel
//! emulates (`gobinary::prologue::c_probe_point`): a probe there costs about 1 µs a hit, one
//! on e.g. free's opening `TEST` about 13 µs (it is single-stepped).
//!
//! A running target's libc is the file it has mapped (read and probed through
//! `/proc/PID/map_files`, so a library replaced on disk since is still the right one). A target
//! launched by timerscope is stopped before its dynamic loader ran: its libc is found by name
//! in the standard library directories under `/proc/PID/root`, when its binary asks for one.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use gobinary::{GoBinary, process, prologue};
use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};
use probe_common::c_heap_fn;

#[derive(Debug, thiserror::Error)]
pub enum CHeapError {
    #[error("cannot read the target's libc {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("the target's libc {0} is not an ELF file timerscope can read")]
    NotElf(PathBuf),
    #[error("the target's libc {0} has no {1} in its dynamic symbols")]
    MissingSymbol(PathBuf, &'static str),
}

/// The functions probed, with what each is (`c_heap_fn`). `memalign` stands in for
/// `aligned_alloc` (glibc: one function under both names) where a libc lacks the latter.
const FUNCTIONS: [(&str, u32); 7] = [
    ("malloc", c_heap_fn::MALLOC),
    ("calloc", c_heap_fn::CALLOC),
    ("realloc", c_heap_fn::REALLOC),
    ("free", c_heap_fn::FREE),
    ("posix_memalign", c_heap_fn::POSIX_MEMALIGN),
    ("aligned_alloc", c_heap_fn::ALIGNED_ALLOC),
    ("memalign", c_heap_fn::ALIGNED_ALLOC),
];
/// Without these there is no C heap to follow.
const REQUIRED: [&str; 2] = ["malloc", "free"];

/// One probed libc function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CHeapProbe {
    pub symbol: &'static str,
    /// One of `c_heap_fn`.
    pub function: u32,
    /// File offset of the probe point.
    pub file_offset: u64,
    /// Offset of the probe point in the function.
    pub offset: u64,
    /// The kernel emulates the probed instruction (cheap) rather than single-stepping it.
    pub emulated: bool,
}

/// The C heap probes of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CHeapHooks {
    /// The libc as the target names it (for messages and comments).
    pub libc: String,
    /// The path the probes attach to (names the same file as the target's mapping).
    pub attach_path: PathBuf,
    pub probes: Vec<CHeapProbe>,
}

impl CHeapHooks {
    /// The C heap probes for process `pid` running `binary`; `None` when it links no libc
    /// (a static Go binary).
    pub fn for_process(pid: u32, binary: &GoBinary) -> Result<Option<Self>, CHeapError> {
        let Some((libc, attach_path)) = find_libc(pid, binary) else {
            return Ok(None);
        };
        let data = fs::read(&attach_path).map_err(|e| CHeapError::Read(attach_path.clone(), e))?;
        let probes = probes_in(&data).map_err(|e| match e {
            ProbesError::NotElf => CHeapError::NotElf(PathBuf::from(&libc)),
            ProbesError::Missing(symbol) => CHeapError::MissingSymbol(PathBuf::from(&libc), symbol),
        })?;
        Ok(Some(Self {
            libc,
            attach_path,
            probes,
        }))
    }

    /// `malloc+0,free+3,...`, with `(stepped)` after a probe the kernel single-steps.
    pub fn describe(&self) -> String {
        self.probes
            .iter()
            .map(|p| {
                format!(
                    "{}+{}{}",
                    p.symbol,
                    p.offset,
                    if p.emulated { "" } else { "(stepped)" }
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Whether a library path names a C library (`libc.so.6`, `libc-2.31.so`, musl's
/// `libc.musl-x86_64.so.1`).
fn is_libc(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libc.so") || name.starts_with("libc.musl") || {
        name.starts_with("libc-") && name.ends_with(".so")
    }
}

/// Where the standard dynamic loader looks for libraries on x86_64 (after the paths in
/// `LD_LIBRARY_PATH` and the binary's run path, which Go binaries rarely have).
const LIBRARY_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// The target's libc: (its path as the target sees it, a path of the same file to read and
/// attach to).
fn find_libc(pid: u32, binary: &GoBinary) -> Option<(String, PathBuf)> {
    let maps = process::maps(pid).ok()?;
    if let Some(entry) = maps.iter().find(|e| is_libc(&e.path)) {
        let file = format!("/proc/{pid}/map_files/{:x}-{:x}", entry.start, entry.end);
        return Some((entry.path.clone(), PathBuf::from(file)));
    }
    // Not mapped yet: a launched target, stopped before its dynamic loader ran.
    let soname = needed_libc(binary.image())?;
    let root = process::proc_path(pid, "root");
    LIBRARY_DIRS.iter().find_map(|dir| {
        let path = Path::new(dir).join(&soname);
        let in_root = root.join(path.strip_prefix("/").ok()?);
        in_root
            .is_file()
            .then(|| (path.display().to_string(), in_root))
    })
}

/// The libc soname a dynamically linked binary needs (`DT_NEEDED`), if any.
fn needed_libc(image: &[u8]) -> Option<String> {
    let file = object::File::parse(image).ok()?;
    file.section_by_name(".interp")?;
    let dynstr = file.section_by_name(".dynstr")?.data().ok()?;
    dynstr
        .split(|&b| b == 0)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .find(|name| is_libc(name))
        .map(str::to_owned)
}

#[derive(Debug, PartialEq, Eq)]
enum ProbesError {
    NotElf,
    Missing(&'static str),
}

/// The probe points of a libc's allocation functions; one per function address (glibc's
/// `aligned_alloc` and `memalign` are one function).
fn probes_in(data: &[u8]) -> Result<Vec<CHeapProbe>, ProbesError> {
    let file = object::File::parse(data).map_err(|_| ProbesError::NotElf)?;
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| {
            let (offset, size) = s.file_range();
            (s.address(), offset, size)
        })
        .collect();
    let file_offset = |address: u64| {
        segments
            .iter()
            .find(|(vaddr, _, size)| (*vaddr..vaddr + size).contains(&address))
            .map(|(vaddr, offset, _)| address - vaddr + offset)
    };
    let symbols: Vec<(String, u64, u64)> = file
        .dynamic_symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.name().ok()?.to_owned(), s.address(), s.size())))
        .collect();
    let mut probes: Vec<CHeapProbe> = Vec::new();
    let mut seen = Vec::new();
    for (symbol, function) in FUNCTIONS {
        let Some(&(_, address, size)) = symbols.iter().find(|(name, _, _)| name == symbol) else {
            if REQUIRED.contains(&symbol) {
                return Err(ProbesError::Missing(symbol));
            }
            continue;
        };
        if seen.contains(&address) || probes.iter().any(|p| p.function == function) {
            continue;
        }
        seen.push(address);
        let Some(entry) = file_offset(address) else {
            continue;
        };
        let start = usize::try_from(entry).map_err(|_| ProbesError::NotElf)?;
        let len = usize::try_from(size.clamp(16, 1 << 16)).unwrap_or(16);
        let code = data
            .get(start..(start + len).min(data.len()))
            .ok_or(ProbesError::NotElf)?;
        let point = prologue::c_probe_point(code, address);
        probes.push(CHeapProbe {
            symbol,
            function,
            file_offset: entry + point.offset,
            offset: point.offset,
            emulated: point.emulated,
        });
    }
    Ok(probes)
}

/// Whether C heap capture ran (profile comment `c_heap`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CHeapCapture {
    /// The probes were attached.
    On,
    /// Not asked for (`record --no-c-heap`; `watch` without `--c-heap`).
    Off,
    /// The target links no libc.
    NoLibc,
    /// Detached while the capture ran (over the overhead budget).
    Detached,
    /// Asked for but could not attach; why.
    Failed(String),
}

impl fmt::Display for CHeapCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CHeapCapture::On => "on",
            CHeapCapture::Off => "off",
            CHeapCapture::NoLibc => "no-libc",
            CHeapCapture::Detached => "detached",
            CHeapCapture::Failed(_) => "failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_names() {
        assert!(is_libc("/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_libc("/lib/libc-2.31.so"));
        assert!(!is_libc("/lib/ld-musl-x86_64.so.1"));
        assert!(is_libc("libc.musl-x86_64.so.1"));
        assert!(!is_libc("/usr/lib/libcrypto.so.3"));
        assert!(!is_libc("/usr/lib/libc-client.so.2007e"));
    }

    /// This machine's own libc (the one the tests link): every function is found, once each,
    /// on a point inside it.
    #[test]
    fn probes_of_our_own_libc() {
        let maps = process::maps(std::process::id()).unwrap();
        let libc = maps.iter().find(|e| is_libc(&e.path)).expect("libc mapped");
        let data = fs::read(&libc.path).unwrap();
        let probes = probes_in(&data).unwrap();
        let functions: Vec<u32> = probes.iter().map(|p| p.function).collect();
        for required in [c_heap_fn::MALLOC, c_heap_fn::FREE, c_heap_fn::REALLOC] {
            assert_eq!(
                functions.iter().filter(|&&f| f == required).count(),
                1,
                "{probes:?}"
            );
        }
        assert!(probes.iter().all(|p| p.offset < 16), "{probes:?}");
        assert_eq!(probes_in(b"not an elf"), Err(ProbesError::NotElf));
    }
}
