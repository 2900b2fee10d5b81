//! A test CA made at test time, and TLS in front of the tests' loopback servers: a
//! certificate for 127.0.0.1 signed by the CA, which clients trust only through `--ca-file`.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA's PEM file (for `--ca-file`) and the server's TLS configuration.
pub struct TestCa {
    pub ca_file: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// A new CA whose certificate is written to `dir/ca.pem`, and a server certificate for
    /// 127.0.0.1 and localhost signed by it.
    pub fn new(dir: &Path) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "timerscope test CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap()
                .signed_by(&server_key, &ca)
                .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .unwrap();
        Self {
            ca_file,
            server: Arc::new(server),
        }
    }
}

/// One accepted connection, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    /// `stream` as is, or as the server side of a TLS connection with `config`.
    pub fn accept(stream: TcpStream, config: Option<&Arc<rustls::ServerConfig>>) -> Self {
        match config {
            None => Stream::Plain(stream),
            Some(config) => {
                let connection = rustls::ServerConnection::new(Arc::clone(config)).unwrap();
                Stream::Tls(Box::new(rustls::StreamOwned::new(connection, stream)))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    /// Ends the connection cleanly: a TLS close_notify, so a body that runs to the end of the
    /// connection is not taken for a truncated one.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
        }
        self.flush()
    }
}
