//! Execute: read the one request message for its routing fields, then try the
//! balancer's candidates in order, each with the same unchanged request bytes.
//!
//! A candidate that fails before accepting (no connection, or an immediate
//! UNAVAILABLE / RESOURCE_EXHAUSTED) is skipped for the next: Execute is idempotent,
//! so a second attempt elsewhere is always allowed. Once a candidate has answered with
//! a stream, the operation is its own and the stream goes back to the client as is.

use http_body_util::BodyExt;
use tracing::Instrument;

use crate::body::{self, BoxError, ProxyRequest, ProxyResponse};
use crate::hop::{self, Hop};
use crate::wire::grpc_frame;
use crate::wire::operation_rewrite::OperationShape;
use crate::wire::request_message::{self, ExecuteRouting};

use super::{ForwardOutcome, RouteError, Router, Target, copy_head};

/// An ExecuteRequest is a digest, an instance name and a few policies: well under a
/// kilobyte. The cap keeps what many concurrent streams can make the proxy buffer
/// small, whatever `max_message_bytes` allows for responses.
const MAX_EXECUTE_REQUEST_BYTES: usize = 1 << 20;

/// gRPC codes a candidate may answer before accepting that mean "try elsewhere".
const RETRY_ELSEWHERE: &[tonic::Code] = &[
    tonic::Code::Unavailable,
    tonic::Code::ResourceExhausted,
    tonic::Code::Aborted,
];

/// Whether a response head means the candidate took the operation: anything but a
/// trailers-only answer carrying a "try elsewhere" status.
fn refused(response: &http::Response<crate::channel::UpstreamBody>) -> bool {
    if !response.status().is_success() {
        return true;
    }
    tonic::Status::from_header_map(response.headers())
        .is_some_and(|status| RETRY_ELSEWHERE.contains(&status.code()))
}

impl Router {
    pub(super) async fn execute(&self, request: ProxyRequest) -> Result<ProxyResponse, BoxError> {
        let config = &self.state.config;
        let (parts, body) = request.into_parts();
        let limit = config.max_message_bytes.min(MAX_EXECUTE_REQUEST_BYTES);
        let encoded = request_message::declares_encoding(&parts.headers);
        let message = request_message::read_single(body, limit, encoded).await?;
        let routing = ExecuteRouting::parse(&message)?;
        let framed = grpc_frame::encode(&message);

        let mut candidates = if Hop::of(&parts.headers).may_forward() {
            config.peers.execute_candidates(&routing)
        } else {
            Vec::new()
        };
        if !candidates.contains(&Target::Local) {
            candidates.push(Target::Local);
        }
        tracing::debug!(
            action = %routing.action_hash,
            instance = %routing.instance_name,
            ?candidates,
            "routing Execute"
        );

        let mut last_refusal = None;
        let mut last_error: Option<BoxError> = None;
        let count = candidates.len();
        for (index, target) in candidates.into_iter().enumerate() {
            let is_last = index + 1 == count;
            let head = copy_head(&parts);
            let attempt = http::Request::from_parts(head, body::full(framed.clone()));
            match target {
                Target::Local => {
                    let sent = config.peers.sending(&Target::Local);
                    let guard = config.open_executions.as_ref().map(|open| open.begin());
                    match self
                        .forward_local(attempt, Some(OperationShape::Operation))
                        .await
                    {
                        Ok(response) if is_last || !refused_boxed(&response) => {
                            // Counted open until the stream ends or the client leaves.
                            return Ok(response.map(|body| {
                                body::boxed(body.map_frame(move |frame| {
                                    let _open = (&guard, &sent);
                                    frame
                                }))
                            }));
                        }
                        Ok(response) => last_refusal = Some(response),
                        Err(error) if is_last => return Err(error),
                        Err(error) => {
                            tracing::debug!(%error, "local backend failed; trying peers");
                            last_error = Some(error);
                        }
                    }
                }
                Target::Peer(node) => {
                    let Some(channel) = config.peers.peer_channel(&node) else {
                        continue;
                    };
                    let sent = config.peers.sending(&Target::Peer(node.clone()));
                    let mut attempt = attempt;
                    hop::mark_forwarded(attempt.headers_mut());
                    let span = tracing::debug_span!("forward", peer = %node);
                    let outcome = match channel.send(attempt).instrument(span).await {
                        Ok((response, stream)) if !refused(&response) => {
                            self.count_forward(&node, ForwardOutcome::Accepted);
                            // Open on the peer until its stream ends.
                            return Ok(response.map(|body| {
                                body::boxed(body.map_frame(move |frame| {
                                    let _open = (&sent, &stream);
                                    frame
                                }))
                            }));
                        }
                        Ok((response, _)) => {
                            last_refusal = Some(response.map(body::boxed));
                            ForwardOutcome::Refused
                        }
                        Err(error) => {
                            tracing::debug!(peer = %node, %error, "forward failed");
                            last_error = Some(error.into());
                            ForwardOutcome::Failed
                        }
                    };
                    self.count_forward(&node, outcome);
                }
            }
        }
        // Every candidate refused or failed (the local one before the last position):
        // the client gets the last refusal, else the last failure, both retryable.
        match (last_refusal, last_error) {
            (Some(refusal), _) => Ok(refusal),
            (None, Some(error)) => Err(error),
            (None, None) => Err(RouteError::NoCandidate.into()),
        }
    }

    fn count_forward(&self, node: &crate::operation_name::NodeId, outcome: ForwardOutcome) {
        let config = &self.state.config;
        // Inside the request's span: with its trace id, this line follows an action
        // from the node a client called to the node that ran it.
        tracing::debug!(peer = %node, outcome = outcome.label(), "Execute forwarded");
        config.peers.record_forward(node, outcome);
        config
            .metrics
            .forwards_total
            .get_or_create(&vec![
                ("peer", node.to_string()),
                ("outcome", outcome.label().to_owned()),
            ])
            .inc();
    }
}

fn refused_boxed(response: &ProxyResponse) -> bool {
    tonic::Status::from_header_map(response.headers())
        .is_some_and(|status| RETRY_ELSEWHERE.contains(&status.code()))
}
