//! One HTTP/2 client connection: dialled (TCP, then TLS if configured), handshaken
//! with the proxy's fixed windows, and driven by a task of its own until it fails,
//! its last handle and stream are gone, or the channel is closed.
//!
//! Keep-alive: while a stream is open, a PING goes out every interval, and a PING
//! unanswered for another interval ends the connection and every stream on it, so a
//! request to an upstream that vanished without closing its sockets fails instead
//! of hanging. An idle connection sends nothing (gRPC servers count pings on
//! connections without calls as abuse).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Ping, PingPong};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{ChannelError, ChannelSettings, Endpoint, error_chain};
use crate::batched_socket::BatchedSocket;
use crate::flow_control;

/// Streams the proxy opens on a new connection before the server's SETTINGS say how
/// many it allows (what most servers allow at least).
const INITIAL_MAX_STREAMS: usize = 100;

/// The largest header block (headers or trailers) accepted from an upstream.
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// Bytes one stream may hold queued for sending beyond the upstream's window.
const MAX_SEND_BUFFER: usize = 1024 * 1024;

/// A live connection as a channel keeps it.
pub(super) struct Connection {
    /// Shared, so that the connection's task can tell (by a weak reference) whether
    /// the channel still holds it when it ends.
    pub(super) sender: Arc<SendRequest<Bytes>>,
    /// Streams open on it, by their response bodies (see `OpenStreamGuard`).
    pub(super) open: Arc<AtomicUsize>,
    /// Cancelled when the connection's task ends, for any reason.
    pub(super) ended: CancellationToken,
}

/// What one request takes of a connection.
pub(super) struct Handle {
    pub(super) sender: SendRequest<Bytes>,
    pub(super) open: Arc<AtomicUsize>,
}

impl Connection {
    pub(super) fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    pub(super) fn handle(&self) -> Handle {
        Handle {
            sender: SendRequest::clone(&self.sender),
            open: self.open.clone(),
        }
    }
}

/// Dials `endpoint` and starts its connection task. `closed` is the channel's: once
/// cancelled, the connection ends with every stream on it.
pub(super) async fn dial(
    endpoint: &Endpoint,
    authority: &str,
    settings: &ChannelSettings,
    closed: &CancellationToken,
) -> Result<Connection, ChannelError> {
    let after = settings.connect_timeout;
    let connect = TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let stream = tokio::time::timeout(after, connect)
        .await
        .map_err(|_| ChannelError::ConnectTimeout {
            endpoint: authority.to_owned(),
            after,
        })?
        .map_err(|source| ChannelError::Connect {
            endpoint: authority.to_owned(),
            source,
        })?;
    // Small gRPC messages must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let stream = BatchedSocket::new(stream);
    match &settings.tls {
        None => handshake(stream, authority, settings, closed).await,
        Some(connector) => {
            let tls = connector
                .connect(&endpoint.host, stream)
                .await
                .map_err(|source| ChannelError::Tls {
                    endpoint: authority.to_owned(),
                    source,
                })?;
            handshake(tls, authority, settings, closed).await
        }
    }
}

/// HTTP/2 over a connected (and, if configured, TLS-wrapped) stream.
async fn handshake<I>(
    io: I,
    authority: &str,
    settings: &ChannelSettings,
    closed: &CancellationToken,
) -> Result<Connection, ChannelError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, mut connection) = h2::client::Builder::new()
        .initial_max_send_streams(INITIAL_MAX_STREAMS)
        .initial_window_size(flow_control::STREAM_WINDOW)
        .initial_connection_window_size(flow_control::CONNECTION_WINDOW)
        .max_frame_size(flow_control::MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|source| ChannelError::Handshake {
            endpoint: authority.to_owned(),
            source,
        })?;
    let open = Arc::new(AtomicUsize::new(0));
    // A child of the channel's token: `close` ends this connection too.
    let ended = closed.child_token();
    let unanswered = CancellationToken::new();
    if let Some(ping_pong) = connection.ping_pong() {
        tokio::spawn(keep_alive(
            ping_pong,
            open.clone(),
            settings.keepalive_interval,
            ended.clone(),
            unanswered.clone(),
        ));
    }
    let sender = Arc::new(sender);
    let handles = Arc::downgrade(&sender);
    let endpoint = authority.to_owned();
    let failures = settings.failures.clone();
    let closed = closed.clone();
    let task_ended = ended.clone();
    tokio::spawn(async move {
        tokio::select! {
            // A failure here failed every stream still open on the connection (an
            // upstream that crashed, an HTTP/2 protocol error such as too many
            // resets): worth an operator's eye.
            result = &mut connection => {
                let failure = match result {
                    Err(error) => Some(error),
                    Ok(()) => unannounced_end(&handles),
                };
                if let Some(error) = failure {
                    failures.inc();
                    let error = error_chain(&error);
                    tracing::warn!(%endpoint, %error, "upstream connection failed");
                }
            },
            // Dropping the connection fails its open streams.
            () = task_ended.cancelled() => {
                if unanswered.is_cancelled() {
                    failures.inc();
                    tracing::warn!(%endpoint, "upstream connection failed: keep-alive ping unanswered");
                } else if closed.is_cancelled() {
                    tracing::info!(%endpoint, "closing the connection to a peer declared down");
                }
            }
        }
        task_ended.cancel();
    });
    Ok(Connection {
        sender,
        open,
        ended,
    })
}

/// Why a connection that ended without an error still failed: h2 ends a client
/// connection quietly when the upstream closes its socket, and that is a failure
/// unless the upstream said goodbye (GOAWAY) first. One the channel no longer
/// holds ended because it was let go.
fn unannounced_end(handles: &Weak<SendRequest<Bytes>>) -> Option<h2::Error> {
    let mut sender = SendRequest::clone(&*handles.upgrade()?);
    let mut cx = Context::from_waker(Waker::noop());
    match sender.poll_ready(&mut cx) {
        Poll::Ready(Err(error)) if !error.is_go_away() => Some(error),
        _ => None,
    }
}

/// Pings while streams are open; cancels `ended` (after `unanswered`) when a ping
/// goes unanswered for `interval`. Returns once the connection has ended.
async fn keep_alive(
    mut ping_pong: PingPong,
    open: Arc<AtomicUsize>,
    interval: Duration,
    ended: CancellationToken,
    unanswered: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ended.cancelled() => return,
        }
        if open.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let pong = tokio::time::timeout(interval, ping_pong.ping(Ping::opaque()));
        tokio::select! {
            answered = pong => match answered {
                Ok(Ok(_pong)) => {}
                // The connection is gone; its task says why.
                Ok(Err(_)) => return,
                Err(_elapsed) => {
                    unanswered.cancel();
                    ended.cancel();
                    return;
                }
            },
            () = ended.cancelled() => return,
        }
    }
}
