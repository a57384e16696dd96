//! A flood of Execute past the queue of a real executor (`--runners 1`, a queue of
//! two), sent straight to it and through a `remesh-proxy serve` in front of it: one
//! action runs, two wait, every further one is refused with RESOURCE_EXHAUSTED (which
//! Bazel retries with backoff), and the admitted ones complete once released.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use remesh_proto::longrunning::operation;
use remesh_proto::reapi::{
    Action, Command, Directory, ExecuteOperationMetadata, ExecuteRequest, ExecuteResponse,
    execution_stage,
};
use remesh_tests::hostile;
use remesh_tests::integrity::{Sandbox, check_cas};
use remesh_tests::proxy_process::ProxyProcess;
use remesh_tests::reapi_client::{Clients, blob_digest};
use remesh_tests::{ExecutorOptions, ExecutorProcess};
use tonic::{Code, Streaming};

const QUEUE_MAX: usize = 2;
/// Past the one running and the two queued; bounded, like every load loop here.
const EXCESS: usize = 4;
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Uploads an action that waits (at most 60 s) for `release` to exist.
async fn blocking_action(clients: &Clients, release: &Path, salt: u32) -> ExecuteRequest {
    let script = format!(
        "i=0; while [ ! -e '{}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
        release.display()
    );
    let command = Command {
        arguments: vec!["/bin/sh".into(), "-c".into(), script],
        ..Default::default()
    };
    let command_bytes = Bytes::from(command.encode_to_vec());
    let root = Bytes::from(Directory::default().encode_to_vec());
    let action = Action {
        command_digest: Some(blob_digest(&command_bytes)),
        input_root_digest: Some(blob_digest(&root)),
        do_not_cache: true,
        // Distinct actions: identical in-flight ones would be merged into one run.
        salt: salt.to_be_bytes().to_vec(),
        ..Default::default()
    };
    let action_bytes = Bytes::from(action.encode_to_vec());
    let digests = clients
        .upload_messages(vec![command_bytes, root, action_bytes])
        .await
        .unwrap();
    ExecuteRequest {
        instance_name: clients.instance_name.clone(),
        skip_cache_lookup: true,
        action_digest: Some(digests[2].clone()),
        ..Default::default()
    }
}

/// Reads the stream until the operation reaches `stage` (or is done).
async fn until_stage(stream: &mut Streaming<remesh_proto::longrunning::Operation>, stage: i32) {
    let wait = async {
        while let Some(operation) = stream.message().await.unwrap() {
            let metadata = operation.metadata.as_ref().unwrap();
            let metadata = ExecuteOperationMetadata::decode(metadata.value.as_slice()).unwrap();
            if metadata.stage == stage || operation.done {
                return metadata.stage;
            }
        }
        panic!("the Execute stream ended early")
    };
    let reached = tokio::time::timeout(STREAM_TIMEOUT, wait).await.unwrap();
    assert_eq!(reached, stage);
}

/// Reads the stream to its done Operation; returns the ExecuteResponse.
async fn until_done(
    mut stream: Streaming<remesh_proto::longrunning::Operation>,
) -> ExecuteResponse {
    let wait = async {
        while let Some(operation) = stream.message().await.unwrap() {
            if let Some(operation::Result::Response(any)) = operation.result {
                return ExecuteResponse::decode(any.value.as_slice()).unwrap();
            }
        }
        panic!("the Execute stream ended before the operation was done")
    };
    tokio::time::timeout(STREAM_TIMEOUT, wait).await.unwrap()
}

/// One flood through `clients`; `round` keeps its actions distinct from other rounds'.
async fn flood(clients: &Clients, release: &Path, round: u32) {
    let mut admitted = Vec::new();
    for (index, stage) in [execution_stage::Value::Executing]
        .into_iter()
        .chain([execution_stage::Value::Queued; QUEUE_MAX])
        .enumerate()
    {
        let request = blocking_action(clients, release, round * 100 + index as u32).await;
        let mut stream = clients
            .execution
            .clone()
            .execute(request)
            .await
            .unwrap()
            .into_inner();
        until_stage(&mut stream, stage as i32).await;
        admitted.push(stream);
    }
    for extra in 0..EXCESS as u32 {
        let request = blocking_action(clients, release, round * 100 + 50 + extra).await;
        let code = match clients.execution.clone().execute(request).await {
            Err(status) => status.code(),
            Ok(response) => match response.into_inner().message().await {
                Err(status) => status.code(),
                Ok(operation) => panic!("admitted past the queue: {operation:?}"),
            },
        };
        assert_eq!(code, Code::ResourceExhausted, "Execute past the queue");
    }
    std::fs::write(release, b"go").unwrap();
    for stream in admitted {
        let response = until_done(stream).await;
        let status = response.status.unwrap_or_default();
        assert_eq!(status.code, 0, "{status:?}");
        assert_eq!(response.result.unwrap().exit_code, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_past_the_queue_is_resource_exhausted_and_the_rest_complete() {
    let sandbox = Sandbox::new().unwrap();
    let executor: ExecutorProcess = ExecutorOptions::new()
        .data_dir(&sandbox.data_dir())
        .arg("--runners")
        .arg("1")
        .arg("--queue-max")
        .arg(QUEUE_MAX.to_string())
        .spawn()
        .unwrap();
    let proxy = ProxyProcess::spawn_for(&executor, "flood-node", &[]).unwrap();
    let release_dir = tempfile::tempdir().unwrap();
    let before = sandbox.snapshot().unwrap();

    let direct = executor.clients("").await.unwrap();
    flood(&direct, &release_dir.path().join("direct"), 1).await;
    let proxied = Clients::connect(proxy.grpc_addr(), "").await.unwrap();
    flood(&proxied, &release_dir.path().join("proxied"), 2).await;

    hostile::health_ok(executor.grpc_addr()).await.unwrap();
    assert_eq!(
        sandbox.snapshot().unwrap(),
        before,
        "files outside the data dir"
    );
    check_cas(&sandbox.data_dir()).unwrap();
}
