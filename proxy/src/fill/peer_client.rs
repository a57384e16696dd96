//! A tonic client for one peer, over the mesh's pooled connection to it.
//!
//! Every request leaves marked as forwarded (the peer's proxy serves it itself) and
//! as local-only (the peer's executor answers from its own disk), which together
//! keep a fill to one hop and one tier.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use http::header::HeaderName;
use http_body_util::BodyExt;
use remesh_proto::bytestream::byte_stream_client::ByteStreamClient;
use remesh_proto::reapi::action_cache_client::ActionCacheClient;
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;

use super::MAX_MESSAGE_BYTES;
use crate::body::{self, BoxError, ProxyBody};
use crate::hop;
use crate::operation_name::NodeId;
use crate::stream_pool::StreamPool;

/// One peer, named for logs, and the services it is asked through.
#[derive(Clone)]
pub struct PeerClient {
    pub node: NodeId,
    service: PeerService,
}

impl PeerClient {
    pub fn new(node: NodeId, channel: Arc<StreamPool>) -> Self {
        Self {
            node,
            service: PeerService { channel },
        }
    }

    pub fn cas(&self) -> ContentAddressableStorageClient<PeerService> {
        ContentAddressableStorageClient::new(self.service.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn bytestream(&self) -> ByteStreamClient<PeerService> {
        ByteStreamClient::new(self.service.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn action_cache(&self) -> ActionCacheClient<PeerService> {
        ActionCacheClient::new(self.service.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// tonic's requests in, the mesh's HTTP/2 streams out.
#[derive(Clone)]
pub struct PeerService {
    channel: Arc<StreamPool>,
}

impl tower::Service<http::Request<tonic::body::Body>> for PeerService {
    type Response = http::Response<ProxyBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The pool dials on demand and bounds its own streams.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let channel = self.channel.clone();
        Box::pin(async move {
            let (mut parts, request_body) = request.into_parts();
            hop::mark_forwarded(&mut parts.headers);
            parts.headers.insert(
                HeaderName::from_static(remesh_proto::LOCAL_ONLY_HEADER),
                HeaderValue::from_static("1"),
            );
            let request = http::Request::from_parts(parts, body::boxed(request_body));
            let (response, open_stream) = channel.send(request).await?;
            // The stream stays counted against its connection until the body ends.
            Ok(response.map(move |incoming| {
                body::boxed(incoming.map_frame(move |frame| {
                    let _counted = &open_stream;
                    frame
                }))
            }))
        })
    }
}
