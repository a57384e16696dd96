//! The admin HTTP port: `/` (a live status page for people), `/metrics`
//! (Prometheus), `/healthz` (the process serves), `/readyz` (the backend reports
//! capacity, so this node takes work), and `/cluster` (every member with state,
//! addresses, load and the age of its last load record, forwards per peer and recent
//! membership events, as JSON). Plain HTTP/1.1 and h2c: meant for scrapers, probes and
//! people. It only reads cluster state; nothing here changes routing.
//!
//! - `cluster_json`: the `/cluster` report.
//! - `status_page`: the HTML page at `/`, which polls `/cluster`.

pub mod cluster_json;
pub mod status_page;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use cluster_json::{ClusterReport, MemberReport, cluster_report, full_report};

use crate::membership::MembershipEvents;
use crate::mesh::Mesh;
use crate::metrics::ProxyMetrics;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: ProxyMetrics,
    pub mesh: Arc<Mesh>,
    /// Recent membership changes, written by the membership task.
    pub events: MembershipEvents,
    /// When this proxy started, for the uptime shown to people.
    pub started: Instant,
    /// Where clients reach this node (`listen`, or `grpc_advertise`); reported in
    /// `/cluster` because a member's gossiped `grpc_addr` is the peer port when
    /// the node has one.
    pub client_addr: Option<std::net::SocketAddr>,
    /// The address peers dial on the peer port, when the node has one.
    pub peer_addr: Option<std::net::SocketAddr>,
}

impl AdminState {
    /// State for a proxy starting now.
    pub fn new(metrics: ProxyMetrics, mesh: Arc<Mesh>, events: MembershipEvents) -> Self {
        Self {
            metrics,
            mesh,
            events,
            started: Instant::now(),
            client_addr: None,
            peer_addr: None,
        }
    }

    /// Reports this node's client address and, when it has a peer port, the
    /// address peers dial there.
    pub fn with_addresses(
        mut self,
        client: std::net::SocketAddr,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        self.client_addr = Some(client);
        self.peer_addr = peer;
        self
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain", Bytes::from_static(body.as_bytes()))
}

fn handle(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/" => status_page::response(),
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(state.metrics.render()),
        ),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.mesh.view().local_load.max_concurrency > 0 {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backend reports no capacity\n",
                )
            }
        }
        "/cluster" => {
            let mut report = full_report(
                &state.mesh.view(),
                &state.metrics,
                &state.events,
                state.started.elapsed(),
            );
            report.client_addr = state.client_addr.map(|addr| addr.to_string());
            report.peer_addr = state.peer_addr.map(|addr| addr.to_string());
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            let mut response = respond(StatusCode::OK, "application/json", Bytes::from(body));
            // The page polls this: a cached copy would show a frozen cluster.
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "admin accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let response = handle(&state, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin connection");
            }
        });
    }
}
