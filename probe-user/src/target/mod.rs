//! Stage 1, inspect: reads a target binary once into a [`Target`]. Knows nothing of aya.

pub mod body;
pub mod buildinfo;
pub mod dwarf;
pub mod elf;
pub mod pclntab;
pub mod process;
pub mod prologue;

use std::{fs::File, ops::Deref, path::Path, sync::Arc};

pub use buildinfo::{BuildInfo, GoVersion};
pub use elf::{ElfInfo, Symbol};
pub use pclntab::Pclntab;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
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
    #[error("cannot read /proc/{0}: {1} (is the process still running?)")]
    Proc(u32, std::io::Error),
    #[error("process {0} has no executable mapping of its own binary in /proc/{0}/maps")]
    NoTextMapping(u32),
}

/// A binary's bytes, mapped once and shared by the readers that keep them (pclntab,
/// symbolizer).
#[derive(Clone)]
pub struct Image(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl Image {
    pub fn open(path: &Path) -> Result<Self, TargetError> {
        let open_error = |source| TargetError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        // SAFETY: the mapping is read-only; a binary being rewritten under a running process
        // is already undefined for that process.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_error)?;
        Ok(Self(Arc::new(map)))
    }

    /// Bytes built in memory (tests).
    #[cfg(test)]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl Deref for Image {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

/// A Go binary, read once.
pub struct Target {
    image: Image,
    pub elf: ElfInfo,
    pub buildinfo: BuildInfo,
    /// The runtime's symbol table; `None` only when damaged (every Go binary has one).
    pub pclntab: Option<Pclntab>,
}

impl Target {
    /// Opens a binary: a path, or `/proc/PID/exe` for a running process (which also works when
    /// the file was replaced on disk or lives only inside the process's mount namespace).
    pub fn open(path: &Path) -> Result<Self, TargetError> {
        let image = Image::open(path)?;
        let elf = ElfInfo::parse(&image)?;
        let buildinfo = BuildInfo::read(&image, elf.buildinfo_section.as_deref(), &elf.segments)?;
        let pclntab = Pclntab::find(image.clone())
            .inspect_err(|e| tracing::warn!("target: {}: {e}", path.display()))
            .ok();
        Ok(Self {
            image,
            elf,
            buildinfo,
            pclntab,
        })
    }

    pub fn image(&self) -> &[u8] {
        &self.image
    }

    pub fn version(&self) -> GoVersion {
        self.buildinfo.version
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
