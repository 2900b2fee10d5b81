//! Reads of a running process's memory with `process_vm_readv` (one syscall per read, never a
//! ptrace stop), typed little-endian, with bounded lengths; and the runtime addresses of the
//! binary's globals (link address plus the PIE load bias).

use std::io;

use crate::{GoBinary, process};

/// The longest single read (a slice's backing array, a string): a larger length is a torn or
/// garbage header, not data.
pub const MAX_READ: usize = 64 << 20;

/// How often a read of a moving structure is retried before it counts as inconsistent.
pub const STABLE_ATTEMPTS: usize = 4;

/// Ranges per `process_vm_readv` in [`ReadMemory::read_each`] (the kernel's `UIO_MAXIOV`).
pub const IOV_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("process {0} is gone")]
    ProcessGone(u32),
    #[error("no permission to read the memory of process {0} (run as root)")]
    Permission(u32),
    #[error("{len} bytes at {address:#x} are not mapped in process {pid}")]
    Unreadable { pid: u32, address: u64, len: usize },
    #[error("a length of {len} at {address:#x} exceeds the bound of {max} (torn or garbage)")]
    TooLong { address: u64, len: u64, max: u64 },
    #[error("{what} changed on each of {attempts} reads")]
    Inconsistent { what: &'static str, attempts: usize },
    #[error("the binary has no symbol for {0} (stripped binaries keep no global variables)")]
    MissingGlobal(&'static str),
    #[error("cannot find where process {pid} maps its binary")]
    Mapping {
        pid: u32,
        #[source]
        source: process::ProcessError,
    },
    #[error("read of process {pid} failed")]
    Io {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// The process exited (every later read fails the same way).
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::ProcessGone(_))
    }
}

/// A Go slice header `{ptr, len, cap}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceHeader {
    pub ptr: u64,
    pub len: u64,
    pub cap: u64,
}

impl SliceHeader {
    /// A header a live runtime could hold: `len <= cap`, a pointer when non-empty.
    pub fn is_plausible(&self) -> bool {
        self.len <= self.cap && (self.len == 0 || self.ptr != 0)
    }
}

/// The memory of one live process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessMemory {
    pub pid: u32,
}

/// Reads of one process image: the live process ([`ProcessMemory`]), or a copy of one held
/// in memory ([`BufferMemory`], for tests and fuzzing). Only [`ReadMemory::read`] is
/// required; the typed, bounded reads are built on it.
pub trait ReadMemory {
    /// Fills `buf` from `address`; a short read is an unmapped range.
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// `len` bytes at each of `addresses`, into `buf` (`len` apart); `read[i]` says whether
    /// range `i` was read whole (`false`: not mapped). The live process reads up to
    /// [`IOV_BATCH`] ranges per system call: a snapshot of a heap of 100k timers is then a
    /// hundred calls, not a hundred thousand.
    fn read_each(
        &self,
        addresses: &[u64],
        len: usize,
        buf: &mut [u8],
        read: &mut [bool],
    ) -> Result<(), ReadError> {
        for ((&address, chunk), read) in addresses
            .iter()
            .zip(buf.chunks_exact_mut(len))
            .zip(read.iter_mut())
        {
            *read = match self.read(address, chunk) {
                Ok(()) => true,
                Err(ReadError::Unreadable { .. }) => false,
                Err(other) => return Err(other),
            };
        }
        Ok(())
    }

    /// `len` bytes, `len` bounded by `max` (at most [`MAX_READ`]).
    fn bytes(&self, address: u64, len: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        let max = max.min(MAX_READ);
        if len > max as u64 {
            return Err(ReadError::TooLong {
                address,
                len,
                max: max as u64,
            });
        }
        let mut buf = vec![0; len as usize];
        self.read(address, &mut buf)?;
        Ok(buf)
    }

    fn array<const N: usize>(&self, address: u64) -> Result<[u8; N], ReadError> {
        let mut buf = [0; N];
        self.read(address, &mut buf)?;
        Ok(buf)
    }

    fn u8(&self, address: u64) -> Result<u8, ReadError> {
        Ok(self.array::<1>(address)?[0])
    }

    fn u32(&self, address: u64) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array(address)?))
    }

    fn u64(&self, address: u64) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array(address)?))
    }

    /// A pointer (amd64: a little-endian word).
    fn pointer(&self, address: u64) -> Result<u64, ReadError> {
        self.u64(address)
    }

    /// Consecutive words starting at `address`, `count` of them (bounded).
    fn words(&self, address: u64, count: u64) -> Result<Vec<u64>, ReadError> {
        let bytes = self.bytes(address, count.saturating_mul(8), MAX_READ)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8-byte chunk")))
            .collect())
    }

    fn slice_header(&self, address: u64) -> Result<SliceHeader, ReadError> {
        let [ptr, len, cap] = self.array::<24>(address).map(|b| {
            let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
            [word(0), word(1), word(2)]
        })?;
        Ok(SliceHeader { ptr, len, cap })
    }

    /// A slice header read until two consecutive reads agree and it is plausible.
    fn stable_slice_header(
        &self,
        address: u64,
        what: &'static str,
    ) -> Result<SliceHeader, ReadError> {
        self.stable(what, || {
            let header = self.slice_header(address)?;
            Ok(header.is_plausible().then_some(header))
        })
    }

    /// The elements of the slice whose header (read at `address`) is `header`: `element`-byte
    /// items, at most `max_len` of them.
    fn slice_elements(
        &self,
        address: u64,
        header: SliceHeader,
        element: u64,
        max_len: u64,
    ) -> Result<Vec<u8>, ReadError> {
        if header.len > max_len {
            return Err(ReadError::TooLong {
                address,
                len: header.len,
                max: max_len,
            });
        }
        self.bytes(header.ptr, header.len * element, MAX_READ)
    }

    /// A Go string header `{ptr, len}` and its bytes, `len` bounded by `max`.
    fn string(&self, address: u64, max: usize) -> Result<String, ReadError> {
        let [ptr, len] = {
            let b = self.array::<16>(address)?;
            [
                u64::from_le_bytes(b[..8].try_into().unwrap()),
                u64::from_le_bytes(b[8..].try_into().unwrap()),
            ]
        };
        let bytes = self.bytes(ptr, len, max)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads a value until two consecutive reads are equal and `read` calls it plausible
    /// (`Some`), at most [`STABLE_ATTEMPTS`] times: a structure the process changes under us is
    /// never trusted from a single read.
    fn stable<T: PartialEq>(
        &self,
        what: &'static str,
        mut read: impl FnMut() -> Result<Option<T>, ReadError>,
    ) -> Result<T, ReadError> {
        let mut previous: Option<T> = None;
        for _ in 0..STABLE_ATTEMPTS {
            let current = read()?;
            match (previous.take(), current) {
                (Some(a), Some(b)) if a == b => return Ok(b),
                (_, current) => previous = current,
            }
        }
        Err(ReadError::Inconsistent {
            what,
            attempts: STABLE_ATTEMPTS,
        })
    }
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }
}

impl ProcessMemory {
    /// One `process_vm_readv` of `remotes` into `locals`: the bytes read, 0 when not even the
    /// first range is mapped (EFAULT). The kernel never splits an iovec: it stops at the first
    /// range it cannot read, having read the ones before it whole.
    fn readv(&self, locals: &[libc::iovec], remotes: &[libc::iovec]) -> Result<usize, ReadError> {
        // SAFETY: the caller's local iovecs cover disjoint buffers it owns mutably; the remote
        // ranges are only read by the kernel, which checks them against the target's mappings.
        let n = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                locals.as_ptr(),
                locals.len() as libc::c_ulong,
                remotes.as_ptr(),
                remotes.len() as libc::c_ulong,
                0,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ESRCH) => Err(ReadError::ProcessGone(self.pid)),
            Some(libc::EPERM) => Err(ReadError::Permission(self.pid)),
            Some(libc::EFAULT) => Ok(0),
            _ => Err(ReadError::Io {
                pid: self.pid,
                source: error,
            }),
        }
    }
}

impl ReadMemory for ProcessMemory {
    /// Fills `buf` from `address`; a short read is an unmapped range.
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if buf.is_empty() {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: buf.len(),
        };
        if self.readv(&[local], &[remote])? != buf.len() {
            return Err(ReadError::Unreadable {
                pid: self.pid,
                address,
                len: buf.len(),
            });
        }
        Ok(())
    }

    /// Ranges whose pages touch are read as one span: the kernel pins every page of every
    /// remote range it copies, so 40 timers on one page cost one pin instead of 40. A span
    /// covers only pages its ranges touch, so it is unmapped only where one of them is; then
    /// its ranges are read one by one.
    fn read_each(
        &self,
        addresses: &[u64],
        len: usize,
        buf: &mut [u8],
        read: &mut [bool],
    ) -> Result<(), ReadError> {
        read.fill(len == 0);
        if len == 0 {
            return Ok(());
        }
        let count = addresses.len().min(buf.len() / len).min(read.len());
        let spans = spans(&addresses[..count], len as u64);
        let mut scratch = Vec::new();
        let mut next = 0;
        while next < spans.len() {
            // A batch of spans: at most IOV_BATCH, and about SPAN_BATCH_BYTES of scratch.
            let mut end = next;
            let mut bytes = 0;
            while end < spans.len() && end - next < IOV_BATCH && bytes < SPAN_BATCH_BYTES {
                bytes += spans[end].len();
                end += 1;
            }
            scratch.clear();
            scratch.resize(bytes, 0);
            let remotes: Vec<libc::iovec> = spans[next..end]
                .iter()
                .map(|span| libc::iovec {
                    iov_base: span.start as *mut libc::c_void,
                    iov_len: span.len(),
                })
                .collect();
            let mut locals = Vec::with_capacity(end - next);
            let mut rest = scratch.as_mut_slice();
            for span in &spans[next..end] {
                let (chunk, tail) = rest.split_at_mut(span.len());
                locals.push(libc::iovec {
                    iov_base: chunk.as_mut_ptr().cast(),
                    iov_len: chunk.len(),
                });
                rest = tail;
            }
            let mut copied = self.readv(&locals, &remotes)?;
            let mut offset = 0;
            let mut whole = next;
            while whole < end && copied >= spans[whole].len() {
                let span = &spans[whole];
                for i in span.members.clone() {
                    let at = offset + (addresses[i] - span.start) as usize;
                    buf[i * len..(i + 1) * len].copy_from_slice(&scratch[at..at + len]);
                    read[i] = true;
                }
                copied -= span.len();
                offset += span.len();
                whole += 1;
            }
            if whole < end {
                // The kernel stopped in this span: its ranges on their own.
                for i in spans[whole].members.clone() {
                    read[i] = match self.read(addresses[i], &mut buf[i * len..(i + 1) * len]) {
                        Ok(()) => true,
                        Err(ReadError::Unreadable { .. }) => false,
                        Err(other) => return Err(other),
                    };
                }
                whole += 1;
            }
            next = whole;
        }
        Ok(())
    }
}

const PAGE: u64 = 4096;
/// Scratch bytes per `process_vm_readv` of spans.
const SPAN_BATCH_BYTES: usize = 1 << 20;

/// Consecutive ranges of `len` bytes read as one.
#[derive(Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
    /// Indices of the ranges it holds.
    members: std::ops::Range<usize>,
}

impl Span {
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
}

/// `addresses` (best sorted) as spans: a range joins the span before it when it starts no
/// lower and on the span's last page or the page after, so every page of a span holds part of
/// one of its ranges.
fn spans(addresses: &[u64], len: u64) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (i, &start) in addresses.iter().enumerate() {
        let end = start.saturating_add(len);
        match spans.last_mut() {
            Some(span)
                if start >= span.start
                    && start / PAGE <= (span.end - 1) / PAGE + 1
                    && end.max(span.end) - span.start <= SPAN_BATCH_BYTES as u64 =>
            {
                span.end = span.end.max(end);
                span.members.end = i + 1;
            }
            _ => spans.push(Span {
                start,
                end,
                members: i..i + 1,
            }),
        }
    }
    spans
}

/// A process image held in memory: regions of bytes at addresses; anything outside them is
/// unmapped, as in a process.
#[derive(Clone, Debug, Default)]
pub struct BufferMemory {
    regions: Vec<(u64, Vec<u8>)>,
}

impl BufferMemory {
    /// Maps `bytes` at `address` (regions must not overlap; a later one is not looked at where
    /// an earlier one covers the address).
    pub fn map(&mut self, address: u64, bytes: Vec<u8>) {
        self.regions.push((address, bytes));
    }
}

impl ReadMemory for BufferMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let unreadable = || ReadError::Unreadable {
            pid: 0,
            address,
            len: buf.len(),
        };
        let end = address
            .checked_add(buf.len() as u64)
            .ok_or_else(unreadable)?;
        let (start, bytes) = self
            .regions
            .iter()
            .find(|(start, bytes)| *start <= address && end <= start + bytes.len() as u64)
            .ok_or_else(unreadable)?;
        let at = (address - start) as usize;
        buf.copy_from_slice(&bytes[at..at + buf.len()]);
        Ok(())
    }
}

/// A Go binary as one process maps it: the process's memory plus the load bias that turns the
/// binary's link addresses into the process's (0 unless PIE).
pub struct RuntimeImage<'a, M = ProcessMemory> {
    pub binary: &'a GoBinary,
    pub memory: M,
    pub bias: u64,
}

impl<'a> RuntimeImage<'a> {
    /// The binary `binary` as process `pid` runs it.
    pub fn attach(binary: &'a GoBinary, pid: u32) -> Result<Self, ReadError> {
        let bias = match binary.elf.text_segment() {
            Some(text) if binary.elf.position_independent => {
                process::text_mapping(pid, text)
                    .map_err(|source| match &source {
                        process::ProcessError::Proc(_, e)
                            if e.kind() == io::ErrorKind::NotFound =>
                        {
                            ReadError::ProcessGone(pid)
                        }
                        _ => ReadError::Mapping { pid, source },
                    })?
                    .1
            }
            _ => 0,
        };
        Ok(Self {
            binary,
            memory: ProcessMemory::new(pid),
            bias,
        })
    }
}

impl<M> RuntimeImage<'_, M> {
    /// The runtime address of a global variable (`runtime.allp`, ...), from `.symtab`.
    pub fn global(&self, name: &'static str) -> Result<u64, ReadError> {
        self.binary
            .elf
            .objects
            .get(name)
            .map(|s| s.address.wrapping_add(self.bias))
            .ok_or(ReadError::MissingGlobal(name))
    }

    /// A runtime code address as the binary's link address (for symbolizing).
    pub fn link_address(&self, runtime: u64) -> u64 {
        runtime.wrapping_sub(self.bias)
    }

    /// The `pcsp` value at a runtime code address (0 before the function set up its frame).
    pub fn sp_delta(&self, runtime_pc: u64) -> Option<i32> {
        self.binary
            .pclntab
            .as_ref()?
            .sp_delta(self.link_address(runtime_pc))
    }

    /// The runtime entry address of the function containing a runtime code address.
    pub fn function_entry(&self, runtime_pc: u64) -> Option<u64> {
        let function = self
            .binary
            .pclntab
            .as_ref()?
            .function_containing(self.link_address(runtime_pc))?;
        Some(function.entry.wrapping_add(self.bias))
    }

    /// The function containing a runtime code address, by its pclntab (else symtab) name.
    pub fn function_name(&self, runtime_pc: u64) -> Option<String> {
        let pc = self.link_address(runtime_pc);
        match &self.binary.pclntab {
            Some(pclntab) => pclntab.function_containing(pc).map(|f| f.name.to_owned()),
            None => self.binary.elf.function_at(pc).map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_image_reads_inside_its_regions_only() {
        let mut memory = BufferMemory::default();
        memory.map(0x1000, (0u8..32).collect());
        assert_eq!(memory.u8(0x1005).unwrap(), 5);
        assert_eq!(memory.bytes(0x101e, 2, 8).unwrap(), [30, 31]);
        assert!(matches!(
            memory.u64(0x101c),
            Err(ReadError::Unreadable { .. })
        ));
        assert!(matches!(
            memory.u8(0xfff),
            Err(ReadError::Unreadable { .. })
        ));
        assert!(matches!(
            memory.u64(u64::MAX - 3),
            Err(ReadError::Unreadable { .. })
        ));
    }

    #[test]
    fn reads_our_own_memory_typed_and_bounded() {
        let memory = ProcessMemory::new(std::process::id());
        let words: [u64; 3] = [0x1122_3344_5566_7788, 3, 5];
        let address = words.as_ptr() as u64;
        assert_eq!(memory.u64(address).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(memory.u32(address).unwrap(), 0x5566_7788);
        assert_eq!(memory.u8(address).unwrap(), 0x88);
        assert_eq!(memory.words(address, 3).unwrap(), words);
        let header = memory.slice_header(address).unwrap();
        assert_eq!((header.len, header.cap), (3, 5));
        assert!(matches!(
            memory.bytes(address, 1 << 40, 16),
            Err(ReadError::TooLong { .. })
        ));
        let text = "timers";
        let go_string: [u64; 2] = [text.as_ptr() as u64, text.len() as u64];
        assert_eq!(memory.string(go_string.as_ptr() as u64, 64).unwrap(), text);
        assert!(memory.string(go_string.as_ptr() as u64, 3).is_err());
    }

    #[test]
    fn batched_reads_say_which_ranges_were_unmapped_and_agree_with_single_reads() {
        let words: Vec<u64> = (0..3000).map(|i| i * 0x0101_0101).collect();
        // More ranges than one system call takes, an unmapped one first, one in the middle of
        // a batch and one last: each is skipped and the rest read whole.
        let mut addresses: Vec<u64> = words.iter().map(|w| std::ptr::from_ref(w) as u64).collect();
        for at in [0, 1500, 2999] {
            addresses[at] = 0x10;
        }
        let process = ProcessMemory::new(std::process::id());
        let buffer = {
            let mut buffer = BufferMemory::default();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            buffer.map(words.as_ptr() as u64, bytes);
            buffer
        };
        for memory in [&process as &dyn ReadEach, &buffer] {
            let mut buf = vec![0; addresses.len() * 8];
            let mut read = vec![true; addresses.len()];
            memory.each(&addresses, &mut buf, &mut read);
            for (i, chunk) in buf.chunks_exact(8).enumerate() {
                let unmapped = [0, 1500, 2999].contains(&i);
                assert_eq!(read[i], !unmapped, "range {i}");
                if !unmapped {
                    assert_eq!(u64::from_le_bytes(chunk.try_into().unwrap()), words[i]);
                }
            }
        }
    }

    #[test]
    fn spans_join_ranges_on_touching_pages_only() {
        let members = |addresses: &[u64]| -> Vec<(u64, u64, std::ops::Range<usize>)> {
            spans(addresses, 100)
                .into_iter()
                .map(|s| (s.start, s.end, s.members))
                .collect()
        };
        // Same page, then the next page: one span; two pages on, or lower: a new one.
        assert_eq!(
            members(&[0x1000, 0x1f80, 0x2100, 0x4000, 0x3000]),
            [
                (0x1000, 0x2164, 0..3),
                (0x4000, 0x4064, 3..4),
                (0x3000, 0x3064, 4..5)
            ]
        );
        // Overlapping and repeated ranges stay in one span.
        assert_eq!(members(&[0x1000, 0x1000, 0x1010]), [(0x1000, 0x1074, 0..3)]);
    }

    /// Both readers through one test (the trait itself has generic methods).
    trait ReadEach {
        fn each(&self, addresses: &[u64], buf: &mut [u8], read: &mut [bool]);
    }

    impl<M: ReadMemory> ReadEach for M {
        fn each(&self, addresses: &[u64], buf: &mut [u8], read: &mut [bool]) {
            self.read_each(addresses, 8, buf, read).unwrap();
        }
    }

    #[test]
    fn unmapped_addresses_and_dead_processes_are_named() {
        let memory = ProcessMemory::new(std::process::id());
        assert!(matches!(memory.u64(8), Err(ReadError::Unreadable { .. })));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let error = ProcessMemory::new(pid).u64(0x1000).unwrap_err();
        assert!(error.is_gone(), "{error}");
    }

    #[test]
    fn a_value_that_keeps_changing_is_inconsistent() {
        let memory = ProcessMemory::new(std::process::id());
        let mut n = 0;
        let error = memory
            .stable("counter", || {
                n += 1;
                Ok(Some(n))
            })
            .unwrap_err();
        assert!(matches!(
            error,
            ReadError::Inconsistent {
                attempts: STABLE_ATTEMPTS,
                ..
            }
        ));
        let mut reads = [1, 2, 2].into_iter();
        assert_eq!(memory.stable("settles", || Ok(reads.next())).unwrap(), 2);
    }
}
