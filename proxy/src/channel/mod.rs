//! Multiplexed HTTP/2 connections to one upstream: the local backend or a peer's
//! proxy. Cleartext (h2c) by default; over TLS when the settings carry a connector
//! (`grpcs://` backends with `[backend_tls]`, peers with `[mesh_tls]`).
//!
//! Connected lazily, shared by every stream to that upstream, and re-established when
//! the previous connection closed. A request that never reached a dead connection is
//! retried once on a fresh one, which keeps a backend restart invisible to clients.
//! Dropping the channel (a peer that left) closes the connection once in-flight
//! streams end; `close` (a peer declared down) ends them at once.
//!
//! The client side is h2's own, under hyper's server: `connection` dials and drives
//! a connection (keep-alive included), `request_body` sends a request's body,
//! `response_body` reads the upstream's answer.

mod connection;
mod request_body;
mod response_body;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body::Body as _;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::body::ProxyRequest;
use crate::tls::TlsConnector;
use connection::{Connection, Handle};
use response_body::OpenStreamGuard;
pub use response_body::UpstreamBody;

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
    Handshake { endpoint: String, source: h2::Error },
    #[error("request to {endpoint}: {}", error_chain(source))]
    Request { endpoint: String, source: h2::Error },
    #[error("bad request URI: {0}")]
    Uri(#[from] http::Error),
    #[error("{endpoint:?} is not a host and port a request can name")]
    BadAuthority { endpoint: String },
    #[error("{endpoint} was declared down; its connection is closed")]
    Closed { endpoint: String },
}

/// An error and its causes on one line: an outer message says little without the
/// reason beneath it.
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
    /// While a stream is open, a PING this often; one unanswered this long ends the
    /// connection, so that an upstream that vanished without closing is noticed.
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
    connections: Vec<Mutex<Option<Connection>>>,
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
    ///
    /// h2 directly, not hyper's client: hyper hands each request to its connection
    /// task through a channel and spawns two tasks per request (the body's pump and
    /// the response's hand-over), where here the request's own task opens the stream
    /// and awaits the answer. With what has already arrived of the body sent at once,
    /// a unary call spawns nothing.
    pub async fn send(
        &self,
        request: ProxyRequest,
    ) -> Result<http::Response<UpstreamBody>, ChannelError> {
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
        let slot =
            &self.connections[self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len()];
        let (mut sender, open) = self.ready_sender(slot).await?;
        let end_of_stream = body.is_end_stream();
        let head = http::Request::from_parts(parts, ());
        let (response, stream) = sender
            .send_request(head, end_of_stream)
            .map_err(|source| self.request_error(source))?;
        let open = OpenStreamGuard::new(&open);
        if !end_of_stream {
            request_body::send(body, stream);
        }
        let response = response
            .await
            .map_err(|source| self.request_error(source))?;
        Ok(response.map(|stream| UpstreamBody::new(stream, open)))
    }

    /// A connection ready for a new stream. One that turns out dead is forgotten and
    /// a fresh one dialled once: no request was written to it, so a backend restart
    /// stays invisible to clients.
    async fn ready_sender(
        &self,
        slot: &Mutex<Option<Connection>>,
    ) -> Result<(h2::client::SendRequest<bytes::Bytes>, Arc<AtomicUsize>), ChannelError> {
        let mut attempt = 0;
        loop {
            let Handle { sender, open } = self.connected(slot).await?;
            match sender.ready().await {
                Ok(sender) => return Ok((sender, open)),
                Err(source) => {
                    forget(slot, &open).await;
                    attempt += 1;
                    if attempt == 2 {
                        return Err(self.request_error(source));
                    }
                }
            }
        }
    }

    fn request_error(&self, source: h2::Error) -> ChannelError {
        ChannelError::Request {
            endpoint: self.authority.clone(),
            source,
        }
    }

    async fn connected(&self, slot: &Mutex<Option<Connection>>) -> Result<Handle, ChannelError> {
        if self.closed.is_cancelled() {
            return Err(ChannelError::Closed {
                endpoint: self.authority.clone(),
            });
        }
        // Held across the dial so that concurrent first requests share one connection.
        let mut guard = slot.lock().await;
        if let Some(connection) = guard.as_ref()
            && !connection.is_ended()
        {
            return Ok(connection.handle());
        }
        // Boxed: dialling (TCP, TLS, the HTTP/2 handshake) is a future of several KiB
        // that would otherwise sit inside every request's future, to be moved and
        // copied per call, though it runs only when a connection is made.
        let dial = connection::dial(
            &self.endpoint,
            &self.authority,
            &self.settings,
            &self.closed,
        );
        let connection = Box::pin(dial).await?;
        let handle = connection.handle();
        *guard = Some(connection);
        Ok(handle)
    }
}

/// Forgets a slot's connection if it is still the one that failed (`failed`, a
/// handle's stream count, names it), so the next request dials anew.
async fn forget(slot: &Mutex<Option<Connection>>, failed: &Arc<AtomicUsize>) {
    let mut guard = slot.lock().await;
    if guard
        .as_ref()
        .is_some_and(|current| Arc::ptr_eq(&current.open, failed) || current.is_ended())
    {
        guard.take();
    }
}

#[cfg(test)]
mod tests;
