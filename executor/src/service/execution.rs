//! `build.bazel.remote.execution.v2.Execution`: Execute and WaitExecution, as streams
//! of `google.longrunning.Operation` that follow an operation of the engine.
//!
//! A stream sends the current state at once, then every change, and the same state
//! again every `keepalive_interval` when nothing changes (so proxies and load balancers
//! keep long streams open); it ends after the done Operation. A client hanging up does
//! not cancel the operation: Bazel reconnects with WaitExecution.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use remesh_proto::longrunning::Operation as OperationProto;
use remesh_proto::reapi::execution_server::Execution;
use remesh_proto::reapi::{ExecuteRequest, RequestMetadata, WaitExecutionRequest};
use tonic::{Request, Response, Status};

use crate::execution::Engine;
use crate::execution::operations::Operation;

pub type OperationStream = Pin<Box<dyn Stream<Item = Result<OperationProto, Status>> + Send>>;

pub struct ExecutionService {
    engine: Engine,
}

impl ExecutionService {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl Execution for ExecutionService {
    type ExecuteStream = OperationStream;
    type WaitExecutionStream = OperationStream;

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        let client = ClientIds::from_metadata(request.metadata());
        let request = request.into_inner();
        super::check_digest_function(request.digest_function)?;
        let operation = self.engine.execute(&request).await?;
        tracing::debug!(
            operation = operation.name(),
            action = %operation.action_digest(),
            invocation = client.tool_invocation_id,
            action_id = client.action_id,
            "execute accepted"
        );
        Ok(Response::new(follow(
            operation,
            self.engine.keepalive_interval(),
        )))
    }

    async fn wait_execution(
        &self,
        request: Request<WaitExecutionRequest>,
    ) -> Result<Response<Self::WaitExecutionStream>, Status> {
        let operation = self.engine.operation(&request.into_inner().name)?;
        Ok(Response::new(follow(
            operation,
            self.engine.keepalive_interval(),
        )))
    }
}

/// What Bazel says about itself in the `requestmetadata-bin` header; only logged, so
/// operations can be matched to the build and action that asked for them.
#[derive(Default)]
struct ClientIds {
    tool_invocation_id: String,
    action_id: String,
}

impl ClientIds {
    const HEADER: &str = "build.bazel.remote.execution.v2.requestmetadata-bin";

    fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Self {
        let decoded = metadata
            .get_bin(Self::HEADER)
            .and_then(|value| value.to_bytes().ok())
            .and_then(|bytes| RequestMetadata::decode(bytes).ok());
        match decoded {
            // Client-chosen strings: keep them short in logs.
            Some(ids) => Self {
                tool_invocation_id: ids.tool_invocation_id.chars().take(64).collect(),
                action_id: ids.action_id.chars().take(64).collect(),
            },
            None => Self::default(),
        }
    }
}

/// The stream of an operation's states until it is done.
pub fn follow(operation: Arc<Operation>, keepalive: Duration) -> OperationStream {
    Box::pin(async_stream::stream! {
        let mut states = operation.subscribe();
        loop {
            let state = states.borrow_and_update().clone();
            let done = state.is_done();
            yield Ok(crate::execution::operations::operation_proto(
                operation.name(),
                operation.action_digest(),
                &state,
            ));
            if done {
                break;
            }
            tokio::select! {
                changed = states.changed() => {
                    // The sender lives in `operation`, which this stream holds.
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(keepalive) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::BlobDigest;
    use crate::execution::operations::{Admission, OperationRegistry, Stage};
    use futures::StreamExt;
    use remesh_proto::reapi::{ExecuteOperationMetadata, ExecuteResponse, execution_stage};

    fn stage_of(operation: &OperationProto) -> i32 {
        let metadata = operation.metadata.as_ref().unwrap();
        ExecuteOperationMetadata::decode(metadata.value.as_slice())
            .unwrap()
            .stage
    }

    #[tokio::test(start_paused = true)]
    async fn streams_changes_keepalives_and_ends_when_done() {
        let registry = OperationRegistry::new(Duration::from_secs(60), 10);
        let Admission::New(operation) =
            registry.admit(&BlobDigest::of_bytes(b"a"), false, Stage::Queued)
        else {
            panic!("fresh registry cannot merge");
        };
        let mut stream = follow(operation.clone(), Duration::from_secs(10));

        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(stage_of(&first), execution_stage::Value::Queued as i32);
        assert_eq!(first.name, operation.name());

        // Nothing changes for 10 s: the same state is sent again.
        let started = tokio::time::Instant::now();
        let keepalive = stream.next().await.unwrap().unwrap();
        assert_eq!(stage_of(&keepalive), execution_stage::Value::Queued as i32);
        assert!(started.elapsed() >= Duration::from_secs(10));

        operation.advance(Stage::Executing);
        let executing = stream.next().await.unwrap().unwrap();
        assert_eq!(
            stage_of(&executing),
            execution_stage::Value::Executing as i32
        );
        assert!(!executing.done);

        registry.complete(&operation, ExecuteResponse::default());
        let done = stream.next().await.unwrap().unwrap();
        assert!(done.done);
        assert_eq!(stage_of(&done), execution_stage::Value::Completed as i32);
        assert!(stream.next().await.is_none(), "the stream ends after done");
    }

    #[test]
    fn bazel_request_metadata_is_read_and_bounded() {
        let ids = RequestMetadata {
            tool_invocation_id: "build-1".into(),
            action_id: "a".repeat(500),
            ..Default::default()
        };
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert_bin(
            ClientIds::HEADER,
            tonic::metadata::MetadataValue::from_bytes(&ids.encode_to_vec()),
        );
        let client = ClientIds::from_metadata(&metadata);
        assert_eq!(client.tool_invocation_id, "build-1");
        assert_eq!(client.action_id.len(), 64);

        let mut garbage = tonic::metadata::MetadataMap::new();
        garbage.insert_bin(
            ClientIds::HEADER,
            tonic::metadata::MetadataValue::from_bytes(&[0xff, 0xff, 0xff]),
        );
        assert!(ClientIds::from_metadata(&garbage).action_id.is_empty());
    }
}

#[cfg(test)]
#[path = "execution_grpc_tests.rs"]
mod grpc_tests;
