//! `.go.buildinfo`: the Go version and build settings the linker records in every Go binary
//! since 1.13 (it survives `-s -w` and PIE); for Go 1.12, which wrote none, the runtime's own
//! version string.

use crate::{BinaryError, elf::Segment};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Flag bit: version and module info are stored inline as varint-prefixed strings (Go 1.18+).
/// Without it (Go 1.13-1.17) the header holds two pointers to Go string headers.
const FLAG_INLINE_STRINGS: u8 = 0x2;
/// Flag bit: a big-endian target.
const FLAG_BIG_ENDIAN: u8 = 0x1;

/// A Go release, `go1.MINOR.PATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `go1.23.9`, `go1.21rc2`, `go1.20.7 X:boringcrypto`, `devel go1.24-abc ...`.
    pub fn parse(text: &str) -> Option<Self> {
        let start = text.find("go1.")?;
        let numbers = &text[start + 2..];
        let mut parts = numbers
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        // "go1.21rc2" or "go1.24-abc": no patch number follows the dot.
        let patch = match numbers
            .split_once('.')
            .map(|(_, rest)| rest.split_once('.'))
        {
            Some(Some((_, rest))) => rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        Some(Self {
            major,
            minor,
            patch,
        })
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What `.go.buildinfo` says about a binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// As recorded, e.g. `go1.20.7 X:boringcrypto`.
    pub version_string: String,
    pub version: GoVersion,
    /// `build\tKEY=VALUE` settings from the module info (`DefaultGODEBUG`, `-buildmode`, ...).
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Reads a binary's build info: `.go.buildinfo` (`section`, else found by its magic) in
    /// either format, pointers resolved through the image's `segments`; without any (Go 1.12),
    /// the `runtime.buildVersion` string (at `build_version`, its symbol's address, when known).
    pub fn read(
        image: &[u8],
        section: Option<&[u8]>,
        segments: &[Segment],
        build_version: Option<u64>,
    ) -> Result<Self, BinaryError> {
        let data = match section {
            Some(section) => section,
            None => match image.windows(MAGIC.len()).position(|w| w == MAGIC) {
                Some(at) => &image[at..],
                None => {
                    let version_string = runtime_build_version(image, segments, build_version)
                        .ok_or(BinaryError::NotGo("no .go.buildinfo section or magic"))?;
                    return Self::from_strings(version_string, "");
                }
            },
        };
        let header = Self::header(data)?;
        if header[15] & FLAG_INLINE_STRINGS != 0 {
            return Self::parse(data);
        }
        if header[14] != 8 || header[15] & FLAG_BIG_ENDIAN != 0 {
            return Err(BinaryError::BuildInfo(
                "pointer-format build info of a non-64-bit or big-endian target",
            ));
        }
        // Slots 16 and 24 hold the addresses of `runtime.buildVersion` and `runtime.modinfo`.
        let string_at = |slot: usize| read_go_string(image, segments, read_u64(header, slot)?);
        let version_string = string_at(16).ok_or(BinaryError::BuildInfo(
            "version string pointer out of the image",
        ))?;
        // No module info (GOPATH builds) is an empty string, not an error.
        let modinfo = string_at(24).unwrap_or_default();
        Self::from_strings(version_string, &modinfo)
    }

    fn header(data: &[u8]) -> Result<&[u8], BinaryError> {
        data.get(..32)
            .filter(|h| h.starts_with(MAGIC))
            .ok_or(BinaryError::BuildInfo("no `\\xff Go buildinf:` magic"))
    }

    /// Parses the contents of a Go 1.18+ `.go.buildinfo` section (or the bytes found at its
    /// magic); the pointer format of older releases needs the image: [`Self::read`].
    pub fn parse(data: &[u8]) -> Result<Self, BinaryError> {
        let header = Self::header(data)?;
        if header[15] & FLAG_INLINE_STRINGS == 0 {
            return Err(BinaryError::BuildInfo(
                "pointer-format build info (Go 1.13-1.17) needs the whole image to resolve",
            ));
        }
        let mut rest = &data[32..];
        let version_string = read_varint_string(&mut rest)
            .ok_or(BinaryError::BuildInfo("truncated version string"))?;
        let modinfo = read_varint_string(&mut rest).unwrap_or_default();
        Self::from_strings(version_string, &modinfo)
    }

    fn from_strings(version_string: String, modinfo: &str) -> Result<Self, BinaryError> {
        let version = GoVersion::parse(&version_string)
            .ok_or(BinaryError::BuildInfo("unparsable Go version string"))?;
        let settings = modinfo
            .lines()
            .filter_map(|line| line.strip_prefix("build\t"))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Self {
            version_string,
            version,
            settings,
        })
    }

    /// Finds Go 1.18+ build info by its magic, for binaries whose section headers are gone.
    pub fn find(image: &[u8]) -> Result<Self, BinaryError> {
        let at = image
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
            .ok_or(BinaryError::NotGo("no .go.buildinfo section or magic"))?;
        Self::parse(&image[at..])
    }
}

/// The bytes of a Go string whose header (`{ptr, len}`) is at link address `header`.
fn read_go_string(image: &[u8], segments: &[Segment], header: u64) -> Option<String> {
    let bytes = |address: u64, len: u64| {
        let end = address.checked_add(len)?;
        let segment = segments
            .iter()
            .find(|s| address >= s.vaddr && end <= s.vaddr + s.filesz)?;
        let start = usize::try_from(address - segment.vaddr + segment.offset).ok()?;
        image.get(start..start.checked_add(usize::try_from(len).ok()?)?)
    };
    let string_header = bytes(header, 16)?;
    let (pointer, len) = (read_u64(string_header, 0)?, read_u64(string_header, 8)?);
    // Module info is a few KiB; anything far larger is not a string header.
    if len > 1 << 20 {
        return None;
    }
    Some(String::from_utf8_lossy(bytes(pointer, len)?).into_owned())
}

/// Go 1.12 and older: `runtime.buildVersion` ("go1.12.5"), by its symbol when `.symtab` is
/// there, else (stripped) the one string header in the initialized data whose bytes are a
/// whole Go release name.
fn runtime_build_version(
    image: &[u8],
    segments: &[Segment],
    symbol: Option<u64>,
) -> Option<String> {
    let is_release = |s: &str| {
        s.strip_prefix("go1.").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        })
    };
    if let Some(symbol) = symbol {
        return read_go_string(image, segments, symbol).filter(|s| is_release(s));
    }
    let mut found = segments
        .iter()
        .filter(|s| s.writable && s.filesz > 0)
        .flat_map(|segment| {
            // Only the bytes the file holds: a damaged header may claim far more.
            let present = segment
                .filesz
                .min((image.len() as u64).saturating_sub(segment.offset));
            (0..present.saturating_sub(16))
                .step_by(8)
                .map(move |at| segment.vaddr + at)
        })
        .filter_map(|header| {
            let start = usize::try_from(segments.iter().find_map(|s| {
                (header >= s.vaddr && header < s.vaddr + s.filesz)
                    .then(|| header - s.vaddr + s.offset)
            })?)
            .ok()?;
            let len = read_u64(image, start + 8)?;
            (6..=24).contains(&len).then_some(())?;
            read_go_string(image, segments, header).filter(|s| is_release(s))
        });
    let first = found.next()?;
    // Two different release names: not a reliable answer.
    found.all(|other| other == first).then_some(first)
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn read_varint_string(data: &mut &[u8]) -> Option<String> {
    let mut len: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let body = data.get(i + 1..(i + 1).checked_add(usize::try_from(len).ok()?)?)?;
            *data = &data[i + 1 + body.len()..];
            return Some(String::from_utf8_lossy(body).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_with_suffixes() {
        assert_eq!(GoVersion::parse("go1.23.9"), Some(GoVersion::new(1, 23, 9)));
        assert_eq!(
            GoVersion::parse("go1.20.7 X:boringcrypto"),
            Some(GoVersion::new(1, 20, 7))
        );
        assert_eq!(
            GoVersion::parse("go1.21rc2"),
            Some(GoVersion::new(1, 21, 0))
        );
        assert_eq!(
            GoVersion::parse("devel go1.24-abc123 Tue"),
            Some(GoVersion::new(1, 24, 0))
        );
        assert_eq!(GoVersion::parse("go1.19"), Some(GoVersion::new(1, 19, 0)));
        assert_eq!(GoVersion::parse("rustc 1.2"), None);
    }

    #[test]
    fn parses_inline_buildinfo() {
        let mut data = Vec::from(&MAGIC[..]);
        data.extend_from_slice(&[8, FLAG_INLINE_STRINGS]);
        data.resize(32, 0);
        let version = b"go1.25.5 X:boringcrypto";
        data.push(version.len() as u8);
        data.extend_from_slice(version);
        let modinfo = b"path\tx\nbuild\tDefaultGODEBUG=asynctimerchan=1\nbuild\t-buildmode=pie\n";
        data.push(modinfo.len() as u8);
        data.extend_from_slice(modinfo);
        let info = BuildInfo::parse(&data).unwrap();
        assert_eq!(info.version, GoVersion::new(1, 25, 5));
        assert_eq!(info.setting("DefaultGODEBUG"), Some("asynctimerchan=1"));
        assert_eq!(info.setting("-buildmode"), Some("pie"));
        assert!(BuildInfo::parse(&data[..40]).is_err());
        assert!(BuildInfo::find(b"not a go binary").is_err());
    }

    const BASE: u64 = 0x40_0000;

    fn one_segment(len: usize) -> Vec<Segment> {
        vec![Segment {
            vaddr: BASE,
            memsz: len as u64,
            offset: 0,
            filesz: len as u64,
            executable: false,
            writable: true,
        }]
    }

    fn put(image: &mut [u8], at: usize, bytes: &[u8]) {
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A Go string header at `at` naming `text`, which is stored at `text_at`.
    fn put_string(image: &mut [u8], at: usize, text_at: usize, text: &[u8]) {
        put(image, text_at, text);
        put(image, at, &(BASE + text_at as u64).to_le_bytes());
        put(image, at + 8, &(text.len() as u64).to_le_bytes());
    }

    #[test]
    fn resolves_pointer_format_buildinfo() {
        // Go 1.13-1.17: the header points at the string headers of runtime.buildVersion and
        // runtime.modinfo.
        let mut image = vec![0u8; 0x400];
        put(&mut image, 0x100, MAGIC);
        image[0x100 + 14] = 8;
        put(&mut image, 0x100 + 16, &(BASE + 0x200).to_le_bytes());
        put(&mut image, 0x100 + 24, &(BASE + 0x210).to_le_bytes());
        put_string(&mut image, 0x200, 0x300, b"go1.16.3");
        put_string(&mut image, 0x210, 0x320, b"path\tx\nbuild\tCGO_ENABLED=0\n");
        let segments = one_segment(image.len());
        let info = BuildInfo::read(&image, None, &segments, None).unwrap();
        assert_eq!(info.version, GoVersion::new(1, 16, 3));
        assert_eq!(info.setting("CGO_ENABLED"), Some("0"));
        let section = image[0x100..0x120].to_vec();
        assert_eq!(
            BuildInfo::read(&image, Some(&section), &segments, None).unwrap(),
            info
        );
        // A pointer outside the image is an error, not a guess.
        put(&mut image, 0x100 + 16, &(BASE + 0x10_0000).to_le_bytes());
        assert!(BuildInfo::read(&image, None, &segments, None).is_err());
    }

    #[test]
    fn go_1_12_falls_back_to_the_runtime_version_string() {
        // No .go.buildinfo: the one string header in the data naming a Go release.
        let mut image = vec![0u8; 0x400];
        put_string(&mut image, 0x80, 0x300, b"not a version");
        put_string(&mut image, 0x98, 0x310, b"go1.12.5");
        let segments = one_segment(image.len());
        let info = BuildInfo::read(&image, None, &segments, None).unwrap();
        assert_eq!(info.version_string, "go1.12.5");
        assert!(info.settings.is_empty());
        // Two different release names: refused rather than picked.
        put_string(&mut image, 0xb0, 0x320, b"go1.11.2");
        assert!(BuildInfo::read(&image, None, &segments, None).is_err());
    }
}
