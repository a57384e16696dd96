//! The proxy's Prometheus metrics. `ProxyMetrics` is cheap to clone; each subsystem
//! records into the families it owns (the edge: requests; routing: forwards;
//! membership: members, gossip; load: queue depths). Served by `admin`.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label pairs; a `Vec` keeps the families' types simple.
pub type Labels = Vec<(&'static str, String)>;

/// `method` and `code` of a finished request: both static, so counting a request
/// allocates nothing (it happens once per call on the hot path).
pub type RequestLabels = [(&'static str, &'static str); 2];

/// The labels a request that ended with `code` is counted under.
pub fn request_labels(method: &'static str, code: tonic::Code) -> RequestLabels {
    [("method", method), ("code", code_name(code))]
}

/// The gRPC status name, as in the spec and tonic's `Debug` (`NotFound`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[derive(Clone)]
pub struct ProxyMetrics {
    registry: Arc<Registry>,
    /// Finished gRPC requests by `method` and `code` (the gRPC status name).
    pub requests_total: Family<RequestLabels, Counter>,
    /// Execute forwards by `peer` and `outcome` (`accepted`, `refused`, `failed`).
    pub forwards_total: Family<Labels, Counter>,
    /// Members by `state` (`alive`, `suspect`, `down`), this node included.
    pub members: Family<Labels, Gauge>,
    /// Membership changes by `event` (`join`, `suspect`, `down`, `leave`).
    pub membership_events_total: Family<Labels, Counter>,
    /// This node's queued actions, and the sum over every live member.
    pub local_queue_depth: Gauge,
    pub cluster_queue_depth: Gauge,
    /// Gossip datagrams and bytes by `direction` (`sent`, `received`).
    pub gossip_packets_total: Family<Labels, Counter>,
    pub gossip_bytes_total: Family<Labels, Counter>,
    /// TLS handshakes on the gRPC listeners by `outcome` (`mesh`, `client`, `refused`).
    pub tls_handshakes_total: Family<Labels, Counter>,
    /// Connections served (past any TLS handshake) by `listener` (`client`: the
    /// `listen` port, which peers share when there is no peer port; `peer`:
    /// `peer_listen`).
    pub grpc_connections_total: Family<Labels, Counter>,
    /// Requests whose `x-remesh-hop` header was removed because their connection
    /// may not mark requests as forwarded (a client, or a peer on the wrong port).
    pub hop_headers_ignored_total: Counter,
    /// Connections to upstreams that ended with an error, failing the streams open
    /// on them, by `upstream` (`backend`, `peer`).
    pub upstream_connection_failures_total: Family<Labels, Counter>,
    /// Questions the fill endpoint answered for the local executor, by `method`
    /// (`find_missing`, `read`, `get_action_result`) and `outcome` (`hit`: a peer
    /// had it; `miss`: none did).
    pub fill_requests_total: Family<Labels, Counter>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyMetrics {
    pub fn new() -> Self {
        Self::with_collectors(Vec::new())
    }

    /// Also reports `collectors` (read at each scrape: gossip seal and TLS reload
    /// counters kept by their own subsystems).
    pub fn with_collectors(
        collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
    ) -> Self {
        let mut registry = Registry::with_prefix("remesh_proxy");
        for collector in collectors {
            registry.register_collector(collector);
        }
        let tls_handshakes_total = Family::<Labels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes on the gRPC listeners by outcome (mesh, client, refused)",
            tls_handshakes_total.clone(),
        );
        let grpc_connections_total = Family::<Labels, Counter>::default();
        registry.register(
            "grpc_connections",
            "Connections served on the gRPC listeners by listener (client, peer)",
            grpc_connections_total.clone(),
        );
        let hop_headers_ignored_total = Counter::default();
        registry.register(
            "hop_headers_ignored",
            "Requests whose hop header was removed: their connection may not mark requests as forwarded",
            hop_headers_ignored_total.clone(),
        );
        let upstream_connection_failures_total = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_connection_failures",
            "Connections to the backend or a peer that ended with an error (a crash, a keep-alive timeout, an HTTP/2 protocol error), by upstream",
            upstream_connection_failures_total.clone(),
        );
        let fill_requests_total = Family::<Labels, Counter>::default();
        registry.register(
            "fill_requests",
            "Misses of the local executor answered from peers (fill_listen), by method and outcome (hit: a peer held it)",
            fill_requests_total.clone(),
        );
        let requests_total = Family::<RequestLabels, Counter>::default();
        let forwards_total = Family::<Labels, Counter>::default();
        let members = Family::<Labels, Gauge>::default();
        let membership_events_total = Family::<Labels, Counter>::default();
        let local_queue_depth = Gauge::default();
        let cluster_queue_depth = Gauge::default();
        let gossip_packets_total = Family::<Labels, Counter>::default();
        let gossip_bytes_total = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "gRPC requests by method and status code",
            requests_total.clone(),
        );
        registry.register(
            "forwards",
            "Execute forwards to peers by peer and outcome",
            forwards_total.clone(),
        );
        registry.register("members", "Cluster members by state", members.clone());
        registry.register(
            "membership_events",
            "Membership changes by event",
            membership_events_total.clone(),
        );
        registry.register(
            "local_queue_depth",
            "Actions queued on this node's backend",
            local_queue_depth.clone(),
        );
        registry.register(
            "cluster_queue_depth",
            "Actions queued on every live member together (autoscaling signal)",
            cluster_queue_depth.clone(),
        );
        registry.register(
            "gossip_packets",
            "Gossip datagrams by direction",
            gossip_packets_total.clone(),
        );
        registry.register(
            "gossip_bytes",
            "Gossip bytes by direction",
            gossip_bytes_total.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests_total,
            forwards_total,
            members,
            membership_events_total,
            local_queue_depth,
            cluster_queue_depth,
            gossip_packets_total,
            gossip_bytes_total,
            tls_handshakes_total,
            grpc_connections_total,
            hop_headers_ignored_total,
            upstream_connection_failures_total,
            fill_requests_total,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// One label pair, for call sites that count by a single dimension.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_tonics_debug_names() {
        for value in 0..=16 {
            let code = tonic::Code::from_i32(value);
            assert_eq!(code_name(code), format!("{code:?}"));
        }
    }
}
