//! WaitExecution and the Operations calls: routed by the node id inside the operation
//! name. The owner strips its prefix and asks its backend; any other node forwards the
//! unchanged request to the owner, one hop at most. An owner that is not a member
//! gives NOT_FOUND, which makes Bazel start the action again with Execute.

use http_body_util::BodyExt;
use tracing::Instrument;

use crate::body::{self, BoxError, ProxyRequest, ProxyResponse};
use crate::grpc_method::GrpcMethod;
use crate::hop::{self, Hop};
use crate::operation_name::OperationName;
use crate::wire::grpc_frame;
use crate::wire::operation_rewrite::OperationShape;
use crate::wire::request_message;

use super::{ForwardOutcome, RouteError, Router, copy_head};

/// Operation-name requests are one short string and little else.
const MAX_NAME_REQUEST_BYTES: usize = 64 << 10;

impl Router {
    pub(super) async fn by_operation_name(
        &self,
        method: GrpcMethod,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, BoxError> {
        let config = &self.state.config;
        let (parts, body) = request.into_parts();
        let encoded = request_message::declares_encoding(&parts.headers);
        let message = request_message::read_single(body, MAX_NAME_REQUEST_BYTES, encoded).await?;
        let name = request_message::operation_name(&message)?;
        let name = OperationName::parse(&name).map_err(RouteError::from)?;

        if name.node_id == config.node_id {
            let local = request_message::with_operation_name(&message, &name.backend_name)?;
            let rename = match method {
                GrpcMethod::WaitExecution | GrpcMethod::GetOperation => {
                    Some(OperationShape::Operation)
                }
                // Cancel and Delete answer google.protobuf.Empty.
                _ => None,
            };
            let request = http::Request::from_parts(copy_head(&parts), body::full(local));
            return self.forward_local(request, rename).await;
        }
        // A forwarded request naming a third node means the views disagree; answering
        // rather than forwarding again keeps the single-hop rule.
        if !Hop::of(&parts.headers).may_forward() {
            return Err(RouteError::UnknownNode(name.node_id).into());
        }
        let channel = config
            .peers
            .peer_channel(&name.node_id)
            .ok_or_else(|| RouteError::UnknownNode(name.node_id.clone()))?;
        // A fresh head: the server-side request's extensions mean nothing upstream.
        let mut head = copy_head(&parts);
        hop::mark_forwarded(&mut head.headers);
        let request = http::Request::from_parts(head, body::full(grpc_frame::encode(&message)));
        let span = tracing::debug_span!("operation", owner = %name.node_id);
        match channel.send(request).instrument(span).await {
            Ok((response, stream)) => Ok(response.map(|body| {
                body::boxed(body.map_frame(move |frame| {
                    let _counted = &stream;
                    frame
                }))
            })),
            // The owner cannot even be dialled: it died and gossip has not said so yet.
            // Its operations died with it, and NOT_FOUND (rather than a retryable
            // UNAVAILABLE that Bazel would retry until it gives up) makes Bazel
            // Execute again at once.
            Err(error) if error.never_reached_upstream() => {
                config
                    .peers
                    .record_forward(&name.node_id, ForwardOutcome::Failed);
                Err(RouteError::OwnerUnreachable {
                    node: name.node_id,
                    reason: error.to_string(),
                }
                .into())
            }
            Err(error) => Err(error.into()),
        }
    }
}
