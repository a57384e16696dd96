//! One multiplexed HTTP/2 connection to one upstream: the local backend or a peer's
//! proxy. Cleartext (h2c) by default; over TLS when the settings carry a connector
//! (`grpcs://` backends with `[backend_tls]`, peers with `[mesh_tls]`).
//!
//! Connected lazily, shared by every stream to that upstream, and re-established when
//! the previous connection closed. A request that never reached a dead connection is
//! retried once on a fresh one, which keeps a backend restart invisible to clients.
//! Dropping the channel (a peer that left) closes the connection once in-flight
//! streams end; `close` (a peer declared down) ends them at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::batched_socket::BatchedSocket;
use crate::body::{ProxyBody, ProxyRequest};
use crate::flow_control;
use crate::tls::TlsConnector;

/// Where an upstream listens: host (name or IP) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Written as `grpcs://`: the upstream expects TLS.
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{0:?} must look like grpc://host:port or grpcs://host:port")]
    Malformed(String),
}

impl Endpoint {
    /// Parses `grpc://host:port`, `grpcs://host:port` (or a bare `host:port`);
    /// `[::1]:80` style IPv6 works.
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let malformed = || EndpointError::Malformed(url.to_owned());
        let (rest, tls) = match url.strip_prefix("grpcs://") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("grpc://").unwrap_or(url), false),
        };
        let authority: http::uri::Authority = rest.parse().map_err(|_| malformed())?;
        if authority.as_str() != rest {
            return Err(malformed());
        }
        let port = authority.port_u16().ok_or_else(malformed)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// A peer's gRPC address; whether it is dialled over TLS is the settings' choice.
    pub fn from_addr(addr: std::net::SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: false,
        }
    }

    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a request did not reach the upstream (or its answer did not come back).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("connecting to {endpoint}: timed out after {after:?}")]
    ConnectTimeout { endpoint: String, after: Duration },
    #[error("TLS with {endpoint}: {source}")]
    Tls {
        endpoint: String,
        source: crate::tls::ConnectError,
    },
    #[error("HTTP/2 handshake with {endpoint}: {}", error_chain(source))]
    Handshake {
        endpoint: String,
        source: hyper::Error,
    },
    #[error("request to {endpoint}: {}", error_chain(source))]
    Request {
        endpoint: String,
        source: hyper::Error,
    },
    #[error("bad request URI: {0}")]
    Uri(#[from] http::Error),
    #[error("{endpoint:?} is not a host and port a request can name")]
    BadAuthority { endpoint: String },
    #[error("{endpoint} was declared down; its connection is closed")]
    Closed { endpoint: String },
}

/// An error and its causes on one line: hyper's own message ("http2 error") says
/// little without the h2 reason beneath it.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl ChannelError {
    /// Whether the failure happened before any request reached the upstream (no
    /// connection could be made), as opposed to one lost in flight.
    pub fn never_reached_upstream(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::ConnectTimeout { .. }
                | Self::Tls { .. }
                | Self::Handshake { .. }
                | Self::Closed { .. }
        )
    }
}

/// Tuning shared by every upstream connection.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub connect_timeout: Duration,
    /// Pings on an otherwise quiet connection, so that a dead upstream is noticed.
    pub keepalive_interval: Duration,
    /// TLS for every connection made with these settings; `None` is h2c.
    pub tls: Option<TlsConnector>,
    /// Counts connections that end with an error.
    pub failures: Counter,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(20),
            tls: None,
            failures: Counter::default(),
        }
    }
}

pub struct Http2Channel {
    endpoint: Endpoint,
    authority: String,
    /// `authority` parsed once, with the scheme, for every request's URI.
    uri_base: Option<(http::uri::Scheme, http::uri::Authority)>,
    settings: ChannelSettings,
    /// One slot per connection; requests take them in turn.
    connections: Vec<Mutex<Option<SendRequest<ProxyBody>>>>,
    next: AtomicUsize,
    /// Cancelled by `close`: every connection task ends, and with it every stream.
    closed: CancellationToken,
}

impl Http2Channel {
    /// One connection: what a peer gets (its proxy allows 1,000 streams on it).
    pub fn new(endpoint: Endpoint, settings: ChannelSettings) -> Self {
        Self::with_connections(endpoint, settings, 1)
    }

    /// `count` connections used in turn. For a backend whose server caps concurrent
    /// streams per connection (hyper's default is 200): long Execute streams must not
    /// fill the one connection and make every CAS call wait behind them.
    pub fn with_connections(endpoint: Endpoint, settings: ChannelSettings, count: usize) -> Self {
        let authority = endpoint.authority();
        let scheme = if settings.tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let uri_base = http::uri::Authority::try_from(authority.as_str())
            .ok()
            .map(|parsed| (scheme, parsed));
        Self {
            authority,
            uri_base,
            endpoint,
            settings,
            connections: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            closed: CancellationToken::new(),
        }
    }

    /// Ends every connection now, and with them the streams still open on them:
    /// their clients get UNAVAILABLE instead of waiting for keep-alive pings to time
    /// out on a host that vanished. Later requests fail without dialling.
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `request` (its path kept, scheme and authority replaced) and returns the
    /// upstream's response head; the body streams on.
    pub async fn send(
        &self,
        request: ProxyRequest,
    ) -> Result<http::Response<Incoming>, ChannelError> {
        let (mut parts, body) = request.into_parts();
        let Some((scheme, authority)) = self.uri_base.clone() else {
            return Err(ChannelError::BadAuthority {
                endpoint: self.authority.clone(),
            });
        };
        // The path moves over as it is; nothing is parsed again.
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(scheme);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = http::Uri::from_parts(uri).map_err(http::Error::from)?;
        let mut request = http::Request::from_parts(parts, body);
        let slot =
            &self.connections[self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len()];
        for attempt in 0..2 {
            let mut sender = self.connected_sender(slot).await?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    // Never written to the connection: safe to resend on a new one.
                    Some(unsent) if attempt == 0 => {
                        forget(slot, &sender).await;
                        request = unsent;
                    }
                    _ => {
                        forget(slot, &sender).await;
                        return Err(ChannelError::Request {
                            endpoint: self.authority.clone(),
                            source: error.into_error(),
                        });
                    }
                },
            }
        }
        unreachable!("the second attempt always returns")
    }

    async fn connected_sender(
        &self,
        slot: &Mutex<Option<SendRequest<ProxyBody>>>,
    ) -> Result<SendRequest<ProxyBody>, ChannelError> {
        if self.closed.is_cancelled() {
            return Err(ChannelError::Closed {
                endpoint: self.authority.clone(),
            });
        }
        // Held across the dial so that concurrent first requests share one connection.
        let mut guard = slot.lock().await;
        if let Some(sender) = guard.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        // Boxed: dialling (TCP, TLS, the HTTP/2 handshake) is a future of several KiB
        // that would otherwise sit inside every request's future, to be moved and
        // copied per call, though it runs only when a connection is made.
        let sender = Box::pin(self.dial()).await?;
        *guard = Some(sender.clone());
        Ok(sender)
    }

    async fn dial(&self) -> Result<SendRequest<ProxyBody>, ChannelError> {
        let endpoint = self.authority.clone();
        let after = self.settings.connect_timeout;
        let connect = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port));
        let stream = tokio::time::timeout(after, connect)
            .await
            .map_err(|_| ChannelError::ConnectTimeout {
                endpoint: endpoint.clone(),
                after,
            })?
            .map_err(|source| ChannelError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        // Small gRPC messages must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let stream = BatchedSocket::new(stream);
        match &self.settings.tls {
            None => self.handshake(TokioIo::new(stream)).await,
            Some(connector) => {
                let tls = connector
                    .connect(&self.endpoint.host, stream)
                    .await
                    .map_err(|source| ChannelError::Tls {
                        endpoint: endpoint.clone(),
                        source,
                    })?;
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    /// HTTP/2 over a connected (and, if configured, TLS-wrapped) stream.
    async fn handshake<I>(&self, io: I) -> Result<SendRequest<ProxyBody>, ChannelError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let endpoint = self.authority.clone();
        let (mut sender, connection) = http2::Builder::new(ClosingExecutor {
            closed: self.closed.clone(),
            connection_spawned: Arc::default(),
        })
        .timer(TokioTimer::new())
        .initial_stream_window_size(flow_control::STREAM_WINDOW)
        .initial_connection_window_size(flow_control::CONNECTION_WINDOW)
        .max_frame_size(flow_control::MAX_FRAME)
        .keep_alive_interval(self.settings.keepalive_interval)
        .keep_alive_timeout(self.settings.keepalive_interval)
        .handshake(io)
        .await
        .map_err(|source| ChannelError::Handshake {
            endpoint: endpoint.clone(),
            source,
        })?;
        let closed = self.closed.clone();
        let failures = self.settings.failures.clone();
        tokio::spawn(async move {
            tokio::select! {
                // An error here failed every stream still open on the connection
                // (an upstream that crashed, a keep-alive timeout, an HTTP/2
                // protocol error such as too many resets): worth an operator's eye.
                result = connection => if let Err(error) = result {
                    failures.inc();
                    let error = error_chain(&error);
                    tracing::warn!(%endpoint, %error, "upstream connection failed");
                },
                // Dropping the connection fails its open streams.
                () = closed.cancelled() => {
                    tracing::info!(%endpoint, "closing the connection to a peer declared down");
                }
            }
        });
        sender
            .ready()
            .await
            .map_err(|source| ChannelError::Handshake {
                endpoint: self.authority.clone(),
                source,
            })?;
        Ok(sender)
    }
}

/// Spawns hyper's tasks for one connection so that `Http2Channel::close` can end
/// them: hyper drives the HTTP/2 connection in a task of its own, out of reach of the
/// handle it returns. Dropping that task drops the HTTP/2 state, which fails every
/// open stream.
///
/// Only that first task is raced against `closed`. hyper spawns it during the
/// handshake, before a request can exist; every later task belongs to one request
/// (its body's pump, its response) and ends with an error once the connection is
/// gone. Racing those too cost each request a registration on the token and its
/// removal: without it, 0.97× the proxy's CPU per call at concurrency 64 (three
/// runs of `bench passthrough`). Should hyper ever spawn something else first, the
/// connection would outlive `close`: `peer_down_streams` fails then (checked).
#[derive(Clone)]
struct ClosingExecutor {
    closed: CancellationToken,
    /// Shared by the clones hyper makes of one handshake's executor.
    connection_spawned: Arc<AtomicBool>,
}

impl<F> hyper::rt::Executor<F> for ClosingExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        if self.connection_spawned.swap(true, Ordering::Relaxed) {
            tokio::spawn(future);
            return;
        }
        let closed = self.closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = future => {}
                () = closed.cancelled() => {}
            }
        });
    }
}

/// Forgets a slot's connection once it is closed, so the next request dials anew.
async fn forget(slot: &Mutex<Option<SendRequest<ProxyBody>>>, failed: &SendRequest<ProxyBody>) {
    let mut guard = slot.lock().await;
    if guard
        .as_ref()
        .is_some_and(|current| current.is_closed() || failed.is_closed())
    {
        guard.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let parsed = Endpoint::parse("grpc://127.0.0.1:8980").unwrap();
        assert_eq!((parsed.host.as_str(), parsed.port), ("127.0.0.1", 8980));
        let parsed = Endpoint::parse("grpc://[::1]:1").unwrap();
        assert_eq!(
            (parsed.host.as_str(), parsed.authority()),
            ("::1", "[::1]:1".into())
        );
        let parsed = Endpoint::parse("backend.ns.svc:8980").unwrap();
        assert_eq!(parsed.host, "backend.ns.svc");
        assert!(!parsed.tls);
        let parsed = Endpoint::parse("grpcs://cache.internal:443").unwrap();
        assert_eq!(
            (parsed.host.as_str(), parsed.port, parsed.tls),
            ("cache.internal", 443, true)
        );
        for bad in [
            "grpc://host",
            "grpc://:80",
            "grpc://a:b",
            "grpc://h:1/path",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
