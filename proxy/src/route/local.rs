//! Forwarding to this node's own backend, streamed frame by frame.
//!
//! The only change made on the way back is the operation-name prefix, applied to the
//! responses of the calls that return operations, so every name a client sees says
//! which node owns it. Execute and WaitExecution streams travel on connections of
//! their own (`stream_pool`).

use http_body_util::BodyExt;

use crate::body::{self, BoxError, ProxyRequest, ProxyResponse};
use crate::grpc_method::GrpcMethod;
use crate::wire::operation_rewrite::{OperationRewriteBody, OperationShape};

use super::Router;

impl Router {
    /// Sends `request` to the local backend; `rename` says which responses carry
    /// operation names to prefix.
    pub(super) async fn forward_local(
        &self,
        mut request: ProxyRequest,
        rename: Option<OperationShape>,
    ) -> Result<ProxyResponse, BoxError> {
        if rename.is_some() {
            // The rename reads each message: ask the backend not to compress them.
            request.headers_mut().remove("grpc-accept-encoding");
        }
        let config = &self.state.config;
        let (response, open_stream) = match GrpcMethod::from_path(request.uri().path()) {
            // Open as long as the action waits and runs: kept off the connections
            // short calls use (see `stream_pool`).
            GrpcMethod::Execute | GrpcMethod::WaitExecution => {
                let (response, open) = config.backend_streams.send(request).await?;
                (response, Some(open))
            }
            _ => (config.backend.send(request).await?, None),
        };
        let state = self.state.clone();
        Ok(response.map(move |incoming| {
            let incoming = match open_stream {
                None => body::boxed(incoming),
                Some(open) => body::boxed(incoming.map_frame(move |frame| {
                    let _counted = &open;
                    frame
                })),
            };
            match rename {
                None => incoming,
                Some(shape) => body::boxed(OperationRewriteBody::new(
                    incoming,
                    shape,
                    state.name_prefix.clone(),
                    state.config.max_message_bytes,
                )),
            }
        }))
    }
}
