//! Request routing: which node's backend serves a gRPC call.
//!
//! `Router` is the innermost service of the stack. Pass-through services go to the
//! local backend (`local`); Execute goes where the balancer says (`execute`);
//! WaitExecution and Operations go to the node their operation name names
//! (`operations`). The cluster is seen only through `PeerRouting`, so this module
//! never touches membership state and tests can route against a fixed table.

pub mod execute;
pub mod in_flight;
pub mod local;
pub mod operations;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::body::{BoxError, ProxyRequest, ProxyResponse};
use crate::channel::Http2Channel;
use crate::grpc_method::GrpcMethod;
use crate::load::OpenExecutions;
use crate::metrics::ProxyMetrics;
use crate::operation_name::{NodeId, OperationNameError};
use crate::stream_pool::StreamPool;
use crate::wire::request_message::ExecuteRouting;
pub use in_flight::InFlight;

/// Where one attempt at an Execute goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Peer(NodeId),
}

/// How a forward to a peer ended, for metrics and the balancer's own accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The peer answered with a stream: the operation is its now.
    Accepted,
    /// The peer answered at once with a retryable status (busy, shutting down).
    Refused,
    /// The request never got an answer (connect failure, reset).
    Failed,
}

impl ForwardOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// The router's view of the cluster.
pub trait PeerRouting: Send + Sync + 'static {
    /// Targets to try for this Execute, best first; `Target::Local` may appear
    /// anywhere (the router appends it when absent, as the last resort).
    fn execute_candidates(&self, routing: &ExecuteRouting) -> Vec<Target>;
    /// The pooled connections to a current member's proxy; `None` when `node` is not a
    /// live member (then its operations are gone as far as clients are concerned).
    fn peer_channel(&self, node: &NodeId) -> Option<Arc<StreamPool>>;
    /// Called as an Execute is sent to `target`, before any answer: a burst of
    /// Executes decided within one gossip round must see each other. The guard is
    /// held until the Execute's stream ends.
    fn sending(&self, target: &Target) -> InFlight;
    /// Called after every forward attempt to a peer.
    fn record_forward(&self, node: &NodeId, outcome: ForwardOutcome);
}

/// A cluster of one: everything runs locally.
pub struct SingleNode;

impl PeerRouting for SingleNode {
    fn execute_candidates(&self, _: &ExecuteRouting) -> Vec<Target> {
        vec![Target::Local]
    }
    fn peer_channel(&self, _: &NodeId) -> Option<Arc<StreamPool>> {
        None
    }
    fn sending(&self, _: &Target) -> InFlight {
        InFlight::untracked()
    }
    fn record_forward(&self, _: &NodeId, _: ForwardOutcome) {}
}

/// Why a request could not be routed. The edge maps each to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    BadOperationName(#[from] OperationNameError),
    #[error("operation owner {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    #[error("operation owner {node} is unreachable: {reason}")]
    OwnerUnreachable { node: NodeId, reason: String },
    #[error("no node could take the Execute")]
    NoCandidate,
    #[error("method {0} is not served by this proxy")]
    Unimplemented(String),
}

/// Everything the routes share.
pub struct RouterConfig {
    pub node_id: NodeId,
    pub backend: Arc<Http2Channel>,
    /// The local backend again, on connections of their own for Execute and
    /// WaitExecution streams, which stay open while actions wait and run.
    pub backend_streams: Arc<StreamPool>,
    pub peers: Arc<dyn PeerRouting>,
    /// Bound on a buffered request message and on one renamed response message.
    pub max_message_bytes: usize,
    /// Pass methods the proxy does not know to the backend instead of UNIMPLEMENTED.
    pub pass_unknown_methods: bool,
    /// Generic backends: the count of open local Execute streams is the load.
    pub open_executions: Option<OpenExecutions>,
    pub metrics: ProxyMetrics,
}

struct RouterState {
    config: RouterConfig,
    /// `remesh/<node_id>/`, put in front of every name the local backend returns.
    name_prefix: Bytes,
}

/// The innermost service: routes one request and returns the upstream's response.
#[derive(Clone)]
pub struct Router {
    state: Arc<RouterState>,
}

impl Router {
    pub fn new(config: RouterConfig) -> Self {
        let name_prefix = Bytes::from(config.node_id.name_prefix());
        Self {
            state: Arc::new(RouterState {
                config,
                name_prefix,
            }),
        }
    }

    /// Execute and the calls by operation name are boxed: their futures are larger
    /// than a pass-through's, and unboxed they would set the size of every request's
    /// future, which is moved and copied per call.
    async fn route(self, request: ProxyRequest) -> Result<ProxyResponse, BoxError> {
        let method = GrpcMethod::from_path(request.uri().path());
        match method {
            GrpcMethod::PassThrough => self.forward_local(request, None).await,
            GrpcMethod::Execute => Box::pin(self.execute(request)).await,
            GrpcMethod::ListOperations => {
                self.forward_local(
                    request,
                    Some(crate::wire::operation_rewrite::OperationShape::List),
                )
                .await
            }
            GrpcMethod::WaitExecution
            | GrpcMethod::GetOperation
            | GrpcMethod::CancelOperation
            | GrpcMethod::DeleteOperation => {
                Box::pin(self.by_operation_name(method, request)).await
            }
            GrpcMethod::Unknown if self.state.config.pass_unknown_methods => {
                self.forward_local(request, None).await
            }
            GrpcMethod::Unknown => {
                Err(RouteError::Unimplemented(request.uri().path().to_owned()).into())
            }
        }
    }
}

impl tower::Service<ProxyRequest> for Router {
    type Response = ProxyResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<ProxyResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Always ready: back-pressure comes from HTTP/2 flow control and the
        // connection's stream limit, and each request's upstream is only known
        // once it is read.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ProxyRequest) -> Self::Future {
        Box::pin(self.clone().route(request))
    }
}

/// A copy of a request head (extensions aside) for a re-sent body. The body is
/// rebuilt by the proxy, so a `content-length` from the client no longer applies
/// (HTTP/2 resets a stream whose length disagrees with it).
pub(crate) fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.headers_mut().remove(http::header::CONTENT_LENGTH);
    request.into_parts().0
}
