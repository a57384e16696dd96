//! The admin HTTP port: `/metrics` (Prometheus), `/healthz` (the process serves),
//! `/readyz` (the backend reports capacity, so this node takes work), and `/cluster`
//! (every member with state, addresses, load and the age of its last load record,
//! as JSON). Plain HTTP/1.1 and h2c: meant for scrapers, probes and people.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::load::LoadRecord;
use crate::membership::{ClusterView, PeerState};
use crate::mesh::Mesh;
use crate::metrics::ProxyMetrics;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: ProxyMetrics,
    pub mesh: Arc<Mesh>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ClusterReport {
    pub node_id: String,
    pub members: Vec<MemberReport>,
    pub cluster_queue_depth: u64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct MemberReport {
    pub node_id: String,
    pub state: String,
    pub gossip_addr: String,
    pub grpc_addr: String,
    pub generation: u64,
    pub local: bool,
    pub leaving: bool,
    pub load: Option<LoadRecord>,
    /// Seconds since the member's last load record arrived (0 for this node).
    pub load_age_seconds: Option<f64>,
}

pub fn cluster_report(view: &ClusterView) -> ClusterReport {
    let mut members = vec![MemberReport {
        node_id: view.local.node_id.to_string(),
        state: PeerState::Alive.label().into(),
        gossip_addr: view.local.gossip_addr.to_string(),
        grpc_addr: view.local.grpc_addr.to_string(),
        generation: view.local.generation,
        local: true,
        leaving: false,
        load: Some(view.local_load),
        load_age_seconds: Some(0.0),
    }];
    members.extend(view.peers.iter().map(|peer| MemberReport {
        node_id: peer.identity.node_id.to_string(),
        state: peer.state.label().into(),
        gossip_addr: peer.identity.gossip_addr.to_string(),
        grpc_addr: peer.identity.grpc_addr.to_string(),
        generation: peer.identity.generation,
        local: false,
        leaving: peer.leaving,
        load: peer.load,
        load_age_seconds: peer.load_received.map(|at| at.elapsed().as_secs_f64()),
    }));
    ClusterReport {
        node_id: view.local.node_id.to_string(),
        cluster_queue_depth: view.cluster_queue_depth(),
        members,
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn handle(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if state.mesh.view().local_load.max_concurrency > 0 {
                respond(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "backend reports no capacity\n".into(),
                )
            }
        }
        "/cluster" => {
            let report = cluster_report(&state.mesh.view());
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            respond(StatusCode::OK, "application/json", body)
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
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
