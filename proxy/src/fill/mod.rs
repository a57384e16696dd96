//! The fill endpoint (`fill_listen`): a read-only REAPI cache, on loopback, that the
//! local executor uses as its backing cache, and that answers its misses from the
//! other members of the cluster. With it, the nodes of a cluster share blobs and
//! action results without a shared storage service: a blob Bazel uploaded to one
//! node, or an output an action left on another, is found wherever it is asked for.
//!
//! What it answers, each from the members alive in the current view:
//! - `FindMissingBlobs`: the digests no peer holds (every peer asked at once);
//! - `ByteStream.Read`: the blob, streamed from the first peer that has it;
//! - `GetActionResult`: the first result any peer holds.
//!
//! Every question to a peer goes over the mesh's own connections (mutual TLS where
//! the mesh has it), marked as forwarded (`hop`) so the peer's proxy serves it
//! itself, and with `remesh_proto::LOCAL_ONLY_HEADER` so the peer's executor answers
//! from its own disk and never asks its own fill endpoint in turn: one miss costs
//! one round of questions, never a cascade. Writes are refused (UNIMPLEMENTED): the
//! executor runs with `backing_read_only`, and each blob stays where it was written.
//!
//! Asking every peer suits clusters of a few to a few tens of nodes; larger ones
//! want a shared backing cache instead.

mod action_cache;
mod bytestream;
mod cas;
mod peer_client;

use std::sync::Arc;
use std::time::Duration;

use remesh_proto::bytestream::byte_stream_server::ByteStreamServer;
use remesh_proto::reapi::action_cache_server::ActionCacheServer;
use remesh_proto::reapi::content_addressable_storage_server::ContentAddressableStorageServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::membership::PeerState;
use crate::mesh::Mesh;
use crate::metrics::ProxyMetrics;
use crate::route::PeerRouting;
use peer_client::PeerClient;

/// How long one peer may take to answer a question (or to start streaming a blob)
/// before the fill goes on without it: a peer that hangs must not stall the build.
const PEER_DEADLINE: Duration = Duration::from_secs(5);

/// Largest message the endpoint accepts from the executor or a peer: a
/// FindMissingBlobs of a few thousand digests, a ByteStream chunk of 1 MiB.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// The shared state of the three services.
#[derive(Clone)]
pub struct Fill {
    mesh: Arc<Mesh>,
    metrics: ProxyMetrics,
}

impl Fill {
    pub fn new(mesh: Arc<Mesh>, metrics: ProxyMetrics) -> Self {
        Self { mesh, metrics }
    }

    /// A client for every member alive now, in the view's order.
    fn peers(&self) -> Vec<PeerClient> {
        let view = self.mesh.view();
        view.peers
            .iter()
            .filter(|peer| peer.state == PeerState::Alive)
            .filter_map(|peer| {
                let node = &peer.identity.node_id;
                let channel = self.mesh.peer_channel(node)?;
                Some(PeerClient::new(node.clone(), channel))
            })
            .collect()
    }

    fn count(&self, method: &'static str, hit: bool) {
        let outcome = if hit { "hit" } else { "miss" };
        self.metrics
            .fill_requests_total
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }
}

/// Serves the fill endpoint on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, fill: Fill, shutdown: CancellationToken) {
    // Without TCP_NODELAY a small answer waits for the executor's delayed ACK: a
    // FindMissingBlobs took 44 ms instead of under 1 (`bench fill`).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(
            ContentAddressableStorageServer::new(cas::FillCas(fill.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ByteStreamServer::new(bytestream::FillByteStream(fill.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ActionCacheServer::new(action_cache::FillActionCache(fill))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::warn!(error = %crate::channel::error_chain(&error), "fill endpoint stopped");
    }
}

/// The status a write gets: the endpoint only ever reads.
fn read_only(method: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!(
        "{method}: the fill endpoint is read-only (run the executor with backing_read_only)"
    ))
}
