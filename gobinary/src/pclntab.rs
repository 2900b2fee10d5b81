//! `.gopclntab`, the Go runtime's own symbol table: entry, name, file:line and inlined calls of
//! every Go function. The runtime needs it for tracebacks, so unlike `.symtab` and DWARF it
//! survives `-ldflags=-s -w`: it is how stripped binaries are hooked and symbolized.
//!
//! Formats, by header magic: `0xfffffffb` Go 1.2-1.15, `0xfffffffa` 1.16-1.17, `0xfffffff0`
//! 1.18-1.19, `0xfffffff1` 1.20 and later. The layouts are those of `pcHeader`, `moduledata`,
//! `_func` and `inlinedCall` in the runtime (runtime/symtab.go, runtime/symtabinl.go) and of
//! debug/gosym/pclntab.go.

use std::{collections::HashMap, ops::Range, sync::OnceLock};

use crate::{
    Image,
    elf::{ElfInfo, Segment},
};

#[derive(Debug, thiserror::Error)]
pub enum PclntabError {
    #[error("no .gopclntab: no section of that name and no table header in the loaded segments")]
    NotFound,
    #[error("malformed .gopclntab: {0}")]
    Malformed(&'static str),
    #[error(
        "cannot find runtime.text, the base of .gopclntab's function offsets: no moduledata, \
         no symbol, no textStart in the header"
    )]
    NoTextBase,
}

/// The table's layout generation, named after the first Go release that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    Go12,
    Go116,
    Go118,
    Go120,
}

impl Format {
    fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            0xffff_fffb => Some(Self::Go12),
            0xffff_fffa => Some(Self::Go116),
            0xffff_fff0 => Some(Self::Go118),
            0xffff_fff1 => Some(Self::Go120),
            _ => None,
        }
    }

    /// Size of a functab field and of `_func`'s first field: an address until 1.18, since then
    /// a 32-bit offset from the text base.
    fn entry_size(self) -> usize {
        if self >= Self::Go118 { 4 } else { 8 }
    }

    /// Size of `_func`'s fixed part, which ends with `nfuncdata` (a byte) and is followed by the
    /// pcdata offsets and the funcdata slots. For the 1.2 format, that of Go 1.12-1.15; Go
    /// 1.8-1.11 wrote as many bytes but `nfuncdata` as an int32, whose last byte (read here as
    /// the count) is 0, so their functions show no inline trees.
    fn func_size(self) -> usize {
        match self {
            Self::Go12 | Self::Go118 => 40,
            Self::Go116 | Self::Go120 => 44,
        }
    }

    /// Where the releases writing this format put the inline tree among pcdata and funcdata,
    /// newest first: one magic covers releases that moved it.
    fn inline_tree_indexes(self) -> &'static [InlineTreeIndexes] {
        match self {
            Self::Go12 => &[GO113_INLINE_TREE, GO112_INLINE_TREE],
            Self::Go116 | Self::Go118 | Self::Go120 => &[GO116_INLINE_TREE],
        }
    }

    /// How `_func`'s funcdata slots point at their data; `None` when that is at an address yet
    /// to be found (1.18+, see [`Self::gofunc_words`]).
    fn funcdata_slots(self) -> Option<FuncdataSlots> {
        match self {
            Self::Go12 | Self::Go116 => Some(FuncdataSlots::Addresses),
            Self::Go118 | Self::Go120 => None,
        }
    }

    /// `inlinedCall`: its size and where its fields are.
    fn inlined_call(self) -> InlinedCallLayout {
        match self {
            // parent i16, funcID u8, _ u8, file i32, line i32, func_ i32, parentPc i32. The
            // call site's file and line are unused: parentPc leads to an instruction at it,
            // whose position the pc tables give (as the runtime does since 1.12).
            Self::Go12 | Self::Go116 | Self::Go118 => InlinedCallLayout {
                size: 20,
                parent: Some(0),
                name: 12,
                parent_pc: 16,
                start_line: None,
            },
            // funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32
            Self::Go120 => InlinedCallLayout {
                size: 16,
                parent: None,
                name: 4,
                parent_pc: 8,
                start_line: Some(12),
            },
        }
    }

    /// Word indexes of `moduledata.gofunc` in the releases writing this format: 38 for
    /// 1.18-1.19; 40 once 1.20 added `covctrs`; 43 once 1.27 added `typedesclen`, `itaboffset`
    /// and `itabsize`. The word before it is always `rodata`.
    fn gofunc_words(self) -> &'static [usize] {
        match self {
            Self::Go12 | Self::Go116 => &[],
            Self::Go118 => &[38],
            Self::Go120 => &[40, 43],
        }
    }
}

struct InlinedCallLayout {
    size: u64,
    /// The index of the call's parent in the tree (i16, -1 for a call from the function
    /// itself), until 1.20.
    parent: Option<u64>,
    name: u64,
    parent_pc: u64,
    start_line: Option<u64>,
}

/// Which of a `_func`'s pcdata tables and funcdata slots hold its inline tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InlineTreeIndexes {
    /// `_PCDATA_InlTreeIndex`: the pc table of the innermost call's index in the tree.
    pcdata: usize,
    /// `_FUNCDATA_InlTree`: the tree.
    funcdata: usize,
}

/// Go 1.12 appended register maps (pcdata 2, funcdata 3) and stack objects (funcdata 4).
const GO112_INLINE_TREE: InlineTreeIndexes = InlineTreeIndexes {
    pcdata: 1,
    funcdata: 2,
};
/// Go 1.13-1.15 moved register maps first (pcdata 0, funcdata 2), then stack objects.
const GO113_INLINE_TREE: InlineTreeIndexes = InlineTreeIndexes {
    pcdata: 2,
    funcdata: 4,
};
/// Go 1.16 dropped register maps (pcdata 0 became unsafe points).
const GO116_INLINE_TREE: InlineTreeIndexes = InlineTreeIndexes {
    pcdata: 2,
    funcdata: 3,
};
/// `moduledata.text`, the same word in every format since 1.16.
const MODULEDATA_TEXT_WORD: usize = 22;
/// An inline tree deeper than this is corrupt (the compiler's budget keeps real ones shallow).
const MAX_INLINE_DEPTH: usize = 64;
/// How many functions' trees must decode before a way of reading them is trusted.
const INLINE_TREES_CHECKED: usize = 8;

/// How a `_func`'s funcdata slots point at the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FuncdataSlots {
    /// Until 1.17: link addresses, aligned in memory to 8 bytes (0 for none).
    Addresses,
    /// 1.18+: offsets from `go:func.*` (`moduledata.gofunc`), at this address (`!0` for none).
    GoFuncOffsets(u64),
}

/// Where functions' inline trees are: which pcdata and funcdata, and how funcdata points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InlineTrees {
    indexes: InlineTreeIndexes,
    slots: FuncdataSlots,
}

/// A Go function as the table records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function<'a> {
    pub name: &'a str,
    /// Link address of the first instruction.
    pub entry: u64,
    /// Link address just past the function (the next function's entry).
    pub end: u64,
}

/// One source frame at a pc: a function, or a call inlined into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceFrame<'a> {
    pub function: &'a str,
    pub file: &'a str,
    pub line: u32,
    /// Line of the `func` keyword (Go 1.20+), 0 when unknown.
    pub start_line: u32,
}

/// A `_func` record.
#[derive(Clone, Copy, Debug)]
struct Func {
    entry: u64,
    /// File offset of the record.
    at: usize,
}

/// File offsets of the table's parts.
#[derive(Clone, Copy, Debug)]
struct Parts {
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    /// What functab's `_func` offsets count from.
    funcdata: usize,
}

/// A parsed `.gopclntab` over the binary's bytes.
pub struct Pclntab {
    image: Image,
    format: Format,
    /// Link address of the header.
    address: u64,
    /// The file bytes the table may occupy: its section, or the rest of its segment.
    table: Range<usize>,
    quantum: u64,
    nfunc: usize,
    /// `runtime.text`, which entries count from since 1.18; 0 before.
    text_start: u64,
    parts: Parts,
    /// `None` when inlined calls cannot be expanded (see [`Self::find_inline_trees`]).
    inline_trees: Option<InlineTrees>,
    segments: Vec<Segment>,
    /// Function indexes by name; several for ABI wrapper pairs.
    by_name: OnceLock<HashMap<Box<str>, Vec<usize>>>,
}

impl std::fmt::Debug for Pclntab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pclntab")
            .field("format", &self.format)
            .field("address", &format_args!("{:#x}", self.address))
            .field("functions", &self.nfunc)
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .field("inline_trees", &self.inline_trees)
            .finish()
    }
}

impl Pclntab {
    /// Finds and parses the table of an ELF image: by section name (`.gopclntab`, or
    /// `.data.rel.ro.gopclntab` in PIE builds of Go 1.19-1.25), else by its header in the loaded
    /// segments (section headers stripped, or an external linker merged the section away).
    pub fn find(image: Image, elf: &ElfInfo) -> Result<Self, PclntabError> {
        let segments = elf.segments.clone();
        // With external linking `.text` starts with the C runtime: only this symbol is right.
        let text_symbol = elf.symbols.get("runtime.text").map(|s| s.address);
        if let Some(section) = elf.pclntab_section {
            let table = to_usize(section.offset)?..to_usize(section.offset + section.size)?;
            return Self::parse(image, table, section.address, segments, text_symbol);
        }
        for segment in segments.iter().filter(|s| s.filesz > 0) {
            let start = to_usize(segment.offset)?;
            let end = to_usize(segment.offset + segment.filesz)?.min(image.len());
            // The header is pointer-aligned, and segments keep file offsets congruent to
            // addresses, so only 8-aligned file offsets can hold it.
            for at in (start.next_multiple_of(8)..end.saturating_sub(8)).step_by(8) {
                if Format::from_magic(read_u32(&image, at).unwrap_or(0)).is_none()
                    || image[at + 4..at + 8] != [0, 0, 1, 8]
                {
                    continue;
                }
                let address = segment.vaddr + (at - start) as u64;
                if let Ok(table) = Self::parse(
                    image.clone(),
                    at..end,
                    address,
                    segments.clone(),
                    text_symbol,
                ) {
                    return Ok(table);
                }
            }
        }
        Err(PclntabError::NotFound)
    }

    /// Parses the table whose header is at `table.start` (file offset) and `address`.
    fn parse(
        image: Image,
        table: Range<usize>,
        address: u64,
        segments: Vec<Segment>,
        text_symbol: Option<u64>,
    ) -> Result<Self, PclntabError> {
        let table = table.start..table.end.min(image.len());
        let header = image
            .get(table.start..table.start + 8)
            .ok_or(PclntabError::Malformed("truncated header"))?;
        let format = Format::from_magic(u32::from_le_bytes(header[..4].try_into().unwrap()))
            .ok_or(PclntabError::Malformed("unknown magic"))?;
        if header[4..6] != [0, 0] || !matches!(header[6], 1 | 2 | 4) {
            return Err(PclntabError::Malformed("bad header padding or pc quantum"));
        }
        if header[7] != 8 {
            return Err(PclntabError::Malformed("not a 64-bit table"));
        }
        let table_len = (table.end - table.start) as u64;
        let header_word = |index: usize| {
            read_u64(&image, table.start + 8 + 8 * index)
                .ok_or(PclntabError::Malformed("truncated header"))
        };
        let offset = |index: usize| {
            Some(header_word(index)?)
                .filter(|&offset| offset < table_len)
                .map(|offset| table.start + offset as usize)
                .ok_or(PclntabError::Malformed("header offset out of range"))
        };
        let nfunc = usize::try_from(header_word(0)?)
            .ok()
            .filter(|&n| (n as u64) < table_len)
            .ok_or(PclntabError::Malformed("function count out of range"))?;
        let parts = match format {
            Format::Go12 => {
                // The functab follows nfunc and the file table's offset follows the functab;
                // names, pc tables and `_func`s count from the header.
                let functab = table.start + 16;
                let filetab = read_u32(&image, functab + (2 * nfunc + 1) * 8)
                    .filter(|&offset| u64::from(offset) < table_len)
                    .ok_or(PclntabError::Malformed("file table out of range"))?;
                Parts {
                    funcnametab: table.start,
                    cutab: table.start,
                    filetab: table.start + filetab as usize,
                    pctab: table.start,
                    functab,
                    funcdata: table.start,
                }
            }
            // nfunc and nfiles, then the offsets; 1.18 put textStart (unused since 1.26)
            // between them.
            Format::Go116 | Format::Go118 | Format::Go120 => {
                let first = if format == Format::Go116 { 2 } else { 3 };
                Parts {
                    funcnametab: offset(first)?,
                    cutab: offset(first + 1)?,
                    filetab: offset(first + 2)?,
                    pctab: offset(first + 3)?,
                    functab: offset(first + 4)?,
                    funcdata: offset(first + 4)?,
                }
            }
        };
        let mut pclntab = Self {
            format,
            address,
            quantum: u64::from(header[6]),
            nfunc,
            text_start: 0,
            parts,
            inline_trees: None,
            by_name: OnceLock::new(),
            image,
            table,
            segments,
        };
        pclntab.check_functab()?;
        let mut moduledata = None;
        if format >= Format::Go118 {
            moduledata = pclntab.moduledata();
            let header_text_start = read_u64(&pclntab.image, pclntab.table.start + 24);
            pclntab.text_start = moduledata
                .and_then(|m| pclntab.word_at(m, MODULEDATA_TEXT_WORD))
                .or(text_symbol)
                .or(header_text_start.filter(|&t| t != 0))
                .ok_or(PclntabError::NoTextBase)?;
        }
        pclntab.inline_trees = pclntab.find_inline_trees(moduledata);
        Ok(pclntab)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// `runtime.text`: what 1.18+ entries are offsets from (0 for older formats).
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Whether [`Self::frames`] expands inlined calls.
    pub fn has_inline_trees(&self) -> bool {
        self.inline_trees.is_some()
    }

    pub fn function_count(&self) -> usize {
        self.nfunc
    }

    /// Every function, in address order.
    pub fn functions(&self) -> impl Iterator<Item = Function<'_>> {
        (0..self.nfunc).filter_map(|index| self.function_at_index(index))
    }

    /// A function by name, as `.symtab` names it: the runtime's name (or with `.` for `·`), and
    /// for the two halves of an ABI wrapper pair (which the table names alike) `.abi0` on the
    /// one taking its arguments on the stack.
    pub fn function(&self, name: &str) -> Option<Function<'_>> {
        let by_name = self.by_name.get_or_init(|| {
            let mut by_name: HashMap<Box<str>, Vec<usize>> = HashMap::with_capacity(self.nfunc);
            for index in 0..self.nfunc {
                if let Some(function) = self.function_at_index(index) {
                    by_name.entry(function.name.into()).or_default().push(index);
                    // `.symtab` spells the middle dot of generated names (`dialResult·1`) `.`.
                    if function.name.contains('·') {
                        let dotted = function.name.replace('·', ".");
                        by_name.entry(dotted.into()).or_default().push(index);
                    }
                }
            }
            by_name
        });
        let (stem, abi0) = match name.strip_suffix(".abi0") {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        let index = match by_name.get(stem)?.as_slice() {
            [index] => *index,
            candidates => {
                // The compiler-generated wrapper converts between the register ABI and ABI0.
                let (wrappers, bodies): (Vec<usize>, Vec<usize>) = candidates
                    .iter()
                    .partition(|&&index| self.entry_file(index) == Some("<autogenerated>"));
                let (&wrapper, &body) = (wrappers.first()?, bodies.first()?);
                // An assembly body is the ABI0 half, a Go body the register-ABI half.
                let body_is_abi0 = self.entry_file(body).is_some_and(|f| f.ends_with(".s"));
                if abi0 == body_is_abi0 { body } else { wrapper }
            }
        };
        self.function_at_index(index)
    }

    /// The source file of a function's first instruction.
    fn entry_file(&self, index: usize) -> Option<&str> {
        let func = self.func(index)?;
        Some(self.file_line(func, func.entry).0).filter(|f| !f.is_empty())
    }

    /// The function containing a link address.
    pub fn function_containing(&self, pc: u64) -> Option<Function<'_>> {
        self.function_at_index(self.index_containing(pc)?)
    }

    /// The `funcID` of the function containing a link address (the byte four before the end
    /// of its `_func` record in every format): nonzero for the runtime's special functions and
    /// compiler wrappers, whose values each release numbers anew.
    pub fn func_id(&self, pc: u64) -> Option<u8> {
        let func = self.func(self.index_containing(pc)?)?;
        self.image
            .get(func.at + self.format.func_size() - 4)
            .copied()
    }

    /// How far the stack pointer is below the function's entry SP at a link address (the
    /// `pcsp` table; 0 before the frame is set up, as at the entry or in the prologue's
    /// stack check); `None` outside the table's functions.
    pub fn sp_delta(&self, pc: u64) -> Option<i32> {
        let func = self.func(self.index_containing(pc)?)?;
        self.pc_value(self.field(func, 4)?, func.entry, pc)
    }

    /// Source frames at a link address, innermost inlined call first, the function itself last;
    /// empty outside the table's functions.
    pub fn frames(&self, pc: u64) -> Vec<SourceFrame<'_>> {
        let Some((func, function)) = self
            .index_containing(pc)
            .and_then(|index| Some((self.func(index)?, self.function_at_index(index)?)))
        else {
            return Vec::new();
        };
        let inline_tree = self
            .inline_trees
            .and_then(|trees| self.inline_tree(func, trees));
        let mut frames = Vec::new();
        let mut pc = pc;
        while frames.len() < MAX_INLINE_DEPTH {
            let (file, line) = self.file_line(func, pc);
            let call = inline_tree.and_then(|(index_table, tree)| {
                let call = self.pc_value(index_table, func.entry, pc)?;
                self.inlined_call(tree, u64::try_from(call).ok()?)
            });
            match call {
                Some(call) => {
                    frames.push(SourceFrame {
                        function: call.name,
                        file,
                        line,
                        start_line: call.start_line,
                    });
                    // The caller's position is that of an instruction of the call site.
                    pc = func.entry + call.parent_pc;
                }
                None => {
                    frames.push(SourceFrame {
                        function: function.name,
                        file,
                        line,
                        start_line: self.start_line(func),
                    });
                    break;
                }
            }
        }
        frames
    }

    // --- functab ---

    fn functab_entry_size(&self) -> usize {
        self.format.entry_size()
    }

    /// Where the functab ends: `nfunc` (entry, offset) pairs and the end address.
    fn functab_end(&self) -> usize {
        self.parts.functab + (2 * self.nfunc + 1) * self.functab_entry_size()
    }

    fn functab_field(&self, at: usize) -> Option<u64> {
        if self.functab_entry_size() == 4 {
            read_u32(&self.image, at).map(u64::from)
        } else {
            read_u64(&self.image, at)
        }
    }

    /// Entry address of function `index`; `index == nfunc` gives the end of the last one.
    fn entry(&self, index: usize) -> Option<u64> {
        let raw = self.functab_field(self.parts.functab + 2 * index * self.functab_entry_size())?;
        Some(raw + self.text_start)
    }

    fn func(&self, index: usize) -> Option<Func> {
        let offset =
            self.functab_field(self.parts.functab + (2 * index + 1) * self.functab_entry_size())?;
        let at = self.parts.funcdata + usize::try_from(offset).ok()?;
        (at < self.table.end).then_some(Func {
            entry: self.entry(index)?,
            at,
        })
    }

    fn function_at_index(&self, index: usize) -> Option<Function<'_>> {
        let func = self.func(index)?;
        let name_offset = self.field(func, 1)?;
        Some(Function {
            name: self.name(name_offset)?,
            entry: func.entry,
            end: self.entry(index + 1)?,
        })
    }

    fn index_containing(&self, pc: u64) -> Option<usize> {
        if pc < self.entry(0)? || pc >= self.entry(self.nfunc)? {
            return None;
        }
        // The last function whose entry is <= pc.
        let (mut low, mut high) = (0, self.nfunc);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.entry(middle)? <= pc {
                low = middle;
            } else {
                high = middle;
            }
        }
        Some(low)
    }

    /// The checks that tell a real table from bytes that happen to look like a header.
    fn check_functab(&self) -> Result<(), PclntabError> {
        if self.nfunc == 0 || self.functab_end() > self.table.end {
            return Err(PclntabError::Malformed("functab out of range"));
        }
        let raw_entry = |index| {
            self.functab_field(self.parts.functab + 2 * index * self.functab_entry_size())
                .ok_or(PclntabError::Malformed("truncated functab"))
        };
        let mut previous = raw_entry(0)?;
        for index in 1..=self.nfunc {
            let entry = raw_entry(index)?;
            if entry < previous {
                return Err(PclntabError::Malformed("functab not sorted"));
            }
            previous = entry;
        }
        // The first `_func` starts with the same entry as its functab slot.
        let offset = self
            .functab_field(self.parts.functab + self.functab_entry_size())
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(PclntabError::Malformed("truncated functab"))?;
        let first = self.parts.funcdata + offset;
        let recorded = if self.functab_entry_size() == 4 {
            read_u32(&self.image, first).map(u64::from)
        } else {
            read_u64(&self.image, first)
        };
        if first >= self.table.end || recorded != Some(raw_entry(0)?) {
            return Err(PclntabError::Malformed("functab and _func disagree"));
        }
        Ok(())
    }

    // --- _func ---

    /// `_func` field `n` (1 = nameOff, 4 = pcsp, 5 = pcfile, 6 = pcln, 7 = npcdata, 8 = cuOffset,
    /// 9 = startLine): 32-bit fields after the entry.
    fn field(&self, func: Func, n: usize) -> Option<u32> {
        read_u32(
            &self.image,
            func.at + self.functab_entry_size() + (n - 1) * 4,
        )
    }

    fn start_line(&self, func: Func) -> u32 {
        if self.format >= Format::Go120 {
            self.field(func, 9).unwrap_or(0)
        } else {
            0
        }
    }

    fn name(&self, offset: u32) -> Option<&str> {
        let at = self.parts.funcnametab + offset as usize;
        // Since 1.16 names have a table of their own, which the CU table follows.
        if self.format >= Format::Go116 && at >= self.parts.cutab {
            return None;
        }
        self.string(at)
    }

    fn string(&self, at: usize) -> Option<&str> {
        let bytes = self.image.get(at..self.table.end)?;
        let len = memchr::memchr(0, bytes)?;
        std::str::from_utf8(&bytes[..len]).ok()
    }

    fn file_line(&self, func: Func, pc: u64) -> (&str, u32) {
        let file = self
            .field(func, 5)
            .and_then(|table| self.pc_value(table, func.entry, pc))
            .and_then(|index| self.file_name(func, index))
            .unwrap_or_default();
        let line = self
            .field(func, 6)
            .and_then(|table| self.pc_value(table, func.entry, pc))
            .and_then(|line| u32::try_from(line).ok())
            .unwrap_or(0);
        (file, line)
    }

    fn file_name(&self, func: Func, index: i32) -> Option<&str> {
        let index = usize::try_from(index).ok()?;
        if self.format == Format::Go12 {
            // A table of 32-bit offsets from the table start; entry 0 is the count.
            if index == 0 {
                return None;
            }
            let offset = read_u32(&self.image, self.parts.filetab + 4 * index)?;
            return self.string(self.table.start + offset as usize);
        }
        // Per compilation unit: cutab[cuOffset + index] is an offset into filetab.
        let cu = self.field(func, 8)? as usize;
        let offset = read_u32(&self.image, self.parts.cutab + 4 * (cu + index))?;
        if offset == u32::MAX {
            return None;
        }
        self.string(self.parts.filetab + offset as usize)
    }

    /// The value a pc-value table gives at `pc` (see runtime.pcvalue): a varint stream of
    /// zig-zag value deltas and pc deltas (in units of the pc quantum), starting at value -1.
    fn pc_value(&self, table: u32, entry: u64, pc: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let data = &self.image[..self.table.end];
        let mut at = self.parts.pctab + table as usize;
        let mut value: i32 = -1;
        let mut current = entry;
        let mut first = true;
        loop {
            let value_delta = read_varint(data, &mut at)?;
            if value_delta == 0 && !first {
                return None;
            }
            first = false;
            let value_delta = if value_delta & 1 != 0 {
                !(value_delta >> 1) as i32
            } else {
                (value_delta >> 1) as i32
            };
            let pc_delta = read_varint(data, &mut at)?;
            current = current.checked_add(u64::from(pc_delta) * self.quantum)?;
            value = value.wrapping_add(value_delta);
            if pc < current {
                return Some(value);
            }
        }
    }

    // --- inlining ---

    /// The function's inline tree, found as `trees` says: its `PCDATA_InlTreeIndex` table and
    /// the tree's address.
    fn inline_tree(&self, func: Func, trees: InlineTrees) -> Option<(u32, u64)> {
        let func_size = self.format.func_size();
        let npcdata = self.field(func, 7)? as usize;
        let nfuncdata = usize::from(*self.image.get(func.at + func_size - 1)?);
        let InlineTreeIndexes {
            pcdata: index_table,
            funcdata: tree,
        } = trees.indexes;
        if npcdata <= index_table || nfuncdata <= tree {
            return None;
        }
        let pcdata = func.at + func_size;
        let index_table = read_u32(&self.image, pcdata + 4 * index_table)?;
        let slots = pcdata + 4 * npcdata;
        let tree = match trees.slots {
            FuncdataSlots::GoFuncOffsets(gofunc) => {
                let offset = read_u32(&self.image, slots + 4 * tree)?;
                (offset != u32::MAX).then(|| gofunc + u64::from(offset))?
            }
            FuncdataSlots::Addresses => {
                // Aligned in memory, which the file offset does not tell: go by the address.
                let address = self.address + (slots - self.table.start) as u64;
                let slots = slots + (address % 8) as usize;
                read_u64(&self.image, slots + 8 * tree).filter(|&a| a != 0)?
            }
        };
        Some((index_table, tree))
    }

    fn inlined_call(&self, tree: u64, index: u64) -> Option<InlinedCall<'_>> {
        let layout = self.format.inlined_call();
        let at = self.file_offset(tree + index * layout.size)?;
        let name_offset = read_u32(&self.image, at + layout.name as usize)?;
        let parent_pc = read_u32(&self.image, at + layout.parent_pc as usize)?;
        Some(InlinedCall {
            parent: match layout.parent {
                Some(offset) => Some(read_u16(&self.image, at + offset as usize)? as i16),
                None => None,
            },
            name: self.name(name_offset)?,
            parent_pc: u64::from(parent_pc),
            start_line: layout
                .start_line
                .and_then(|offset| read_u32(&self.image, at + offset as usize))
                .unwrap_or(0),
        })
    }

    // --- moduledata ---

    /// File offset of `runtime.firstmoduledata`: the writable word pointing at this header
    /// followed by the `funcnametab` slice's pointer (1.16+ layout).
    fn moduledata(&self) -> Option<usize> {
        let header = self.address.to_le_bytes();
        let funcnametab =
            (self.address + (self.parts.funcnametab - self.table.start) as u64).to_le_bytes();
        self.segments
            .iter()
            .filter(|s| s.writable && s.filesz > 0)
            .find_map(|segment| {
                let start = usize::try_from(segment.offset).ok()?;
                let end = (start + usize::try_from(segment.filesz).ok()?).min(self.image.len());
                let bytes = self.image.get(start.next_multiple_of(8)..end)?;
                let position = bytes
                    .chunks_exact(8)
                    .zip(bytes.chunks_exact(8).skip(1))
                    .position(|(word, next)| word == header && next == funcnametab)?;
                Some(start.next_multiple_of(8) + 8 * position)
            })
    }

    fn word_at(&self, moduledata: usize, index: usize) -> Option<u64> {
        read_u64(&self.image, moduledata + 8 * index)
    }

    /// How to read inline trees: the first of the ways this format's releases wrote them under
    /// which they decode (see [`Self::inline_trees_decode_with`]). `None` when none does: a
    /// 1.2-format table from before Go 1.12 (other `_func` and `inlinedCall` shapes), a 1.18+
    /// table whose `go:func.*` was not found, or a program built without inlining.
    fn find_inline_trees(&self, moduledata: Option<usize>) -> Option<InlineTrees> {
        let funcdata = match self.format.funcdata_slots() {
            Some(slots) => vec![slots],
            None => moduledata.map_or_else(Vec::new, |m| self.gofunc_candidates(m)),
        };
        funcdata
            .into_iter()
            .flat_map(|slots| {
                (self.format.inline_tree_indexes().iter())
                    .map(move |&indexes| InlineTrees { indexes, slots })
            })
            .find(|&trees| self.inline_trees_decode_with(trees))
    }

    /// The candidates for `moduledata.gofunc`, the base of 1.18+ funcdata offsets: the words
    /// at its possible indexes that follow `rodata` and lie in the file.
    fn gofunc_candidates(&self, moduledata: usize) -> Vec<FuncdataSlots> {
        (self.format.gofunc_words().iter())
            .filter_map(|&word| {
                let gofunc = self.word_at(moduledata, word)?;
                let rodata = self.word_at(moduledata, word - 1)?;
                (rodata <= gofunc && self.file_offset(gofunc).is_some())
                    .then_some(FuncdataSlots::GoFuncOffsets(gofunc))
            })
            .collect()
    }

    /// Whether the first functions with inline trees, read as `trees` says, have a real call
    /// first: one the function makes itself (parent -1, where the layout has parents: the
    /// compiler adds a call's parent to the tree before it), named, at a pc inside the function.
    /// Other funcdata (stack maps and objects start with a positive count) fail this.
    fn inline_trees_decode_with(&self, trees: InlineTrees) -> bool {
        let mut checked = 0;
        for index in 0..self.nfunc {
            let (Some(func), Some(end)) = (self.func(index), self.entry(index + 1)) else {
                return false;
            };
            let Some((_, tree)) = self.inline_tree(func, trees) else {
                continue;
            };
            match self.inlined_call(tree, 0) {
                Some(call)
                    if call.parent.is_none_or(|parent| parent == -1)
                        && !call.name.is_empty()
                        && func.entry + call.parent_pc < end => {}
                _ => return false,
            }
            checked += 1;
            if checked == INLINE_TREES_CHECKED {
                break;
            }
        }
        checked > 0
    }

    fn file_offset(&self, address: u64) -> Option<usize> {
        let segment = self
            .segments
            .iter()
            .find(|s| address >= s.vaddr && address < s.vaddr + s.filesz)?;
        usize::try_from(address - segment.vaddr + segment.offset).ok()
    }
}

struct InlinedCall<'a> {
    /// Index of the call this one was inlined into, -1 for the function itself; `None` when the
    /// layout does not record it (1.20+).
    parent: Option<i16>,
    name: &'a str,
    /// Offset from the function entry of an instruction at the call site.
    parent_pc: u64,
    start_line: u32,
}

fn to_usize(value: u64) -> Result<usize, PclntabError> {
    usize::try_from(value).map_err(|_| PclntabError::Malformed("offset beyond the address space"))
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn read_varint(data: &[u8], at: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! Hand-built tables in every format: two functions, `main.outer` (lines 10-12 of a.go,
    //! with `main.inlined` inlined at line 11) and `main.leaf` (b.go:20). The Go 1.19-1.27
    //! formats are also checked against real binaries in tests/tests/target.rs.

    use super::*;

    const TEXT: u64 = 0x40_1000;
    /// Where the table, `go:func.*` and moduledata sit in the image (file offset = address -
    /// BASE).
    const BASE: u64 = 0x40_0000;
    const TABLE: usize = 0x2000;
    const GOFUNC: usize = 0x3000;
    const MODULEDATA: usize = 0x3800;

    fn varint(out: &mut Vec<u8>, mut value: u32) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A pc-value table: (value, bytes of code) runs, starting from value -1.
    fn pc_table(runs: &[(i32, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut previous = -1;
        for &(value, len) in runs {
            let delta = value - previous;
            varint(
                &mut out,
                if delta < 0 {
                    ((-delta - 1) << 1 | 1) as u32
                } else {
                    (delta << 1) as u32
                },
            );
            varint(&mut out, len);
            previous = value;
        }
        out.push(0);
        out
    }

    fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// The image and the table's file range in `format`, with the inline tree where the
    /// format's newest release puts it; `with_moduledata` false leaves the text base and
    /// `go:func.*` to be found some other way.
    fn build(format: Format, with_moduledata: bool) -> (Image, Range<usize>, Vec<Segment>) {
        build_with_tree_in(format, with_moduledata, format.inline_tree_indexes()[0])
    }

    /// Like [`build`], with `main.outer`'s inline tree at `indexes`, among 3 pcdata tables and
    /// 5 funcdata as in Go 1.12-1.15.
    fn build_with_tree_in(
        format: Format,
        with_moduledata: bool,
        indexes: InlineTreeIndexes,
    ) -> (Image, Range<usize>, Vec<Segment>) {
        let magic: u32 = match format {
            Format::Go12 => 0xffff_fffb,
            Format::Go116 => 0xffff_fffa,
            Format::Go118 => 0xffff_fff0,
            Format::Go120 => 0xffff_fff1,
        };
        let go12 = format == Format::Go12;
        // Go 1.2 counts file numbers from 1 (0 holds the table's length).
        let file_base = if go12 { 1 } else { 0 };
        let names = b"main.outer\0main.leaf\0main.inlined\0";
        let (outer_name, leaf_name, inlined_name) = (0u32, 11u32, 21u32);
        let files = b"/src/a.go\0/src/b.go\0";
        let mut pctab = vec![0u8]; // offset 0 means "no table"
        let mut add = |table: Vec<u8>| {
            let at = pctab.len() as u32;
            pctab.extend(table);
            at
        };
        let outer_file = add(pc_table(&[(file_base, 0x40)]));
        let leaf_file = add(pc_table(&[(file_base + 1, 0x20)]));
        let outer_lines = add(pc_table(&[(10, 0x10), (11, 0x10), (30, 0x10), (12, 0x10)]));
        let leaf_lines = add(pc_table(&[(20, 0x20)]));
        let outer_inline = add(pc_table(&[(-1, 0x20), (0, 0x10), (-1, 0x10)]));

        let mut image = vec![0u8; 0x4000];
        let address = |file_offset: usize| BASE + file_offset as u64;
        // Sub-tables after the header; 1.2 puts the functab right after nfunc instead.
        let header_len = if go12 { 16 } else { 72 };
        let funcnametab = header_len + 0x100;
        let cutab = funcnametab + names.len().next_multiple_of(4);
        let filetab = cutab + 0x10;
        let pctab_at = filetab + 0x40;
        let functab = (pctab_at + pctab.len()).next_multiple_of(8);
        put(&mut image, TABLE, &magic.to_le_bytes());
        put(&mut image, TABLE + 4, &[0, 0, 1, 8]);
        put(&mut image, TABLE + 8, &2u64.to_le_bytes());
        put(&mut image, TABLE + funcnametab, names);
        put(&mut image, TABLE + pctab_at, &pctab);
        if go12 {
            // count, then offsets of the names from the table start.
            for (i, offset) in [3, filetab + 16, filetab + 26].into_iter().enumerate() {
                put(
                    &mut image,
                    TABLE + filetab + 4 * i,
                    &(offset as u32).to_le_bytes(),
                );
            }
            put(&mut image, TABLE + filetab + 16, files);
        } else {
            put(&mut image, TABLE + cutab, &0u32.to_le_bytes());
            put(&mut image, TABLE + cutab + 4, &10u32.to_le_bytes());
            put(&mut image, TABLE + filetab, files);
            let text_start = if format >= Format::Go118 { TEXT } else { 0 };
            let offsets = [funcnametab, cutab, filetab, pctab_at, functab];
            let words: Vec<u64> = match format {
                Format::Go116 => [2, 2]
                    .into_iter()
                    .chain(offsets.map(|o| o as u64))
                    .collect(),
                _ => [2, 2, text_start]
                    .into_iter()
                    .chain(offsets.map(|o| o as u64))
                    .collect(),
            };
            for (i, word) in words.iter().enumerate() {
                put(&mut image, TABLE + 8 + 8 * i, &word.to_le_bytes());
            }
        }
        let functab = if go12 { 16 } else { functab };
        let funcdata_base = if go12 { 0 } else { functab };
        let name_base = if go12 { funcnametab as u32 } else { 0 };
        // functab: (entry, _func offset) twice, then the end.
        let entry_size = format.entry_size();
        let funcs_at = functab + 5 * entry_size + 8;
        let func_len = 0x80;
        let entries = [
            (
                0u64,
                outer_name,
                outer_file,
                outer_lines,
                Some(outer_inline),
            ),
            (0x40, leaf_name, leaf_file, leaf_lines, None),
        ];
        for (i, (offset, name, file, lines, inline)) in entries.into_iter().enumerate() {
            let at = funcs_at + i * func_len;
            let entry = if entry_size == 4 {
                offset
            } else {
                TEXT + offset
            };
            let slot = functab + 2 * i * entry_size;
            let func_offset = (at - funcdata_base) as u64;
            if entry_size == 4 {
                put(&mut image, TABLE + slot, &(entry as u32).to_le_bytes());
                put(
                    &mut image,
                    TABLE + slot + 4,
                    &(func_offset as u32).to_le_bytes(),
                );
                put(&mut image, TABLE + at, &(entry as u32).to_le_bytes());
            } else {
                put(&mut image, TABLE + slot, &entry.to_le_bytes());
                put(&mut image, TABLE + slot + 8, &func_offset.to_le_bytes());
                put(&mut image, TABLE + at, &entry.to_le_bytes());
            }
            let fields = TABLE + at + entry_size;
            let pc = |table: u32| if go12 { table + pctab_at as u32 } else { table };
            put(&mut image, fields, &(name + name_base).to_le_bytes());
            put(&mut image, fields + 16, &pc(file).to_le_bytes());
            put(&mut image, fields + 20, &pc(lines).to_le_bytes());
            if format >= Format::Go120 {
                put(&mut image, fields + 32, &(5 + 10 * i as u32).to_le_bytes());
            }
            let Some(inline) = inline else {
                continue;
            };
            // The other pcdata tables and funcdata stay empty.
            let size = format.func_size();
            let (npcdata, nfuncdata) = (3, 5);
            put(&mut image, fields + 24, &(npcdata as u32).to_le_bytes());
            image[TABLE + at + size - 1] = nfuncdata;
            let pcdata = TABLE + at + size;
            put(
                &mut image,
                pcdata + 4 * indexes.pcdata,
                &pc(inline).to_le_bytes(),
            );
            let slots = pcdata + 4 * npcdata;
            if format.funcdata_slots() == Some(FuncdataSlots::Addresses) {
                let slots = slots.next_multiple_of(8);
                put(
                    &mut image,
                    slots + 8 * indexes.funcdata,
                    &address(GOFUNC).to_le_bytes(),
                );
            } else {
                for slot in 0..usize::from(nfuncdata) {
                    put(&mut image, slots + 4 * slot, &u32::MAX.to_le_bytes());
                }
                put(
                    &mut image,
                    slots + 4 * indexes.funcdata,
                    &0u32.to_le_bytes(),
                );
            }
            // The inlined call, made by main.outer itself: main.inlined, called at entry+0x18
            // (line 11).
            let layout = format.inlined_call();
            if let Some(parent) = layout.parent {
                put(&mut image, GOFUNC + parent as usize, &(-1i16).to_le_bytes());
            }
            put(
                &mut image,
                GOFUNC + layout.name as usize,
                &(inlined_name + name_base).to_le_bytes(),
            );
            put(
                &mut image,
                GOFUNC + layout.parent_pc as usize,
                &0x18u32.to_le_bytes(),
            );
            if let Some(start_line) = layout.start_line {
                put(
                    &mut image,
                    GOFUNC + start_line as usize,
                    &29u32.to_le_bytes(),
                );
            }
        }
        let end_slot = functab + 4 * entry_size;
        if entry_size == 4 {
            put(&mut image, TABLE + end_slot, &0x60u32.to_le_bytes());
        } else {
            put(&mut image, TABLE + end_slot, &(TEXT + 0x60).to_le_bytes());
        }
        if go12 {
            put(
                &mut image,
                TABLE + end_slot + 8,
                &(filetab as u32).to_le_bytes(),
            );
        }
        if with_moduledata {
            put(&mut image, MODULEDATA, &address(TABLE).to_le_bytes());
            put(
                &mut image,
                MODULEDATA + 8,
                &address(TABLE + funcnametab).to_le_bytes(),
            );
            put(
                &mut image,
                MODULEDATA + 8 * MODULEDATA_TEXT_WORD,
                &TEXT.to_le_bytes(),
            );
            if let Some(&word) = format.gofunc_words().first() {
                put(
                    &mut image,
                    MODULEDATA + 8 * (word - 1),
                    &address(TABLE).to_le_bytes(),
                );
                put(
                    &mut image,
                    MODULEDATA + 8 * word,
                    &address(GOFUNC).to_le_bytes(),
                );
            }
        }
        let segments = vec![Segment {
            vaddr: BASE,
            memsz: image.len() as u64,
            offset: 0,
            filesz: image.len() as u64,
            executable: true,
            writable: true,
        }];
        let len = image.len();
        (Image::from_bytes(image), TABLE..len, segments)
    }

    fn frame<'a>(function: &'a str, file: &'a str, line: u32, start_line: u32) -> SourceFrame<'a> {
        SourceFrame {
            function,
            file,
            line,
            start_line,
        }
    }

    #[test]
    fn reads_every_format() {
        for format in [Format::Go12, Format::Go116, Format::Go118, Format::Go120] {
            let (image, table, segments) = build(format, true);
            let pclntab = Pclntab::parse(image, table, BASE + TABLE as u64, segments, None)
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(pclntab.format(), format);
            let functions: Vec<_> = pclntab.functions().collect();
            assert_eq!(
                functions,
                [
                    Function {
                        name: "main.outer",
                        entry: TEXT,
                        end: TEXT + 0x40
                    },
                    Function {
                        name: "main.leaf",
                        entry: TEXT + 0x40,
                        end: TEXT + 0x60
                    },
                ],
                "{format:?}"
            );
            assert_eq!(pclntab.function("main.leaf"), Some(functions[1]));
            assert_eq!(pclntab.function_containing(TEXT + 0x3f), Some(functions[0]));
            assert_eq!(pclntab.function_containing(TEXT + 0x60), None);
            assert_eq!(pclntab.function_containing(TEXT - 1), None);

            let (outer_start, leaf_start, inlined_start) = match format {
                Format::Go120 => (5, 15, 29),
                _ => (0, 0, 0),
            };
            assert_eq!(
                pclntab.frames(TEXT + 0x5),
                [frame("main.outer", "/src/a.go", 10, outer_start)],
                "{format:?}"
            );
            assert_eq!(
                pclntab.frames(TEXT + 0x45),
                [frame("main.leaf", "/src/b.go", 20, leaf_start)],
                "{format:?}"
            );
            assert!(pclntab.has_inline_trees(), "{format:?}");
            assert_eq!(
                pclntab.frames(TEXT + 0x25),
                [
                    frame("main.inlined", "/src/a.go", 30, inlined_start),
                    frame("main.outer", "/src/a.go", 11, outer_start)
                ],
                "{format:?}"
            );
        }
    }

    /// What a 1.2-format table with its tree at `indexes` has in funcdata 4 (in Go 1.12, stack
    /// objects: a count, then (offset, type) pairs), `funcdata_4` at GOFUNC + 0x100.
    fn go12_table(indexes: InlineTreeIndexes, funcdata_4: &[u8]) -> Pclntab {
        let (image, table, segments) = build_with_tree_in(Format::Go12, true, indexes);
        let address = BASE + TABLE as u64;
        let built = Pclntab::parse(
            image.clone(),
            table.clone(),
            address,
            segments.clone(),
            None,
        )
        .unwrap();
        let outer = built.func(0).unwrap().at;
        let slots = (outer + Format::Go12.func_size() + 4 * 3).next_multiple_of(8);
        let mut bytes = image.to_vec();
        let at = GOFUNC + 0x100;
        put(&mut bytes, at, funcdata_4);
        put(&mut bytes, slots + 8 * 4, &(BASE + at as u64).to_le_bytes());
        Pclntab::parse(Image::from_bytes(bytes), table, address, segments, None).unwrap()
    }

    fn stack_objects() -> Vec<u8> {
        [
            1u64.to_le_bytes(),
            (-8i64).to_le_bytes(),
            BASE.to_le_bytes(),
        ]
        .concat()
    }

    #[test]
    fn the_1_2_format_finds_the_tree_where_go_1_12_put_it() {
        let pclntab = go12_table(GO112_INLINE_TREE, &stack_objects());
        assert_eq!(
            pclntab.inline_trees,
            Some(InlineTrees {
                indexes: GO112_INLINE_TREE,
                slots: FuncdataSlots::Addresses
            })
        );
        assert_eq!(
            pclntab.frames(TEXT + 0x25),
            [
                frame("main.inlined", "/src/a.go", 30, 0),
                frame("main.outer", "/src/a.go", 11, 0)
            ]
        );
    }

    #[test]
    fn the_1_2_format_without_a_decodable_tree_expands_nothing() {
        // Funcdata 4 is no tree, and pcdata 1 and funcdata 2 are empty.
        let pclntab = go12_table(GO113_INLINE_TREE, &stack_objects());
        assert!(!pclntab.has_inline_trees());
        assert_eq!(
            pclntab.frames(TEXT + 0x25),
            [frame("main.outer", "/src/a.go", 30, 0)]
        );
    }

    #[test]
    fn without_moduledata_the_symbol_or_header_gives_the_text_base() {
        for format in [Format::Go118, Format::Go120] {
            let (image, table, segments) = build(format, false);
            let address = BASE + TABLE as u64;
            let from_header = Pclntab::parse(
                image.clone(),
                table.clone(),
                address,
                segments.clone(),
                None,
            )
            .unwrap();
            assert_eq!(from_header.text_start(), TEXT);
            // Without moduledata there is no `go:func.*`: frames stay, inlining goes.
            assert!(!from_header.has_inline_trees());
            assert_eq!(from_header.frames(TEXT + 0x25)[0].function, "main.outer");
            // Go 1.26+ leave textStart zero.
            let mut bytes = image.to_vec();
            put(&mut bytes, TABLE + 24, &0u64.to_le_bytes());
            let image = Image::from_bytes(bytes);
            let from_symbol = Pclntab::parse(
                image.clone(),
                table.clone(),
                address,
                segments.clone(),
                Some(TEXT),
            )
            .unwrap();
            assert_eq!(
                from_symbol.function("main.leaf").unwrap().entry,
                TEXT + 0x40
            );
            assert!(matches!(
                Pclntab::parse(image, table, address, segments, None),
                Err(PclntabError::NoTextBase)
            ));
        }
    }

    #[test]
    fn rejects_what_is_not_a_table() {
        let (image, table, segments) = build(Format::Go120, true);
        let address = BASE + TABLE as u64;
        let mut bytes = image.to_vec();
        put(&mut bytes, TABLE, &0xffff_fff2u32.to_le_bytes());
        let unknown = Pclntab::parse(
            Image::from_bytes(bytes),
            table.clone(),
            address,
            segments.clone(),
            None,
        );
        assert!(matches!(unknown, Err(PclntabError::Malformed(_))));
        // A functab whose first `_func` disagrees with it.
        let mut bytes = image.to_vec();
        let functab =
            u64::from_le_bytes(bytes[TABLE + 64..TABLE + 72].try_into().unwrap()) as usize;
        put(&mut bytes, TABLE + functab, &4u32.to_le_bytes());
        let shifted = Pclntab::parse(Image::from_bytes(bytes), table, address, segments, None);
        assert!(matches!(shifted, Err(PclntabError::Malformed(_))));
    }
}
