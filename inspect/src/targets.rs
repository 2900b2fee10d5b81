//! The targets file of `timerscope inspect`: which services to inspect, where (a base URL, or a
//! local process by pid or executable), which profiles, and optional per-service thresholds.
//! TOML (`.toml`) or YAML (`.yaml`, `.yml`):
//!
//! ```toml
//! [[services]]
//! name = "checkout"                  # store directory name: letters, digits, . _ -
//! url = "https://10.0.0.7:6060"      # net/http/pprof is served under URL/debug/pprof/
//! profiles = ["cpu", "heap", "goroutine"]   # default; also block, mutex ("profile" = cpu)
//! threshold = 10.0                   # share change in percentage points (default --threshold)
//! heap_slope_mib_per_s = 1.0         # in-use heap growth alert level (default 0.5)
//! goroutine_slope_per_s = 2.0        # goroutine growth alert level (default 1)
//!
//! [[services]]
//! name = "billing"
//! exe = "/usr/local/bin/billing"     # or pid = 4242: read from the process's memory (root)
//! profiles = ["heap", "goroutine"]   # the default, and all a process's memory gives
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A profile that Go's `net/http/pprof` serves. The order is the pull order: snapshots of one
/// moment first (heap and goroutines together), then the CPU profile, which takes its seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    Heap,
    Goroutine,
    Block,
    Mutex,
    /// `/debug/pprof/profile`, the CPU profile; `profile` is accepted as its name too.
    #[serde(alias = "profile")]
    Cpu,
}

impl ProfileKind {
    /// The name in targets files, store directories and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Heap => "heap",
            ProfileKind::Goroutine => "goroutine",
            ProfileKind::Block => "block",
            ProfileKind::Mutex => "mutex",
            ProfileKind::Cpu => "cpu",
        }
    }

    /// The path under `/debug/pprof/`, with the query timerscope sends: heap profiles after a
    /// forced GC (so in-use bytes are current), CPU profiles over `cpu_seconds`.
    pub fn endpoint(self, cpu_seconds: u32) -> String {
        match self {
            ProfileKind::Heap => "heap?gc=1".to_owned(),
            ProfileKind::Goroutine => "goroutine".to_owned(),
            ProfileKind::Block => "block".to_owned(),
            ProfileKind::Mutex => "mutex".to_owned(),
            ProfileKind::Cpu => format!("profile?seconds={cpu_seconds}"),
        }
    }

    /// The sample type whose per-function shares are compared between rounds.
    pub fn share_sample_type(self) -> &'static str {
        match self {
            ProfileKind::Heap => "inuse_space",
            ProfileKind::Goroutine => "goroutine",
            ProfileKind::Block | ProfileKind::Mutex => "delay",
            ProfileKind::Cpu => "cpu",
        }
    }

    /// The least a profile must hold before its shares are compared at all: a handful of CPU
    /// samples or goroutines moves shares by tens of points by chance alone. (Moves must also
    /// stand out of sampling noise; see `analysis`.)
    pub fn share_support(self) -> ShareSupport {
        let (sample_type, min_total, what) = match self {
            // Go samples CPU at 100 Hz: 20 samples are a fifth of a second of CPU.
            ProfileKind::Cpu => ("samples", 20, "CPU samples"),
            ProfileKind::Heap => ("inuse_space", 1 << 20, "bytes in use"),
            ProfileKind::Goroutine => ("goroutine", 50, "goroutines"),
            ProfileKind::Block | ProfileKind::Mutex => ("contentions", 50, "contentions"),
        };
        ShareSupport {
            sample_type,
            min_total,
            what,
        }
    }
}

/// See [`ProfileKind::share_support`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSupport {
    pub sample_type: &'static str,
    pub min_total: i64,
    /// What the total counts, for notes.
    pub what: &'static str,
}

impl fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Profiles pulled when a service names none.
pub const DEFAULT_PROFILES: [ProfileKind; 3] =
    [ProfileKind::Heap, ProfileKind::Goroutine, ProfileKind::Cpu];

/// Profiles read from a process's memory when a `pid` or `exe` service names none: all there
/// are without an endpoint.
pub const LOCAL_PROFILES: [ProfileKind; 2] = [ProfileKind::Heap, ProfileKind::Goroutine];

/// Where a service's profiles come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http[s]://host:port[/prefix]` without a trailing slash: its `net/http/pprof`.
    Url(String),
    /// A local process, read from its memory.
    Pid(u32),
    /// The local process running this executable (absolute path), read from its memory.
    Exe(PathBuf),
}

impl Target {
    /// The target as reports show it: the URL without its password, `pid N`, `exe PATH`.
    pub fn describe(&self) -> String {
        match self {
            Target::Url(url) => crate::client::redact(url),
            Target::Pid(pid) => format!("pid {pid}"),
            Target::Exe(path) => format!("exe {}", path.display()),
        }
    }
}

/// One service to inspect, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub target: Target,
    /// Sorted in pull order, without duplicates.
    pub profiles: Vec<ProfileKind>,
    /// Per-service thresholds; `None` takes the run's default.
    pub threshold_pp: Option<f64>,
    pub heap_slope_mib_per_s: Option<f64>,
    pub goroutine_slope_per_s: Option<f64>,
}

impl Service {
    /// The URL of one profile of this service, if it has a URL.
    pub fn profile_url(&self, kind: ProfileKind, cpu_seconds: u32) -> Option<String> {
        match &self.target {
            Target::Url(url) => Some(format!("{url}/debug/pprof/{}", kind.endpoint(cpu_seconds))),
            Target::Pid(_) | Target::Exe(_) => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    services: Vec<ServiceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: String,
    url: Option<String>,
    pid: Option<u32>,
    exe: Option<PathBuf>,
    profiles: Option<Vec<ProfileKind>>,
    threshold: Option<f64>,
    heap_slope_mib_per_s: Option<f64>,
    goroutine_slope_per_s: Option<f64>,
}

/// How a targets file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetsFormat {
    Toml,
    Yaml,
}

impl TargetsFormat {
    /// By file extension: `.toml`, `.yaml` or `.yml`.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(TargetsFormat::Toml),
            "yaml" | "yml" => Some(TargetsFormat::Yaml),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("cannot read the targets file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{0}: unknown targets file format; name it *.toml, *.yaml or *.yml")]
    UnknownFormat(PathBuf),
    #[error("{0}: not a valid targets file (TOML)")]
    Toml(PathBuf, #[source] Box<toml::de::Error>),
    #[error("{0}: not a valid targets file (YAML)")]
    Yaml(PathBuf, #[source] Box<serde_saphyr::Error>),
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// Reads and validates a targets file.
pub fn load_targets(path: &Path) -> Result<Vec<Service>, TargetsError> {
    let format = TargetsFormat::of(path).ok_or_else(|| TargetsError::UnknownFormat(path.into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| TargetsError::Read(path.into(), e))?;
    parse_targets(&text, format, path)
}

/// Parses and validates the text of a targets file; `origin` names it in errors.
pub fn parse_targets(
    text: &str,
    format: TargetsFormat,
    origin: &Path,
) -> Result<Vec<Service>, TargetsError> {
    let file: TargetsFile = match format {
        TargetsFormat::Toml => {
            toml::from_str(text).map_err(|e| TargetsError::Toml(origin.into(), Box::new(e)))?
        }
        TargetsFormat::Yaml => serde_saphyr::from_str(text)
            .map_err(|e| TargetsError::Yaml(origin.into(), Box::new(e)))?,
    };
    let invalid = |problem: String| TargetsError::Invalid {
        path: origin.into(),
        problem,
    };
    if file.services.is_empty() {
        return Err(invalid(
            "no services: list at least one under `services` (name, and url, pid or exe)"
                .to_owned(),
        ));
    }
    let mut services: Vec<Service> = Vec::with_capacity(file.services.len());
    for entry in file.services {
        let service = validate(entry).map_err(&invalid)?;
        if services.iter().any(|s| s.name == service.name) {
            return Err(invalid(format!(
                "service {:?} is listed twice; names must be unique (they name store directories)",
                service.name
            )));
        }
        services.push(service);
    }
    Ok(services)
}

fn validate(entry: ServiceEntry) -> Result<Service, String> {
    let name = entry.name;
    let name_ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(format!(
            "service name {name:?} cannot name a store directory; use letters, digits, '.', '_' and '-' (not starting with '.')"
        ));
    }
    let target = match (entry.url, entry.pid, entry.exe) {
        (Some(url), None, None) => {
            Target::Url(validate_url(&url).map_err(|why| format!("service {name:?}: {why}"))?)
        }
        (None, Some(pid), None) if pid > 0 => Target::Pid(pid),
        (None, Some(_), None) => return Err(format!("service {name:?}: pid must be above 0")),
        (None, None, Some(exe)) if exe.is_absolute() => Target::Exe(exe),
        (None, None, Some(exe)) => {
            return Err(format!(
                "service {name:?}: exe {} is not an absolute path; give the executable's full path (as /proc/PID/exe shows it)",
                exe.display()
            ));
        }
        _ => {
            return Err(format!(
                "service {name:?}: give exactly one of url (its net/http/pprof), pid or exe (a local process)"
            ));
        }
    };
    let local = !matches!(target, Target::Url(_));
    let mut profiles = entry.profiles.unwrap_or_else(|| {
        if local {
            LOCAL_PROFILES.to_vec()
        } else {
            DEFAULT_PROFILES.to_vec()
        }
    });
    if local && let Some(kind) = profiles.iter().find(|k| !LOCAL_PROFILES.contains(k)) {
        return Err(format!(
            "service {name:?}: a {kind} profile needs the service's net/http/pprof (url); from a process's memory there are heap and goroutine"
        ));
    }
    if profiles.is_empty() {
        return Err(format!(
            "service {name:?}: `profiles` is empty; list some of cpu, heap, goroutine, block, mutex (or leave it out for cpu, heap, goroutine)"
        ));
    }
    profiles.sort();
    profiles.dedup();
    for (field, value) in [
        ("threshold", entry.threshold),
        ("heap_slope_mib_per_s", entry.heap_slope_mib_per_s),
        ("goroutine_slope_per_s", entry.goroutine_slope_per_s),
    ] {
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(format!(
                "service {name:?}: {field} must be a positive number"
            ));
        }
    }
    Ok(Service {
        name,
        target,
        profiles,
        threshold_pp: entry.threshold,
        heap_slope_mib_per_s: entry.heap_slope_mib_per_s,
        goroutine_slope_per_s: entry.goroutine_slope_per_s,
    })
}

/// Checks a base URL and drops its trailing slashes.
fn validate_url(url: &str) -> Result<String, String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "url {url:?} is not an http:// or https:// URL; write it as http://host:port"
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!(
            "url {url:?} has no host; write it as http://host:port"
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "url {url:?} has a query or fragment; give only http://host:port and an optional path prefix"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: TargetsFormat) -> Result<Vec<Service>, TargetsError> {
        parse_targets(text, format, Path::new("targets"))
    }

    fn problem(text: &str) -> String {
        match parse(text, TargetsFormat::Toml) {
            Err(TargetsError::Invalid { problem, .. }) => problem,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn toml_and_yaml_describe_the_same_services() {
        let toml = r#"
            [[services]]
            name = "checkout"
            url = "http://127.0.0.1:6060/"
            profiles = ["profile", "heap", "heap", "mutex"]
            threshold = 10.0

            [[services]]
            name = "search.v2"
            url = "http://127.0.0.1:6061/internal"
        "#;
        let yaml = r#"
services:
  - name: checkout
    url: http://127.0.0.1:6060/
    profiles: [profile, heap, heap, mutex]
    threshold: 10
  - name: search.v2
    url: http://127.0.0.1:6061/internal
"#;
        let from_toml = parse(toml, TargetsFormat::Toml).unwrap();
        let from_yaml = parse(yaml, TargetsFormat::Yaml).unwrap();
        assert_eq!(from_toml, from_yaml);
        let checkout = &from_toml[0];
        assert_eq!(
            checkout.target,
            Target::Url("http://127.0.0.1:6060".to_owned())
        );
        assert_eq!(
            checkout.profiles,
            [ProfileKind::Heap, ProfileKind::Mutex, ProfileKind::Cpu],
            "deduplicated, snapshots before CPU"
        );
        assert_eq!(checkout.threshold_pp, Some(10.0));
        assert_eq!(
            checkout.profile_url(ProfileKind::Cpu, 30).unwrap(),
            "http://127.0.0.1:6060/debug/pprof/profile?seconds=30"
        );
        let search = &from_toml[1];
        assert_eq!(search.profiles, DEFAULT_PROFILES);
        assert_eq!(
            search.profile_url(ProfileKind::Heap, 30).unwrap(),
            "http://127.0.0.1:6061/internal/debug/pprof/heap?gc=1"
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_fix() {
        assert!(problem("services = []").contains("no services"));
        let twice = r#"
            [[services]]
            name = "a"
            url = "http://127.0.0.1:1"
            [[services]]
            name = "a"
            url = "http://127.0.0.1:2"
        "#;
        assert!(problem(twice).contains("listed twice"));
        let tls = "[[services]]\nname = \"a\"\nurl = \"https://u:p@127.0.0.1:1/\"";
        let tls = parse(tls, TargetsFormat::Toml).unwrap();
        assert_eq!(tls[0].target, Target::Url("https://u:p@127.0.0.1:1".into()));
        assert_eq!(tls[0].target.describe(), "https://u:***@127.0.0.1:1");
        let both = "[[services]]\nname = \"a\"\nurl = \"http://h:1\"\npid = 7";
        assert!(problem(both).contains("exactly one of url"));
        let neither = "[[services]]\nname = \"a\"";
        assert!(problem(neither).contains("exactly one of url"));
        let relative = "[[services]]\nname = \"a\"\nexe = \"bin/svc\"";
        assert!(problem(relative).contains("absolute path"));
        let cpu = "[[services]]\nname = \"a\"\npid = 7\nprofiles = [\"cpu\"]";
        assert!(problem(cpu).contains("needs the service's net/http/pprof"));
        let local = "services:\n  - name: a\n    exe: /usr/bin/svc\n  - name: b\n    pid: 7\n";
        let local = parse(local, TargetsFormat::Yaml).unwrap();
        assert_eq!(local[0].target, Target::Exe("/usr/bin/svc".into()));
        assert_eq!(local[1].target, Target::Pid(7));
        assert_eq!(local[1].profiles, LOCAL_PROFILES);
        assert_eq!(local[1].profile_url(ProfileKind::Heap, 1), None);
        let slash = "[[services]]\nname = \"../etc\"\nurl = \"http://127.0.0.1:1\"";
        assert!(problem(slash).contains("store directory"));
        let negative = "[[services]]\nname = \"a\"\nurl = \"http://h:1\"\nthreshold = -3.0";
        assert!(problem(negative).contains("positive"));
        let unknown = "[[services]]\nname = \"a\"\nurl = \"http://h:1\"\nprofiles = [\"heep\"]";
        let error = parse(unknown, TargetsFormat::Toml).unwrap_err();
        assert!(matches!(error, TargetsError::Toml(..)), "{error:?}");
        let typo = "services:\n  - name: a\n    urll: http://h:1\n";
        let error = parse(typo, TargetsFormat::Yaml).unwrap_err();
        assert!(matches!(error, TargetsError::Yaml(..)), "{error:?}");
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            TargetsFormat::of(Path::new("t.TOML")),
            Some(TargetsFormat::Toml)
        );
        assert_eq!(
            TargetsFormat::of(Path::new("t.yml")),
            Some(TargetsFormat::Yaml)
        );
        assert_eq!(TargetsFormat::of(Path::new("targets")), None);
    }
}
