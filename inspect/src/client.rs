//! HTTP(S) settings shared by `inspect`'s pulls and `watch --push`: TLS with the system's roots
//! plus `--ca-file`, extra headers whose values can come from a file or an environment variable
//! (so secrets stay out of `ps`), and basic auth taken from the URL's user info.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::Engine as _;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("header {0:?} is not `Name: value` (e.g. `Authorization: Bearer @/run/secrets/token`)")]
    HeaderSyntax(String),
    #[error("header {name}: cannot read {path}")]
    HeaderFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("header {name}: environment variable {var} is not set")]
    HeaderEnv { name: String, var: String },
    #[error("cannot read --ca-file {path}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--ca-file {0} has no PEM certificate")]
    CaFileEmpty(PathBuf),
    #[error(
        "{url}: no trusted root certificates (none found in the system's store): pass --ca-file"
    )]
    NoRoots { url: String },
    #[error("{0:?} is not an http:// or https:// URL with a host")]
    Url(String),
    #[error(
        "{url}: TLS handshake failed ({reason}); pass --ca-file with the CA that signed its certificate"
    )]
    Tls { url: String, reason: String },
}

/// The TLS failure inside a request's error, if that is what it is: a handshake that failed
/// (an untrusted or mismatched certificate, no common protocol) fails the same way again, so it
/// is not worth retrying.
pub fn tls_failure(error: &ureq::Error) -> Option<String> {
    match error {
        ureq::Error::Rustls(e) => Some(e.to_string()),
        ureq::Error::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}

/// Makes one request to `url` (any HTTP answer will do) and refuses it when its TLS handshake
/// fails; a server that does not answer at all is not refused (it may come up later).
pub fn check_tls(agent: &ureq::Agent, endpoint: &Endpoint) -> Result<(), ClientError> {
    if !endpoint.url.starts_with("https://") {
        return Ok(());
    }
    match endpoint.apply(agent.head(&endpoint.url)).call() {
        Err(error) => match tls_failure(&error) {
            Some(reason) => Err(ClientError::Tls {
                url: endpoint.url.clone(),
                reason,
            }),
            None => Ok(()),
        },
        Ok(_) => Ok(()),
    }
}

/// One extra request header, its value already resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for Header {
    // Header values are often secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

impl Header {
    /// Parses `Name: value`; a value `@PATH` is read from that file and `env:VAR` from that
    /// environment variable (each trimmed of surrounding whitespace).
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        let (name, value) = spec
            .split_once(':')
            .ok_or_else(|| ClientError::HeaderSyntax(spec.to_owned()))?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !valid_name {
            return Err(ClientError::HeaderSyntax(spec.to_owned()));
        }
        let value = value.trim();
        let value = if let Some(path) = value.strip_prefix('@') {
            fs::read_to_string(path)
                .map_err(|source| ClientError::HeaderFile {
                    name: name.to_owned(),
                    path: path.into(),
                    source,
                })?
                .trim()
                .to_owned()
        } else if let Some(var) = value.strip_prefix("env:") {
            std::env::var(var).map_err(|_| ClientError::HeaderEnv {
                name: name.to_owned(),
                var: var.to_owned(),
            })?
        } else {
            value.to_owned()
        };
        Ok(Self {
            name: name.to_owned(),
            value,
        })
    }
}

/// How requests are made: roots to trust and headers to add.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSettings {
    /// PEM certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Headers added to every request.
    pub headers: Vec<Header>,
}

/// A URL split into what is sent as the URL and what goes into headers.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL without user info: safe to show.
    pub url: String,
    /// The settings' headers, and `Authorization: Basic` from the URL's user info.
    pub headers: Vec<Header>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.url, self.headers)
    }
}

impl Endpoint {
    /// Adds the headers to a request.
    pub fn apply<B>(&self, mut request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        for header in &self.headers {
            request = request.header(&header.name, &header.value);
        }
        request
    }
}

impl ClientSettings {
    /// Splits `url` (`http[s]://[user[:password]@]host...`) into an [`Endpoint`].
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::Url(redact(url));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if !matches!(scheme, "http" | "https") {
            return Err(bad());
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let mut headers = self.headers.clone();
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let credentials = format!("{}:{}", percent_decode(user), percent_decode(password));
            headers.retain(|h| !h.name.eq_ignore_ascii_case("authorization"));
            headers.push(Header {
                name: "Authorization".into(),
                value: format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                ),
            });
        }
        Ok(Endpoint {
            url: format!("{scheme}://{host}{path}"),
            headers,
        })
    }

    /// The TLS configuration: the system's roots and the `--ca-file` certificates. Fails when
    /// an https URL is among `urls` and no root at all can be trusted, or the CA file is
    /// unusable: such a URL could never work, so it is refused at start-up.
    pub fn tls_config<'a>(
        &self,
        urls: impl IntoIterator<Item = &'a str>,
    ) -> Result<TlsConfig, ClientError> {
        let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        if let Some(path) = &self.ca_file {
            roots.extend(read_ca_file(path)?);
        }
        if roots.is_empty()
            && let Some(url) = urls.into_iter().find(|u| u.starts_with("https://"))
        {
            return Err(ClientError::NoRoots { url: redact(url) });
        }
        Ok(TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build())
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, ClientError> {
    let pem = fs::read(path).map_err(|source| ClientError::CaFile {
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ClientError::CaFileEmpty(path.into()));
    }
    Ok(certs)
}

/// `url` with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{scheme}://{user}:***@{host}{}", &rest[end..])
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s.get(i + 1..i + 3).filter(|_| bytes[i] == b'%');
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_comes_from_the_url_and_leaves_it() {
        let settings = ClientSettings::default();
        let endpoint = settings
            .endpoint("https://alice:s%40cret@store.example:4040/base?x=1")
            .unwrap();
        assert_eq!(endpoint.url, "https://store.example:4040/base?x=1");
        assert_eq!(endpoint.headers.len(), 1);
        assert_eq!(endpoint.headers[0].name, "Authorization");
        // base64("alice:s@cret")
        assert_eq!(endpoint.headers[0].value, "Basic YWxpY2U6c0BjcmV0");
        assert!(!format!("{endpoint:?}").contains("cret"));
        assert_eq!(
            redact("https://alice:s%40cret@store.example/x"),
            "https://alice:***@store.example/x"
        );
    }

    #[test]
    fn header_values_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        fs::write(&token, "tok-123\n").unwrap();
        let header = Header::parse(&format!("Authorization: Bearer-file @{}", token.display()));
        // Only a whole value is read from a file.
        assert_eq!(
            header.unwrap().value,
            format!("Bearer-file @{}", token.display())
        );
        let header = Header::parse(&format!("X-Token: @{}", token.display())).unwrap();
        assert_eq!(header.value, "tok-123");
        // SAFETY: this test alone uses this variable.
        unsafe { std::env::set_var("TIMERSCOPE_TEST_ORG", "tenant-7") };
        let header = Header::parse("X-Scope-OrgID: env:TIMERSCOPE_TEST_ORG").unwrap();
        assert_eq!(header.value, "tenant-7");
        assert!(matches!(
            Header::parse("X-Scope-OrgID: env:TIMERSCOPE_TEST_UNSET_VAR"),
            Err(ClientError::HeaderEnv { .. })
        ));
        assert!(matches!(
            Header::parse("no colon"),
            Err(ClientError::HeaderSyntax(_))
        ));
        assert!(matches!(
            Header::parse("Bad Name: x"),
            Err(ClientError::HeaderSyntax(_))
        ));
    }

    #[test]
    fn unusable_urls_and_ca_files_are_refused() {
        let settings = ClientSettings::default();
        assert!(settings.endpoint("ftp://host/").is_err());
        assert!(settings.endpoint("https:///path").is_err());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "not a certificate").unwrap();
        let settings = ClientSettings {
            ca_file: Some(empty),
            headers: Vec::new(),
        };
        assert!(matches!(
            settings.tls_config(["https://store"]),
            Err(ClientError::CaFileEmpty(_))
        ));
    }
}
