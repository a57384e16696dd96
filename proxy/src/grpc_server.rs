//! Serves the proxy's service stack over HTTP/2 on a bound listener: cleartext (h2c)
//! or TLS, as its [`ListenerSecurity`] says (the client port, the shared port or
//! the peer port).
//!
//! Every accepted connection gets its own task: the TLS handshake (bounded in
//! time, so a silent client cannot hold the accept loop), then hyper's HTTP/2
//! connection. The hop header of a connection that is not a mesh peer (see
//! `listener_security`) is removed before routing, and counted, so only peers can
//! mark a request as forwarded. Settings follow
//! what Bazel needs: many concurrent streams per connection, client keep-alive pings
//! allowed (hyper never answers them with GOAWAY), and pings of our own so a vanished
//! client's streams get cleaned up. On shutdown: stop accepting, send GOAWAY, let open
//! streams finish within the grace period.

use std::convert::Infallible;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batched_socket::BatchedSocket;
use crate::body::{ProxyRequest, ProxyResponse};
use crate::edge::Edge;
use crate::flow_control;
use crate::hop::HOP_HEADER;
use crate::listener_security::ListenerSecurity;
use crate::metrics::{ProxyMetrics, label};
use crate::route::Router;
use crate::tls::TlsAcceptor;
use crate::trace_context::TraceContext;

/// The whole stack, errors already turned into statuses. Concrete rather than boxed:
/// hyper serves every request on its own clone of it, and each layer clones by
/// bumping a reference count, where a boxed service would allocate.
pub type EdgeService = TraceContext<Edge<Router>>;

/// Streams one client connection may open at once (Bazel opens ~100 per channel).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Serves `service` on `listener` until `shutdown`, then drains for at most `grace`.
/// Each stream may send `stream_window` bytes ahead of what the proxy has taken.
/// With a TLS `security`, every connection must complete a TLS handshake first;
/// handshakes and served connections are counted on `metrics`.
pub async fn serve(
    listener: TcpListener,
    service: EdgeService,
    security: ListenerSecurity,
    metrics: ProxyMetrics,
    shutdown: CancellationToken,
    grace: Duration,
    stream_window: u32,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(flow_control::CONNECTION_WINDOW)
        .max_frame_size(flow_control::MAX_FRAME)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait for connections to close.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let stream = BatchedSocket::new(stream);
        let builder = builder.clone();
        let service = service.clone();
        let shutdown = shutdown.clone();
        let security = security.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let Some(tls) = security.connection_tls() else {
                count_connection(&metrics, &security);
                let adapter = HyperAdapter {
                    service,
                    trust_hop: security.plaintext_is_peer(),
                    metrics,
                };
                return drive(&builder, TokioIo::new(stream), adapter, peer, shutdown).await;
            };
            // The build current at accept time serves this connection to its end.
            let server = tls.server.clone();
            let acceptor = TlsAcceptor::new(move || server.clone());
            let stream = tokio::select! {
                accepted = acceptor.accept(stream) => match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "TLS handshake refused");
                        count_handshake(&metrics, "refused");
                        return;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let mesh_peer = tls.is_peer(stream.get_ref().1);
            count_handshake(&metrics, if mesh_peer { "mesh" } else { "client" });
            count_connection(&metrics, &security);
            let adapter = HyperAdapter {
                service,
                trust_hop: mesh_peer,
                metrics,
            };
            drive(&builder, TokioIo::new(stream), adapter, peer, shutdown).await;
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::info!("shutdown grace elapsed; closing remaining connections");
        connections.abort_all();
    }
}

fn count_handshake(metrics: &ProxyMetrics, outcome: &'static str) {
    metrics
        .tls_handshakes_total
        .get_or_create(&label("outcome", outcome))
        .inc();
}

fn count_connection(metrics: &ProxyMetrics, security: &ListenerSecurity) {
    metrics
        .grpc_connections_total
        .get_or_create(&label("listener", security.label()))
        .inc();
}

/// Serves one connection until it ends, or until shutdown, then drains it.
async fn drive<I>(
    builder: &hyper::server::conn::http2::Builder<TokioExecutor>,
    io: I,
    adapter: HyperAdapter,
    peer: std::net::SocketAddr,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = builder.serve_connection(io, adapter);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "client connection ended");
            }
            return;
        }
        () = shutdown.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// hyper's view of the stack. A concrete type with a boxed future, rather than a
/// generic adapter: the compiler can then prove the connection task `Send` without
/// tripping over higher-ranked lifetimes in the boxed error type.
#[derive(Clone)]
struct HyperAdapter {
    service: EdgeService,
    /// Whether this connection may mark requests as forwarded (a mesh peer).
    trust_hop: bool,
    /// Counts the hop headers removed from the others.
    metrics: ProxyMetrics,
}

impl hyper::service::Service<http::Request<Incoming>> for HyperAdapter {
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<ProxyResponse, Infallible>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let service = self.service.clone();
        let mut request: ProxyRequest = request.map(crate::body::boxed);
        if !self.trust_hop && request.headers_mut().remove(HOP_HEADER).is_some() {
            self.metrics.hop_headers_ignored_total.inc();
        }
        Box::pin(tower::ServiceExt::oneshot(service, request))
    }
}
