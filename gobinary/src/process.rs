//! The live process running a Go binary, as `/proc/PID` shows it: where its binary is mapped,
//! its environment, the container and pod it runs in.

use std::{fs, os::unix::fs::MetadataExt as _, path::PathBuf};

use crate::elf::Segment;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot read /proc/{0} (is the process still running?)")]
    Proc(u32, #[source] std::io::Error),
    #[error("process {0} has no executable mapping of its own binary in /proc/{0}/maps")]
    NoTextMapping(u32),
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub inode: u64,
    pub path: String,
}

pub fn proc_path(pid: u32, what: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{what}"))
}

pub fn maps(pid: u32) -> Result<Vec<MapEntry>, ProcessError> {
    let text =
        fs::read_to_string(proc_path(pid, "maps")).map_err(|e| ProcessError::Proc(pid, e))?;
    Ok(text.lines().filter_map(parse_map_line).collect())
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.to_owned();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        inode,
        path,
    })
}

/// The executable mapping of the target's own binary and the load bias (runtime address minus
/// link address; 0 for non-PIE).
pub fn text_mapping(pid: u32, text: &Segment) -> Result<(MapEntry, u64), ProcessError> {
    let inode = fs::metadata(proc_path(pid, "exe"))
        .map_err(|e| ProcessError::Proc(pid, e))?
        .ino();
    let entry = maps(pid)?
        .into_iter()
        .find(|m| {
            m.inode == inode
                && m.perms.contains('x')
                && m.offset <= text.offset
                && text.offset < m.offset + (m.end - m.start)
        })
        .ok_or(ProcessError::NoTextMapping(pid))?;
    let bias = (entry.start - entry.offset).wrapping_sub(text.vaddr - text.offset);
    Ok((entry, bias))
}

/// Resident set size of `pid` from /proc/PID/statm (second field, in pages).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(proc_path(pid, "statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// `GODEBUG` from the target's environment at exec time.
pub fn godebug(pid: u32) -> Option<String> {
    let environ = fs::read(proc_path(pid, "environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"GODEBUG="))
        .next_back()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The container and Kubernetes pod a process runs in, as its cgroup path names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerIdentity {
    /// 64 hex digits: `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
    /// `libpod-<id>.scope` under systemd, or a bare `<id>` segment under cgroupfs drivers.
    pub container_id: Option<String>,
    /// The pod's uid with dashes: `pod<uid>` in the kubepods path (underscores for dashes
    /// under the systemd driver).
    pub pod_uid: Option<String>,
}

/// The container identity of `pid` from `/proc/PID/cgroup`; empty outside containers.
pub fn container_identity(pid: u32) -> ContainerIdentity {
    fs::read_to_string(proc_path(pid, "cgroup"))
        .map(|text| parse_cgroup(&text))
        .unwrap_or_default()
}

/// Reads the identity out of a cgroup file (v2's single `0::/path` line, or v1's lines): the
/// innermost container id and pod uid of any line.
pub fn parse_cgroup(text: &str) -> ContainerIdentity {
    let mut identity = ContainerIdentity::default();
    let segments = text
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'));
    for segment in segments {
        let stem = segment.strip_suffix(".scope").unwrap_or(segment);
        let id = stem.rsplit('-').next().unwrap_or(stem);
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            identity.container_id = Some(id.to_ascii_lowercase());
        }
        let stem = segment.strip_suffix(".slice").unwrap_or(segment);
        if let Some(start) = stem.rfind("pod") {
            let uid = stem[start + 3..].replace('_', "-");
            let is_uid = uid.len() == 36
                && uid.bytes().enumerate().all(|(i, b)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        b == b'-'
                    } else {
                        b.is_ascii_hexdigit()
                    }
                });
            if is_uid {
                identity.pod_uid = Some(uid.to_ascii_lowercase());
            }
        }
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_and_pod_come_from_the_cgroup_path() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod1b2c3d4e_0000_4111_8222_123456789abc.slice/\
             cri-containerd-{id}.scope\n"
        );
        let identity = parse_cgroup(&systemd);
        assert_eq!(identity.container_id.as_deref(), Some(id));
        assert_eq!(
            identity.pod_uid.as_deref(),
            Some("1b2c3d4e-0000-4111-8222-123456789abc")
        );
        let cgroupfs = format!(
            "12:memory:/kubepods/besteffort/pod1b2c3d4e-0000-4111-8222-123456789abc/{id}\n"
        );
        assert_eq!(parse_cgroup(&cgroupfs), identity);
        let docker = parse_cgroup(&format!("0::/system.slice/docker-{id}.scope\n"));
        assert_eq!(docker.container_id.as_deref(), Some(id));
        assert_eq!(docker.pod_uid, None);
        assert_eq!(
            parse_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"),
            ContainerIdentity::default()
        );
    }

    #[test]
    fn parses_maps_lines() {
        let line = "55d42be5f000-55d42bf60000 r-xp 00001000 fe:01 1234  /opt/my app/server";
        let entry = parse_map_line(line).unwrap();
        assert_eq!(entry.start, 0x55d4_2be5_f000);
        assert_eq!(entry.offset, 0x1000);
        assert_eq!(entry.inode, 1234);
        assert_eq!(entry.path, "/opt/my app/server");
        assert!(parse_map_line("garbage").is_none());
    }

    #[test]
    fn finds_our_own_text_mapping() {
        let pid = std::process::id();
        let image = fs::read(proc_path(pid, "exe")).unwrap();
        let elf = crate::elf::ElfInfo::parse(&image).unwrap();
        let (entry, bias) = text_mapping(pid, elf.text_segment().unwrap()).unwrap();
        assert!(entry.perms.contains('x'));
        // The address of a function in this process, unbiased, lies in the text segment.
        let here = finds_our_own_text_mapping as *const () as u64;
        let text = elf.text_segment().unwrap();
        assert!((text.vaddr..text.vaddr + text.memsz).contains(&(here - bias)));
    }
}
