//! Serves the proxy's service stack over HTTP/2 cleartext (h2c) on a bound listener.
//!
//! Every accepted connection gets its own hyper HTTP/2 connection task. Settings follow
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

use crate::body::{ProxyRequest, ProxyResponse};

/// The whole stack, errors already turned into statuses.
pub type EdgeService = tower::util::BoxCloneService<ProxyRequest, ProxyResponse, Infallible>;

/// Streams one client connection may open at once (Bazel opens ~100 per channel).
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Serves `service` on `listener` until `shutdown`, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    service: EdgeService,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .adaptive_window(true)
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
        let hyper_service = HyperAdapter(service.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), hyper_service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
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
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::info!("shutdown grace elapsed; closing remaining connections");
        connections.abort_all();
    }
}

/// hyper's view of the stack. A concrete type with a boxed future, rather than a
/// generic adapter: the compiler can then prove the connection task `Send` without
/// tripping over higher-ranked lifetimes in the boxed error type.
#[derive(Clone)]
struct HyperAdapter(EdgeService);

impl hyper::service::Service<http::Request<Incoming>> for HyperAdapter {
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<ProxyResponse, Infallible>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let service = self.0.clone();
        let request: ProxyRequest = request.map(crate::body::boxed);
        Box::pin(tower::ServiceExt::oneshot(service, request))
    }
}
