//! `.go.buildinfo`: the Go version and build settings the linker records in every Go binary
//! (it survives `-s -w` and PIE).

use super::TargetError;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Flag bit: version and module info are stored inline as varint-prefixed strings (Go 1.18+).
const FLAG_INLINE_STRINGS: u8 = 0x2;

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

    /// Parses the contents of the `.go.buildinfo` section (or the bytes found at its magic).
    pub fn parse(data: &[u8]) -> Result<Self, TargetError> {
        let header = data
            .get(..32)
            .filter(|h| h.starts_with(MAGIC))
            .ok_or(TargetError::BuildInfo("no `\\xff Go buildinf:` magic"))?;
        if header[15] & FLAG_INLINE_STRINGS == 0 {
            // Go <= 1.17 stores pointers to string headers; resolving them needs the image.
            return Err(TargetError::BuildInfo(
                "pointer-format build info (Go 1.17 or older) is not supported",
            ));
        }
        let mut rest = &data[32..];
        let version_string = read_varint_string(&mut rest)
            .ok_or(TargetError::BuildInfo("truncated version string"))?;
        let modinfo = read_varint_string(&mut rest).unwrap_or_default();
        let version = GoVersion::parse(&version_string)
            .ok_or(TargetError::BuildInfo("unparsable Go version string"))?;
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

    /// Finds the build info by its magic, for binaries whose section headers are gone.
    pub fn find(image: &[u8]) -> Result<Self, TargetError> {
        let at = image
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
            .ok_or(TargetError::NotGo("no .go.buildinfo section or magic"))?;
        Self::parse(&image[at..])
    }
}

fn read_varint_string(data: &mut &[u8]) -> Option<String> {
    let mut len: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let body = data.get(i + 1..i + 1 + usize::try_from(len).ok()?)?;
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
}
