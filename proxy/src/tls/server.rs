//! The TLS handshake for connections the proxy accepts (client listener and
//! peer listener).
//!
//! Owns only the handshake: the caller accepts the socket and serves the
//! returned stream. Each handshake uses the config current when it starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::config::{MeshTlsConfig, ServerTlsConfig};
use super::reload::Reloading;

/// Default bound on a handshake, so a client that connects and sends nothing
/// does not hold a task and a socket forever.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection was not accepted. Expected for bad or plaintext clients:
/// log at debug and drop the connection; nothing shared changed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("TLS handshake with {peer:?} failed: {source}")]
    Handshake {
        peer: Option<SocketAddr>,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {peer:?} did not finish within {after:?}")]
    Timeout {
        peer: Option<SocketAddr>,
        after: Duration,
    },
}

/// A connected socket that can name the other end, for handshake errors.
pub trait RemoteAddr {
    fn remote_addr(&self) -> Option<SocketAddr>;
}

impl RemoteAddr for TcpStream {
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

type CurrentConfig = Arc<dyn Fn() -> Arc<ServerConfig> + Send + Sync>;

/// Performs server handshakes with whatever config is current. Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    current: CurrentConfig,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor that asks `current` for the config at every handshake. The
    /// config should offer ALPN `h2`; those built by this module do.
    pub fn new(current: impl Fn() -> Arc<ServerConfig> + Send + Sync + 'static) -> Self {
        Self {
            current: Arc::new(current),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Replaces the handshake bound (default 10 s); must not be zero.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the server handshake on `stream`. A plaintext client, a client whose
    /// certificate the config refuses, or a client that stalls gets an error.
    pub async fn accept<S>(&self, stream: S) -> Result<TlsStream<S>, AcceptError>
    where
        S: AsyncRead + AsyncWrite + Unpin + RemoteAddr,
    {
        let peer = stream.remote_addr();
        let acceptor = tokio_rustls::TlsAcceptor::from((self.current)());
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(source)) => Err(AcceptError::Handshake { peer, source }),
            Err(_) => Err(AcceptError::Timeout {
                peer,
                after: self.handshake_timeout,
            }),
        }
    }
}

/// The leaf certificate the client presented, if any (for logging who connected).
pub fn peer_certificate<S>(stream: &TlsStream<S>) -> Option<CertificateDer<'static>> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()?
        .first()
        .map(|cert| cert.clone().into_owned())
}

impl Reloading<ServerTlsConfig> {
    /// An acceptor for the client listener that follows reloads.
    pub fn acceptor(&self) -> TlsAcceptor {
        let this = self.clone();
        TlsAcceptor::new(move || this.current())
    }
}

impl Reloading<MeshTlsConfig> {
    /// An acceptor for the peer listener: requires a certificate chained to the
    /// mesh CA, and follows reloads.
    pub fn acceptor(&self) -> TlsAcceptor {
        let this = self.clone();
        TlsAcceptor::new(move || this.current().server.clone())
    }
}
