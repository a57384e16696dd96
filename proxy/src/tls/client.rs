//! The TLS handshake for connections the proxy dials (backends, backing caches
//! and peer proxies).
//!
//! Owns choosing the name the server is checked against and the handshake; the
//! caller connects the socket and runs HTTP/2 over the returned stream.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

use super::config::{ClientTlsConfig, MeshTlsConfig};
use super::reload::Reloading;
use super::server::DEFAULT_HANDSHAKE_TIMEOUT;

/// Why an outgoing TLS connection failed. Nothing shared changed; the caller
/// treats it like any connection failure to that upstream.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{host:?} is neither a DNS name nor an IP address")]
    InvalidHost { host: String },
    #[error("TLS handshake with {host} failed: {source}")]
    Handshake {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {host} did not finish within {after:?}")]
    Timeout { host: String, after: Duration },
}

type CurrentConfig = Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>;

/// Performs client handshakes with whatever config is current. Cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    current: CurrentConfig,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector that asks `current` for the config at every handshake.
    pub fn new(current: impl Fn() -> Arc<ClientConfig> + Send + Sync + 'static) -> Self {
        Self {
            current: Arc::new(current),
            server_name: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Checks every server against `name` instead of the host passed to `connect`.
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }

    /// Replaces the handshake bound (default 10 s); must not be zero.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the client handshake on `stream`, offering ALPN `h2`. `host` is what
    /// was dialled (a DNS name or an IP address, IPv6 with or without brackets);
    /// it is the name the certificate is checked against and sent as SNI (rustls
    /// sends no SNI for an IP address), unless a server name was configured.
    pub async fn connect<S>(&self, host: &str, stream: S) -> Result<TlsStream<S>, ConnectError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => parse_host(host)?,
        };
        let connector = tokio_rustls::TlsConnector::from((self.current)());
        match tokio::time::timeout(self.handshake_timeout, connector.connect(name, stream)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(source)) => Err(ConnectError::Handshake {
                host: host.to_owned(),
                source,
            }),
            Err(_) => Err(ConnectError::Timeout {
                host: host.to_owned(),
                after: self.handshake_timeout,
            }),
        }
    }
}

fn parse_host(host: &str) -> Result<ServerName<'static>, ConnectError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| ConnectError::InvalidHost {
        host: host.to_owned(),
    })
}

/// The leaf certificate the server presented (for logging which peer answered).
pub fn server_certificate<S>(stream: &TlsStream<S>) -> Option<CertificateDer<'static>> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()?
        .first()
        .map(|cert| cert.clone().into_owned())
}

impl Reloading<ClientTlsConfig> {
    /// A connector for backends that follows reloads and uses the configured
    /// `server_name`, if any.
    pub fn connector(&self) -> TlsConnector {
        let this = self.clone();
        let connector = TlsConnector::new(move || this.current());
        // `validate` (run by every build, including the first) checked the name.
        match self
            .source()
            .server_name
            .as_deref()
            .and_then(|n| ServerName::try_from(n.to_owned()).ok())
        {
            Some(name) => connector.with_server_name(name),
            None => connector,
        }
    }
}

impl Reloading<MeshTlsConfig> {
    /// A connector for peer proxies: presents this node's certificate, accepts a
    /// peer chained to the mesh CA whatever address it was dialled at, and
    /// follows reloads.
    pub fn connector(&self) -> TlsConnector {
        let this = self.clone();
        TlsConnector::new(move || this.current().client.clone())
    }
}
