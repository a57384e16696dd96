//! Tests for `proxy::tls`: real TLS handshakes over 127.0.0.1 sockets, with CAs
//! and certificates generated at test time and written into a temporary directory.
//!
//! This file holds the fixtures; the tests are grouped by concern in the
//! submodules.

mod files_and_config;
mod handshake;
mod http2;
mod mesh;
mod reload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{AcceptError, TlsAcceptor, TlsConnector, peer_certificate};

/// Upper bound for anything a test waits for; generous for a loaded 2-core CI
/// machine, and only reached when the test is failing anyway.
pub(super) const DEADLINE: Duration = Duration::from_secs(20);

pub(super) fn init() {
    super::install_crypto_provider();
}

/// A certificate authority that signs leaves for the tests.
pub(super) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf usable as server and client, with the given SANs (IP addresses
    /// become IP SANs) and serial number.
    pub fn leaf(&self, sans: &[&str], serial: u64) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("leaf {serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A leaf certificate with its key, as PEM and as the DER a handshake shows.
pub(super) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// Writes `tls.crt` and `tls.key` into `dir`, each replaced atomically so a
    /// polling watcher never reads a half-written file by accident.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        write_atomically(&cert, &self.cert_pem);
        write_atomically(&key, &self.key_pem);
        (cert, key)
    }
}

pub(super) fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over target");
}

/// What the echo server saw of one connection.
pub(super) type Accepted = Result<Option<CertificateDer<'static>>, AcceptError>;

/// A TLS echo server on 127.0.0.1:0. Every accepted connection's outcome (the
/// client's certificate, or the handshake error) is sent on the returned channel.
pub(super) async fn spawn_echo_server(
    acceptor: TlsAcceptor,
) -> (SocketAddr, mpsc::UnboundedReceiver<Accepted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(err) => {
                        let _ = tx.send(Err(err));
                        return;
                    }
                };
                let _ = tx.send(Ok(peer_certificate(&tls)));
                let mut buf = [0u8; 1024];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The outcome of the next connection the echo server handled.
pub(super) async fn next_accepted(rx: &mut mpsc::UnboundedReceiver<Accepted>) -> Accepted {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("server saw no connection in time")
        .expect("echo server stopped")
}

/// Dials `addr` and runs the client handshake, checking the certificate against `host`.
pub(super) async fn dial(
    connector: &TlsConnector,
    addr: SocketAddr,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, super::ConnectError> {
    let tcp = TcpStream::connect(addr).await.expect("connect to loopback");
    connector.connect(host, tcp).await
}

/// Sends `msg` and expects it back; an error means the connection is unusable
/// (with TLS 1.3 a refused client certificate surfaces here, after the handshake).
pub(super) async fn echo<S>(stream: &mut S, msg: &[u8]) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let round_trip = async {
        stream.write_all(msg).await?;
        stream.flush().await?;
        let mut back = vec![0u8; msg.len()];
        stream.read_exact(&mut back).await?;
        if back != msg {
            return Err(std::io::Error::other("echo returned different bytes"));
        }
        Ok(())
    };
    tokio::time::timeout(DEADLINE, round_trip)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("echo timed out")))
}

/// Polls `condition` until it holds or `DEADLINE` passes.
pub(super) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
