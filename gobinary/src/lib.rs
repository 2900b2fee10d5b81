//! A Go executable, read once: [`GoBinary::open`] maps the file and parses its ELF headers one
//! time; the build info, `.gopclntab`, DWARF (on first use), the struct layouts and the x86
//! decoding of runtime functions all work from that one mapping and parse. Hook planning, the
//! symbolizer and the process-memory readers share it. Knows nothing of eBPF.
//!
//! [`process`] is the live process running such a binary, as `/proc` shows it.

pub mod body;
pub mod buildinfo;
pub mod dwarf;
pub mod elf;
pub mod layout;
pub mod pclntab;
pub mod process;
pub mod prologue;
pub mod runtime;

use std::{
    fs::File,
    ops::Deref,
    path::Path,
    sync::{Arc, OnceLock},
};

pub use buildinfo::{BuildInfo, GoVersion};
pub use dwarf::Dwarf;
pub use elf::{ElfInfo, Symbol};
pub use layout::{HeapLayout, RuntimeLayout, UnsupportedGo};
pub use pclntab::Pclntab;

/// Why a file is not a Go binary timerscope can read.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file: timerscope attaches to Go programs built for linux/amd64")]
    NotElf,
    #[error("built for {0}, not x86_64: timerscope runs on x86_64 Linux only")]
    Architecture(String),
    #[error(
        "not a Go binary ({0}): timerscope only attaches to programs built by the Go toolchain"
    )]
    NotGo(&'static str),
    #[error("unreadable Go build info: {0}")]
    BuildInfo(&'static str),
}

/// A binary's bytes, mapped once and shared by the readers that keep them (pclntab, DWARF).
#[derive(Clone)]
pub struct Image(Arc<Bytes>);

/// An enum rather than a trait object: the pclntab reads the image a few bytes at a time, millions
/// of times when symbolizing, and a match inlines where a virtual call does not.
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Image {
    pub fn open(path: &Path) -> Result<Self, BinaryError> {
        let open_error = |source| BinaryError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        // SAFETY: the mapping is read-only; a binary being rewritten under a running process
        // is already undefined for that process.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_error)?;
        Ok(Self(Arc::new(Bytes::Mapped(map))))
    }

    /// Bytes already in memory (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Bytes::Owned(bytes)))
    }
}

impl Deref for Image {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match &*self.0 {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// A Go binary, read once.
pub struct GoBinary {
    image: Image,
    pub elf: ElfInfo,
    pub buildinfo: BuildInfo,
    /// The runtime's symbol table; `None` only when damaged (every Go binary has one).
    pub pclntab: Option<Pclntab>,
    /// Why `pclntab` is `None`.
    pclntab_error: Option<pclntab::PclntabError>,
    /// Loaded on first use: [`Self::dwarf`] for struct layouts, [`Self::dwarf_with_lines`] for
    /// symbolizing.
    dwarf: OnceLock<Option<Dwarf>>,
    dwarf_with_lines: OnceLock<Option<Dwarf>>,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("version", &self.buildinfo.version_string)
            .field("pclntab", &self.pclntab)
            .finish_non_exhaustive()
    }
}

impl GoBinary {
    /// Opens a binary: a path, or `/proc/PID/exe` for a running process (which also works when
    /// the file was replaced on disk or lives only inside the process's mount namespace).
    pub fn open(path: &Path) -> Result<Self, BinaryError> {
        let binary = Self::from_image(Image::open(path)?)?;
        if let Some(error) = &binary.pclntab_error {
            tracing::warn!(
                "binary: {}: {error}; Go frames fall back to DWARF or the symbol table",
                path.display()
            );
        }
        tracing::debug!(
            "binary: {}: {}, {} bytes, pclntab {:?}, dwarf {}",
            path.display(),
            binary.buildinfo.version_string,
            binary.image.len(),
            binary.pclntab.as_ref().map(Pclntab::format),
            binary.elf.has_dwarf,
        );
        Ok(binary)
    }

    /// Reads a binary already in memory.
    pub fn from_image(image: Image) -> Result<Self, BinaryError> {
        let elf = ElfInfo::parse(&image)?;
        let section = elf.buildinfo_section.and_then(|s| {
            let start = usize::try_from(s.offset).ok()?;
            image.get(start..start.checked_add(usize::try_from(s.size).ok()?)?)
        });
        let build_version = elf.objects.get("runtime.buildVersion").map(|s| s.address);
        let buildinfo = BuildInfo::read(&image, section, &elf.segments, build_version)?;
        let (pclntab, pclntab_error) = match Pclntab::find(image.clone(), &elf) {
            Ok(pclntab) => (Some(pclntab), None),
            Err(error) => (None, Some(error)),
        };
        Ok(Self {
            image,
            elf,
            buildinfo,
            pclntab,
            pclntab_error,
            dwarf: OnceLock::new(),
            dwarf_with_lines: OnceLock::new(),
        })
    }

    pub fn image(&self) -> &[u8] {
        &self.image
    }

    pub fn version(&self) -> GoVersion {
        self.buildinfo.version
    }

    /// Whether the function containing a link address is code the compiler generated around
    /// user code (`funcID` wrapper: method and `go f(x)` wrappers), which Go's unwinder leaves
    /// out of stacks; `None` when the release's numbering is not known or `runtime.goexit`
    /// does not carry the number it should (docs/go-runtime.md, "Goroutines in memory").
    pub fn is_wrapper(&self, pc: u64) -> Option<bool> {
        let pclntab = self.pclntab.as_ref()?;
        let version = self.version();
        // (goexit, wrapper): src runtime/symtab.go (1.19 - 1.20), internal/abi/symtab.go.
        let (goexit, wrapper) = match (version.major, version.minor) {
            (1, 19..=21) => (7, 21),
            (1, 22..=24) => (8, 22),
            (1, 25..=27) => (8, 23),
            _ => return None,
        };
        let goexit_entry = pclntab.function("runtime.goexit")?.entry;
        if pclntab.func_id(goexit_entry)? != goexit {
            return None;
        }
        Some(pclntab.func_id(pc)? == wrapper)
    }

    /// The binary's DWARF, loaded (and decompressed) the first time it is asked for.
    pub fn dwarf(&self) -> Option<&Dwarf> {
        self.dwarf_part(&self.dwarf, dwarf::Part::Types)
    }

    /// The whole DWARF, line tables included: for frames of code the pclntab does not cover.
    pub fn dwarf_with_lines(&self) -> Option<&Dwarf> {
        self.dwarf_part(&self.dwarf_with_lines, dwarf::Part::All)
    }

    fn dwarf_part<'a>(
        &'a self,
        cell: &'a OnceLock<Option<Dwarf>>,
        part: dwarf::Part,
    ) -> Option<&'a Dwarf> {
        cell.get_or_init(|| {
            let dwarf = Dwarf::load(&self.image, &self.elf.debug_sections, part);
            tracing::debug!("binary: DWARF ({part:?}) loaded: {}", dwarf.is_some());
            dwarf
        })
        .as_ref()
    }

    /// A function by name: from `.symtab`, else (stripped binaries) from `.gopclntab`.
    pub fn function(&self, name: &str) -> Option<Symbol> {
        self.elf.symbols.get(name).copied().or_else(|| {
            let function = self.pclntab.as_ref()?.function(name)?;
            Some(Symbol {
                address: function.entry,
                size: function.end - function.entry,
            })
        })
    }

    /// A little-endian word of the binary's initialized data at a link-time address.
    pub fn read_word(&self, vaddr: u64) -> Option<u64> {
        // In a PIE the loader writes this word; the file may hold 0 there.
        if let Some(&value) = self.elf.relative_relocations.get(&vaddr) {
            return Some(value);
        }
        let start = usize::try_from(self.elf.file_offset(vaddr)?).ok()?;
        let bytes = self.image.get(start..start + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// The first bytes of a function's code, read from the file.
    pub fn code(&self, symbol: Symbol, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(self.elf.file_offset(symbol.address)?).ok()?;
        let len = len.min(
            usize::try_from(symbol.size)
                .ok()
                .filter(|&s| s > 0)
                .unwrap_or(len),
        );
        self.image.get(start..start + len)
    }
}
