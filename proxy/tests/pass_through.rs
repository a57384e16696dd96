//! One proxy in front of a fake backend: services pass through unchanged, operation
//! names are owned by the node, and bad requests get precise statuses.

mod support;

use remesh_proto::bytestream::byte_stream_client::ByteStreamClient;
use remesh_proto::bytestream::{ReadRequest, WriteRequest};
use remesh_proto::longrunning::operations_client::OperationsClient;
use remesh_proto::longrunning::{
    CancelOperationRequest, GetOperationRequest, ListOperationsRequest,
};
use remesh_proto::reapi::action_cache_client::ActionCacheClient;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{Digest, ExecuteRequest, GetActionResultRequest, WaitExecutionRequest};
use support::fake_backend::{self, FakeBackend};
use tonic::Code;

const METADATA_HEADER: &str = "build.bazel.remote.execution.v2.requestmetadata-bin";

async fn proxy_and_backend() -> (support::RunningProxy, FakeBackend) {
    let backend = FakeBackend::default();
    let addr = backend.clone().start().await;
    let proxy = support::start_proxy(support::loopback_config("node-1", addr)).await;
    (proxy, backend)
}

fn execute_request(instance: &str) -> ExecuteRequest {
    ExecuteRequest {
        instance_name: instance.into(),
        action_digest: Some(Digest {
            hash: "ab".repeat(32),
            size_bytes: 140,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn action_cache_and_bytestream_pass_through_with_headers() {
    let (proxy, backend) = proxy_and_backend().await;
    let channel = proxy.channel().await;

    let mut action_cache = ActionCacheClient::new(channel.clone());
    let mut request = tonic::Request::new(GetActionResultRequest {
        instance_name: "main".into(),
        action_digest: Some(Digest {
            hash: "cd".repeat(32),
            size_bytes: 77,
        }),
        ..Default::default()
    });
    request.metadata_mut().insert_bin(
        METADATA_HEADER,
        tonic::metadata::MetadataValue::from_bytes(b"\x0a\x03bzl"),
    );
    request
        .metadata_mut()
        .insert("authorization", "Bearer token-1".parse().unwrap());
    let result = action_cache
        .get_action_result(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result.exit_code, 77);
    {
        let recorded = backend.recorded.lock().unwrap();
        let (method, headers) = recorded.headers.last().unwrap();
        assert_eq!(method, "GetActionResult");
        assert_eq!(
            headers
                .get_bin(METADATA_HEADER)
                .unwrap()
                .to_bytes()
                .unwrap(),
            &b"\x0a\x03bzl"[..]
        );
        assert_eq!(headers.get("authorization").unwrap(), "Bearer token-1");
    }

    // A multi-megabyte read arrives complete and in order.
    let mut bytestream = ByteStreamClient::new(channel);
    let len = 3 * 1024 * 1024 + 17;
    let mut stream = bytestream
        .read(ReadRequest {
            resource_name: format!("len/{len}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut read = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        read.extend_from_slice(&chunk.data);
    }
    assert_eq!(read, fake_backend::blob(len));

    // A client-streaming write passes through too.
    let chunks: Vec<_> = (0..40)
        .map(|i| WriteRequest {
            resource_name: "uploads/x/blobs/y/1".into(),
            write_offset: i * 100_000,
            finish_write: i == 39,
            data: vec![7u8; 100_000],
        })
        .collect();
    let written = bytestream
        .write(futures::stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.committed_size, 4_000_000);
}

#[tokio::test]
async fn execute_names_are_owned_by_the_node_and_route_back() {
    let (proxy, backend) = proxy_and_backend().await;
    let channel = proxy.channel().await;
    let mut execution = ExecutionClient::new(channel.clone());

    let mut stream = execution
        .execute(execute_request("main"))
        .await
        .unwrap()
        .into_inner();
    let mut updates = Vec::new();
    while let Some(operation) = stream.message().await.unwrap() {
        updates.push(operation);
    }
    let backend_name = fake_backend::backend_operation_name("main", &"ab".repeat(32));
    let expected = format!("remesh/node-1/{backend_name}");
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().all(|op| op.name == expected), "{updates:?}");
    assert!(updates[1].done);
    assert_eq!(
        updates[0].metadata.as_ref().unwrap().value,
        b"opaque metadata"
    );

    // WaitExecution with the cluster name reaches the backend with its own name.
    let mut waited = execution
        .wait_execution(WaitExecutionRequest {
            name: expected.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let operation = waited.message().await.unwrap().unwrap();
    assert_eq!(operation.name, expected);
    assert_eq!(
        backend.recorded.lock().unwrap().names.last(),
        Some(&backend_name)
    );

    // The Operations service is renamed the same way.
    let mut operations = OperationsClient::new(channel);
    let got = operations
        .get_operation(GetOperationRequest {
            name: expected.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, expected);
    operations
        .cancel_operation(CancelOperationRequest {
            name: expected.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        backend.recorded.lock().unwrap().names.last(),
        Some(&backend_name)
    );
    let listed = operations
        .list_operations(ListOperationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .operations
        .iter()
        .map(|op| op.name.as_str())
        .collect();
    assert_eq!(names, ["remesh/node-1/ops/a", "remesh/node-1/ops/b"]);
}

#[tokio::test]
async fn bad_requests_get_precise_statuses() {
    let (proxy, backend) = proxy_and_backend().await;
    let channel = proxy.channel().await;
    let mut execution = ExecutionClient::new(channel.clone());

    let status = execution
        .wait_execution(WaitExecutionRequest {
            name: "remesh/elsewhere/ops/1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("elsewhere"), "{status:?}");

    let status = execution
        .wait_execution(WaitExecutionRequest {
            name: "operations/not-ours".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // A refusal from the only candidate reaches the client unchanged.
    let status = execution
        .execute(execute_request("busy"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Nothing reached the backend for the first two.
    assert!(backend.recorded.lock().unwrap().names.is_empty());

    // A method the proxy does not route.
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/remesh.Unknown/Method");
    let status = client
        .unary::<(), (), _>(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn a_dead_backend_is_unavailable_not_a_crash() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let proxy = support::start_proxy(support::loopback_config("node-1", dead)).await;
    let mut action_cache = ActionCacheClient::new(proxy.channel().await);
    let status = action_cache
        .get_action_result(GetActionResultRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!proxy.task.is_finished());
}

#[tokio::test]
async fn an_oversized_execute_request_is_refused_without_reaching_the_backend() {
    let (proxy, backend) = proxy_and_backend().await;
    let mut execution =
        ExecutionClient::new(proxy.channel().await).max_encoding_message_size(8 << 20);
    let mut request = execute_request("main");
    request.instance_name = "x".repeat(2 << 20);
    let status = execution.execute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(backend.recorded.lock().unwrap().executes, 0);
}
