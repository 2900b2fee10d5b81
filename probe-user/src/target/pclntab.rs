//! `.gopclntab`, the Go runtime's own symbol table: entry, name, file:line and inlined calls of
//! every Go function. The runtime needs it for tracebacks, so unlike `.symtab` and DWARF it
//! survives `-ldflags=-s -w`: it is how stripped binaries are hooked and symbolized.
//!
//! Formats, by header magic: `0xfffffffb` Go 1.2-1.15, `0xfffffffa` 1.16-1.17, `0xfffffff0`
//! 1.18-1.19, `0xfffffff1` 1.20 and later. The layouts are those of `pcHeader`, `moduledata`,
//! `_func` and `inlinedCall` in the runtime (runtime/symtab.go, runtime/symtabinl.go) and of
//! debug/gosym/pclntab.go.

use std::{collections::HashMap, ops::Range, sync::OnceLock};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use super::{Image, elf::Segment};

#[derive(Debug, thiserror::Error)]
pub enum PclntabError {
    #[error("not an ELF file")]
    NotElf,
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

    /// Size of `_func`'s fixed part, after which the pcdata and funcdata slots follow; `None`
    /// for the 1.2 format, whose `_func` changed shape release by release.
    fn func_size(self) -> Option<usize> {
        match self {
            Self::Go12 => None,
            Self::Go116 | Self::Go120 => Some(44),
            Self::Go118 => Some(40),
        }
    }

    /// `inlinedCall`: its size and the offsets of its name offset and parent pc.
    fn inlined_call(self) -> InlinedCallLayout {
        match self {
            // parent i16, funcID u8, _ u8, file i32, line i32, func_ i32, parentPc i32
            Self::Go12 | Self::Go116 | Self::Go118 => InlinedCallLayout {
                size: 20,
                name: 12,
                parent_pc: 16,
                start_line: None,
            },
            // funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32
            Self::Go120 => InlinedCallLayout {
                size: 16,
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
    name: u64,
    parent_pc: u64,
    start_line: Option<u64>,
}

/// `_PCDATA_InlTreeIndex` and `_FUNCDATA_InlTree` since Go 1.16.
const PCDATA_INL_TREE_INDEX: usize = 2;
const FUNCDATA_INL_TREE: usize = 3;
/// `moduledata.text`, the same word in every format since 1.16.
const MODULEDATA_TEXT_WORD: usize = 22;
/// An inline tree deeper than this is corrupt (the compiler's budget keeps real ones shallow).
const MAX_INLINE_DEPTH: usize = 64;

/// Where a function's inline tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InlineTrees {
    /// Not readable: the 1.2 format (its funcdata indexes moved from release to release), or a
    /// 1.18+ binary whose `go:func.*` base was not found.
    Unavailable,
    /// 1.16-1.17: funcdata slots hold the trees' link addresses.
    Absolute,
    /// 1.18+: funcdata slots are offsets from `go:func.*` (`moduledata.gofunc`), at this address.
    GoFunc(u64),
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
    // File offsets of the sub-tables.
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    /// What functab's `_func` offsets count from.
    funcdata: usize,
    inline_trees: InlineTrees,
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
    pub fn find(image: Image) -> Result<Self, PclntabError> {
        let file = object::File::parse(&*image).map_err(|_| PclntabError::NotElf)?;
        let segments = super::elf::load_segments(&file);
        // With external linking `.text` starts with the C runtime: only this symbol is right.
        let text_symbol = file
            .symbols()
            .find(|s| s.name() == Ok("runtime.text"))
            .map(|s| s.address());
        let named = [".gopclntab", ".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|name| file.section_by_name(name))
            .and_then(|section| Some((section.file_range()?, section.address())));
        drop(file);
        if let Some(((offset, size), address)) = named {
            let table = to_usize(offset)?..to_usize(offset + size)?;
            return Self::parse(image, table, address, segments, text_symbol);
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
        let word = |index: usize| {
            read_u64(&image, table.start + 8 + 8 * index)
                .filter(|&w| w < table_len)
                .map(|w| table.start + w as usize)
                .ok_or(PclntabError::Malformed("header field out of range"))
        };
        let nfunc = word(0)? - table.start;
        // Offsets from the header of funcnametab, cutab, filetab, pctab and functab, which
        // follow nfunc and nfiles (1.16), and textStart (1.18+; unused since 1.26).
        let tables = match format {
            Format::Go12 => None,
            Format::Go116 => Some([word(2)?, word(3)?, word(4)?, word(5)?, word(6)?]),
            Format::Go118 | Format::Go120 => {
                Some([word(3)?, word(4)?, word(5)?, word(6)?, word(7)?])
            }
        };
        let mut pclntab = Self {
            format,
            address,
            quantum: u64::from(header[6]),
            nfunc,
            text_start: 0,
            funcnametab: table.start,
            cutab: table.start,
            filetab: table.start,
            pctab: table.start,
            // 1.2: the functab follows nfunc; names, pc tables and `_func`s count from the
            // header.
            functab: table.start + 16,
            funcdata: table.start,
            inline_trees: InlineTrees::Unavailable,
            by_name: OnceLock::new(),
            image,
            table,
            segments,
        };
        match tables {
            None => {
                // The file table's offset follows the functab.
                let filetab = read_u32(&pclntab.image, pclntab.functab_end())
                    .ok_or(PclntabError::Malformed("truncated functab"))?;
                pclntab.filetab = pclntab.table.start + filetab as usize;
            }
            Some([funcnametab, cutab, filetab, pctab, functab]) => {
                pclntab.funcnametab = funcnametab;
                pclntab.cutab = cutab;
                pclntab.filetab = filetab;
                pclntab.pctab = pctab;
                pclntab.functab = functab;
                pclntab.funcdata = functab;
                if format == Format::Go116 {
                    pclntab.inline_trees = InlineTrees::Absolute;
                }
            }
        }
        pclntab.check_functab()?;
        if format >= Format::Go118 {
            let moduledata = pclntab.moduledata();
            let header_text_start = read_u64(&pclntab.image, pclntab.table.start + 24);
            pclntab.text_start = moduledata
                .and_then(|m| pclntab.word_at(m, MODULEDATA_TEXT_WORD))
                .or(text_symbol)
                .or(header_text_start.filter(|&t| t != 0))
                .ok_or(PclntabError::NoTextBase)?;
            pclntab.inline_trees = moduledata
                .and_then(|m| pclntab.find_gofunc(m))
                .map_or(InlineTrees::Unavailable, InlineTrees::GoFunc);
        }
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
        self.inline_trees != InlineTrees::Unavailable
    }

    pub fn function_count(&self) -> usize {
        self.nfunc
    }

    /// Every function, in address order.
    pub fn functions(&self) -> impl Iterator<Item = Function<'_>> {
        (0..self.nfunc).filter_map(|index| self.function_at_index(index))
    }

    /// A function by name, as `.symtab` names it: the runtime's name, and for the two halves
    /// of an ABI wrapper pair (which the table names alike) `.abi0` on the one taking its
    /// arguments on the stack.
    pub fn function(&self, name: &str) -> Option<Function<'_>> {
        let by_name = self.by_name.get_or_init(|| {
            let mut by_name: HashMap<Box<str>, Vec<usize>> = HashMap::with_capacity(self.nfunc);
            for index in 0..self.nfunc {
                if let Some(function) = self.function_at_index(index) {
                    by_name.entry(function.name.into()).or_default().push(index);
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

    /// Source frames at a link address, innermost inlined call first, the function itself last;
    /// empty outside the table's functions.
    pub fn frames(&self, pc: u64) -> Vec<SourceFrame<'_>> {
        let Some(index) = self.index_containing(pc) else {
            return Vec::new();
        };
        let Some(func) = self.func(index) else {
            return Vec::new();
        };
        let Some(function) = self.function_at_index(index) else {
            return Vec::new();
        };
        let inline_tree = self.inline_tree(func, self.inline_trees);
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
        self.functab + (2 * self.nfunc + 1) * self.functab_entry_size()
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
        let raw = self.functab_field(self.functab + 2 * index * self.functab_entry_size())?;
        Some(raw + self.text_start)
    }

    fn func(&self, index: usize) -> Option<Func> {
        let offset =
            self.functab_field(self.functab + (2 * index + 1) * self.functab_entry_size())?;
        let at = self.funcdata + usize::try_from(offset).ok()?;
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
            self.functab_field(self.functab + 2 * index * self.functab_entry_size())
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
            .functab_field(self.functab + self.functab_entry_size())
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(PclntabError::Malformed("truncated functab"))?;
        let first = self.funcdata + offset;
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

    /// `_func` field `n` (1 = nameOff, 5 = pcfile, 6 = pcln, 7 = npcdata, 8 = cuOffset,
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
        let at = self.funcnametab + offset as usize;
        // Since 1.16 names have a table of their own, which the CU table follows.
        if self.format >= Format::Go116 && at >= self.cutab {
            return None;
        }
        self.string(at)
    }

    fn string(&self, at: usize) -> Option<&str> {
        let bytes = self.image.get(at..self.table.end)?;
        let len = bytes.iter().position(|&b| b == 0)?;
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
            let offset = read_u32(&self.image, self.filetab + 4 * index)?;
            return self.string(self.table.start + offset as usize);
        }
        // Per compilation unit: cutab[cuOffset + index] is an offset into filetab.
        let cu = self.field(func, 8)? as usize;
        let offset = read_u32(&self.image, self.cutab + 4 * (cu + index))?;
        if offset == u32::MAX {
            return None;
        }
        self.string(self.filetab + offset as usize)
    }

    /// The value a pc-value table gives at `pc` (see runtime.pcvalue): a varint stream of
    /// zig-zag value deltas and pc deltas (in units of the pc quantum), starting at value -1.
    fn pc_value(&self, table: u32, entry: u64, pc: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let mut at = self.pctab + table as usize;
        let mut value: i32 = -1;
        let mut current = entry;
        let mut first = true;
        loop {
            let value_delta = read_varint(&self.image[..self.table.end], &mut at)?;
            if value_delta == 0 && !first {
                return None;
            }
            first = false;
            let value_delta = if value_delta & 1 != 0 {
                !(value_delta >> 1) as i32
            } else {
                (value_delta >> 1) as i32
            };
            let pc_delta = read_varint(&self.image[..self.table.end], &mut at)?;
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
        let func_size = self.format.func_size()?;
        let npcdata = self.field(func, 7)? as usize;
        let nfuncdata = usize::from(*self.image.get(func.at + func_size - 1)?);
        if npcdata <= PCDATA_INL_TREE_INDEX || nfuncdata <= FUNCDATA_INL_TREE {
            return None;
        }
        let pcdata = func.at + func_size;
        let index_table = read_u32(&self.image, pcdata + 4 * PCDATA_INL_TREE_INDEX)?;
        let slots = pcdata + 4 * npcdata;
        let tree = match trees {
            InlineTrees::Unavailable => return None,
            InlineTrees::GoFunc(gofunc) => {
                let offset = read_u32(&self.image, slots + 4 * FUNCDATA_INL_TREE)?;
                (offset != u32::MAX).then(|| gofunc + u64::from(offset))?
            }
            InlineTrees::Absolute => {
                // Pointer slots, aligned in memory to 8 bytes.
                let address = self.address + (slots - self.table.start) as u64;
                let slots = slots + (address % 8) as usize;
                read_u64(&self.image, slots + 8 * FUNCDATA_INL_TREE).filter(|&a| a != 0)?
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
            (self.address + (self.funcnametab - self.table.start) as u64).to_le_bytes();
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

    /// `moduledata.gofunc`, the base of 1.18+ funcdata offsets: the first candidate word that
    /// follows `rodata`, lies in the file, and under which inline trees decode sensibly.
    fn find_gofunc(&self, moduledata: usize) -> Option<u64> {
        self.format.gofunc_words().iter().find_map(|&word| {
            let gofunc = self.word_at(moduledata, word)?;
            let rodata = self.word_at(moduledata, word - 1)?;
            (rodata <= gofunc && self.file_offset(gofunc).is_some())
                .then_some(gofunc)
                .filter(|&gofunc| self.inline_trees_decode_with(gofunc))
        })
    }

    /// Whether the first functions with inline trees decode to named calls at call sites inside
    /// the function, if `go:func.*` is at `gofunc`.
    fn inline_trees_decode_with(&self, gofunc: u64) -> bool {
        let mut checked = 0;
        for index in 0..self.nfunc {
            let (Some(func), Some(end)) = (self.func(index), self.entry(index + 1)) else {
                return false;
            };
            let Some((_, tree)) = self.inline_tree(func, InlineTrees::GoFunc(gofunc)) else {
                continue;
            };
            match self.inlined_call(tree, 0) {
                Some(call) if !call.name.is_empty() && func.entry + call.parent_pc < end => {}
                _ => return false,
            }
            checked += 1;
            if checked == 8 {
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
    name: &'a str,
    /// Offset from the function entry of an instruction at the call site.
    parent_pc: u64,
    start_line: u32,
}

fn to_usize(value: u64) -> Result<usize, PclntabError> {
    usize::try_from(value).map_err(|_| PclntabError::Malformed("offset beyond the address space"))
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
