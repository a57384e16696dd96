//! The execution services through a real server on 127.0.0.1:0: Execute streams,
//! WaitExecution, the Operations service, Load, error details on the wire, and the
//! drain on shutdown.

use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use remesh_proto::load::load_client::LoadClient;
use remesh_proto::load::{LoadReport, WatchLoadRequest};
use remesh_proto::longrunning::operations_client::OperationsClient;
use remesh_proto::longrunning::{
    DeleteOperationRequest, GetOperationRequest, ListOperationsRequest, Operation, operation,
};
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{
    Action, BatchUpdateBlobsRequest, Command, Directory, ExecuteOperationMetadata, ExecuteRequest,
    ExecuteResponse, WaitExecutionRequest, batch_update_blobs_request, execution_stage,
};
use remesh_proto::{protobuf, rpc};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::Config;
use crate::digest::BlobDigest;
use crate::server::{Listeners, RunError, run};

const DEADLINE: Duration = Duration::from_secs(60);

struct Server {
    _dir: tempfile::TempDir,
    channel: Channel,
    load: LoadClient<Channel>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Server {
    async fn start(shutdown_grace: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let config = Config {
            data_dir: dir.path().to_owned(),
            listen: loopback,
            metrics_listen: loopback,
            load_listen: loopback,
            runners: 2,
            queue_max: 5,
            shutdown_grace,
            keepalive_interval: Duration::from_millis(200),
            ..Config::default()
        };
        let listeners = Listeners::bind(&config).await.unwrap();
        let ready = listeners.ready_line().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config, listeners, shutdown.clone()));
        let channel = Channel::from_shared(format!("http://{}", ready.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let load = LoadClient::connect(format!("http://{}", ready.load))
            .await
            .unwrap();
        Self {
            _dir: dir,
            channel,
            load,
            shutdown,
            task,
        }
    }

    fn execution(&self) -> ExecutionClient<Channel> {
        ExecutionClient::new(self.channel.clone())
    }

    fn operations(&self) -> OperationsClient<Channel> {
        OperationsClient::new(self.channel.clone())
    }

    /// Uploads a `/bin/sh -c script` action over an empty input root.
    async fn upload_action(&self, script: &str) -> BlobDigest {
        let command = Command {
            arguments: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..Default::default()
        };
        let root = Directory::default();
        let action = Action {
            command_digest: Some(BlobDigest::of_message(&command).to_proto()),
            input_root_digest: Some(BlobDigest::of_message(&root).to_proto()),
            ..Default::default()
        };
        let blobs = [
            command.encode_to_vec(),
            root.encode_to_vec(),
            action.encode_to_vec(),
        ];
        let requests = blobs
            .iter()
            .map(|data| batch_update_blobs_request::Request {
                digest: Some(BlobDigest::of_bytes(data).to_proto()),
                data: data.clone(),
                ..Default::default()
            })
            .collect();
        let response = ContentAddressableStorageClient::new(self.channel.clone())
            .batch_update_blobs(BatchUpdateBlobsRequest {
                instance_name: "main".into(),
                requests,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for item in response.responses {
            assert_eq!(item.status.map_or(0, |status| status.code), 0);
        }
        BlobDigest::of_message(&action)
    }

    async fn execute(&self, action: &BlobDigest) -> tonic::Streaming<Operation> {
        self.execution()
            .execute(execute_request(action))
            .await
            .expect("Execute accepted")
            .into_inner()
    }
}

fn execute_request(action: &BlobDigest) -> ExecuteRequest {
    ExecuteRequest {
        instance_name: "main".into(),
        action_digest: Some(action.to_proto()),
        ..Default::default()
    }
}

fn stage(operation: &Operation) -> execution_stage::Value {
    let metadata = operation
        .metadata
        .as_ref()
        .expect("metadata on every update");
    let metadata = ExecuteOperationMetadata::decode(metadata.value.as_slice()).unwrap();
    execution_stage::Value::try_from(metadata.stage).unwrap()
}

fn response(operation: &Operation) -> ExecuteResponse {
    match &operation.result {
        Some(operation::Result::Response(any)) => {
            ExecuteResponse::decode(any.value.as_slice()).unwrap()
        }
        other => panic!("a done operation carries a response, got {other:?}"),
    }
}

/// Reads the stream to its end, returning every update.
async fn drain_stream(mut stream: tonic::Streaming<Operation>) -> Vec<Operation> {
    let mut updates = Vec::new();
    while let Some(update) = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the stream progresses")
    {
        updates.push(update.expect("no stream error"));
    }
    updates
}

async fn next_report(stream: &mut tonic::Streaming<LoadReport>) -> LoadReport {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a load report")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn execute_streams_stages_and_operations_answer_afterwards() {
    let server = Server::start(Duration::from_secs(5)).await;
    let mut load = server
        .load
        .clone()
        .watch(WatchLoadRequest {})
        .await
        .unwrap()
        .into_inner();
    let idle = next_report(&mut load).await;
    assert_eq!(
        (
            idle.queued,
            idle.executing,
            idle.max_concurrency,
            idle.max_queue
        ),
        (0, 0, 2, 5)
    );

    let action = server.upload_action("sleep 1; echo hi").await;
    let stream = server.execute(&action).await;
    // The action runs for 1 s: the load stream must show it.
    loop {
        let report = next_report(&mut load).await;
        if report.executing == 1 {
            break;
        }
    }
    let updates = drain_stream(stream).await;
    let first = &updates[0];
    assert!(first.name.starts_with("operations/"), "{}", first.name);
    assert!(!first.done);
    assert!(matches!(
        stage(first),
        execution_stage::Value::CacheCheck | execution_stage::Value::Queued
    ));
    let last = updates.last().unwrap();
    assert!(last.done && updates[..updates.len() - 1].iter().all(|u| !u.done));
    assert_eq!(stage(last), execution_stage::Value::Completed);
    let done = response(last);
    assert_eq!(done.status.map_or(0, |status| status.code), 0);
    assert_eq!(done.result.unwrap().exit_code, 0);
    // 1 s of work with a 200 ms keep-alive: keep-alives besides the stage changes.
    assert!(updates.len() >= 4, "{} updates", updates.len());

    let waited = drain_stream(
        server
            .execution()
            .wait_execution(WaitExecutionRequest {
                name: last.name.clone(),
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(waited.len(), 1);
    assert!(waited[0].done);

    let mut operations = server.operations();
    let got = operations
        .get_operation(GetOperationRequest {
            name: last.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.done);
    let listed = operations
        .list_operations(ListOperationsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.operations.len(), 1);
    assert!(listed.next_page_token.is_empty());
    operations
        .delete_operation(DeleteOperationRequest {
            name: last.name.clone(),
        })
        .await
        .unwrap();
    let gone = operations
        .get_operation(GetOperationRequest {
            name: last.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let unknown = server
        .execution()
        .wait_execution(WaitExecutionRequest {
            name: "operations/unknown".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // The open Load.Watch stream must not hold the shutdown up.
    server.shutdown.cancel();
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .expect("run returns despite an open Load.Watch")
        .unwrap()
        .unwrap();
    // Reports buffered before the end may still arrive; then the stream ends.
    while let Some(Ok(_)) = tokio::time::timeout(DEADLINE, load.next())
        .await
        .expect("Watch ends at shutdown")
    {}
}

#[tokio::test]
async fn missing_action_is_failed_precondition_with_details_on_the_wire() {
    let server = Server::start(Duration::from_secs(5)).await;
    let absent = BlobDigest::of_bytes(b"never uploaded");
    let status = server
        .execution()
        .execute(execute_request(&absent))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let details = rpc::Status::decode(status.details()).unwrap();
    let failure: &protobuf::Any = &details.details[0];
    assert_eq!(
        failure.type_url,
        "type.googleapis.com/google.rpc.PreconditionFailure"
    );
    let failure =
        remesh_proto::error_details::PreconditionFailure::decode(failure.value.as_slice()).unwrap();
    assert_eq!(failure.violations[0].subject, absent.subject());
    assert_eq!(failure.violations[0].r#type, "MISSING");

    let invalid = server
        .execution()
        .execute(ExecuteRequest::default())
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_refuses_new_work_kills_after_grace_and_returns() {
    let server = Server::start(Duration::from_secs(1)).await;
    let long = server.upload_action("sleep 60").await;
    let other = server.upload_action("true").await;
    let mut stream = server.execute(&long).await;
    loop {
        let update = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if stage(&update) == execution_stage::Value::Executing {
            break;
        }
    }
    server.shutdown.cancel();
    // During the grace: no new work, but the running operation is still followed.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        match server.execution().execute(execute_request(&other)).await {
            Err(status) => break status,
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "Execute never refused"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    let updates = drain_stream(stream).await;
    let last = updates
        .last()
        .expect("the stream ends with the done operation");
    assert!(last.done);
    let status = response(last).status.unwrap();
    assert_eq!(status.code, tonic::Code::Unavailable as i32, "{status:?}");
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .expect("run returns after the drain")
        .unwrap()
        .unwrap();
}
