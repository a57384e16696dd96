//! Forwarding to this node's own backend, streamed frame by frame.
//!
//! The only change made on the way back is the operation-name prefix, applied to the
//! responses of the calls that return operations, so every name a client sees says
//! which node owns it.

use crate::body::{self, BoxError, ProxyRequest, ProxyResponse};
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
        let response = self.state.config.backend.send(request).await?;
        let state = self.state.clone();
        Ok(response.map(move |incoming| match rename {
            None => body::boxed(incoming),
            Some(shape) => body::boxed(OperationRewriteBody::new(
                body::boxed(incoming),
                shape,
                state.name_prefix.clone(),
                state.config.max_message_bytes,
            )),
        }))
    }
}
