//! Prometheus metrics of one executor and the plain-HTTP `/metrics` endpoint.
//!
//! `Metrics` is cheap to clone (every field is an `Arc` inside); each subsystem records
//! into the fields it owns. Names follow Prometheus conventions: `_total` for counters,
//! base units (bytes, seconds).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A label set with one `outcome` label.
pub type OutcomeLabels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Blobs and bytes in the local CAS right now.
    pub cas_blobs: Gauge,
    pub cas_bytes: Gauge,
    /// Blobs evicted to stay under `cas_max_bytes`.
    pub cas_evictions_total: Counter,
    /// Blobs fetched from the backing cache on a local miss.
    pub backing_fetches_total: Counter,
    /// Actions waiting for a runner, and running.
    pub actions_queued: Gauge,
    pub actions_executing: Gauge,
    /// Finished executions by outcome: `success`, `nonzero_exit`, `timeout`,
    /// `cancelled`, `error`, `cache_hit`, `merged`.
    pub executions_total: Family<OutcomeLabels, Counter>,
    /// Wall time of actions on a runner, in seconds.
    pub action_duration_seconds: Histogram,
    /// gRPC requests by method and status code.
    pub grpc_requests_total: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("remesh_executor");
        let metrics_without_registry = (
            Gauge::default(),
            Gauge::default(),
            Counter::default(),
            Counter::default(),
            Gauge::default(),
            Gauge::default(),
            Family::<OutcomeLabels, Counter>::default(),
            Histogram::new(exponential_buckets(0.005, 2.0, 18)),
            Family::<OutcomeLabels, Counter>::default(),
        );
        let (
            cas_blobs,
            cas_bytes,
            cas_evictions_total,
            backing_fetches_total,
            actions_queued,
            actions_executing,
            executions_total,
            action_duration_seconds,
            grpc_requests_total,
        ) = metrics_without_registry;
        registry.register("cas_blobs", "Blobs in the local CAS", cas_blobs.clone());
        registry.register("cas_bytes", "Bytes in the local CAS", cas_bytes.clone());
        registry.register(
            "cas_evictions",
            "Blobs evicted from the local CAS",
            cas_evictions_total.clone(),
        );
        registry.register(
            "backing_fetches",
            "Blobs fetched from the backing cache on a local miss",
            backing_fetches_total.clone(),
        );
        registry.register(
            "actions_queued",
            "Actions waiting for a runner",
            actions_queued.clone(),
        );
        registry.register(
            "actions_executing",
            "Actions running now",
            actions_executing.clone(),
        );
        registry.register(
            "executions",
            "Finished executions by outcome",
            executions_total.clone(),
        );
        registry.register(
            "action_duration_seconds",
            "Wall time of actions on a runner",
            action_duration_seconds.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests by method and code",
            grpc_requests_total.clone(),
        );
        Self {
            registry: Arc::new(registry),
            cas_blobs,
            cas_bytes,
            cas_evictions_total,
            backing_fetches_total,
            actions_queued,
            actions_executing,
            executions_total,
            action_duration_seconds,
            grpc_requests_total,
        }
    }

    /// Counts one finished execution.
    pub fn execution(&self, outcome: &str) {
        self.executions_total
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// Counts one gRPC request.
    pub fn grpc_request(&self, method: &str, code: tonic::Code) {
        let labels = vec![("method", method.to_owned()), ("code", format!("{code:?}"))];
        self.grpc_requests_total.get_or_create(&labels).inc();
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Serves `GET /metrics` (anything else: 404) until `shutdown` fires.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let metrics = metrics.clone();
            async move { Ok::<_, Infallible>(respond(&request, &metrics)) }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended");
            }
        });
    }
}

fn respond(request: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
