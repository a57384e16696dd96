//! Real processes end to end: `remesh-proxy up` runs three nodes (executor + proxy
//! each; node 0 has one runner, the others four) and a real Bazel builds against
//! node 0 only. Work must spread, operations must be reachable from any node, and a
//! node killed with SIGKILL mid-build must cost the build nothing.

mod support;

use std::time::{Duration, Instant};

use prost::Message;
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{
    Action, BatchUpdateBlobsRequest, Command, Digest, Directory, ExecuteRequest, ExecuteResponse,
    WaitExecutionRequest, batch_update_blobs_request, command,
};
use sha2::{Digest as _, Sha256};
use support::processes::{EXECUTIONS, UpCluster, alive, metric};
use support::real::{BAZEL, Bazel, assert_fan_spread, fan_args, require};

const BUILD_LIMIT: Duration = Duration::from_secs(300);

fn digest_of(bytes: &[u8]) -> Digest {
    Digest {
        hash: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_spreads_over_the_cluster_and_operations_route_to_their_owner() {
    require(BAZEL, "Bazel (Debian bazel-bootstrap)");
    let dir = tempfile::tempdir().unwrap();
    let cluster = UpCluster::start(3, "1,4,4", &dir.path().join("cluster")).await;
    let bazel = Bazel::new(dir.path());

    let build = bazel
        .run("fan", "build", &fan_args(cluster.node(0).grpc), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&build);
    assert!(build.status.success(), "{text}");
    assert!(text.contains("51 remote"), "{text}");
    let mut ran = Vec::new();
    for node in &cluster.ready.nodes {
        ran.push(metric(node.executor.metrics, EXECUTIONS).await);
    }
    assert_fan_spread(&ran);

    // An action executed on node 1, then waited for through node 2.
    let (b, c) = (cluster.node(1), cluster.node(2));
    // Shaped like Bazel 4.2.3's commands: `output_files`, not `output_paths`.
    #[allow(deprecated)]
    let command = Command {
        arguments: vec![
            "/bin/sh".into(),
            "-c".into(),
            "sleep 1; echo remesh > out.txt".into(),
        ],
        environment_variables: vec![command::EnvironmentVariable {
            name: "PATH".into(),
            value: "/usr/bin:/bin".into(),
        }],
        output_files: vec!["out.txt".into()],
        ..Default::default()
    }
    .encode_to_vec();
    let input_root = Directory::default().encode_to_vec();
    let action = Action {
        command_digest: Some(digest_of(&command)),
        input_root_digest: Some(digest_of(&input_root)),
        do_not_cache: true,
        ..Default::default()
    }
    .encode_to_vec();
    let mut cas = ContentAddressableStorageClient::new(channel(b.grpc).await);
    let requests = [&command, &input_root, &action]
        .into_iter()
        .map(|blob| batch_update_blobs_request::Request {
            digest: Some(digest_of(blob)),
            data: blob.clone(),
            ..Default::default()
        })
        .collect();
    let stored = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: "main".into(),
            requests,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        stored
            .responses
            .iter()
            .all(|r| r.status.as_ref().is_none_or(|s| s.code == 0))
    );

    let mut execute = tonic::Request::new(ExecuteRequest {
        instance_name: "main".into(),
        action_digest: Some(digest_of(&action)),
        skip_cache_lookup: true,
        ..Default::default()
    });
    // As if forwarded: node 1 must run it itself.
    execute
        .metadata_mut()
        .insert("x-remesh-hop", "1".parse().unwrap());
    let mut stream = ExecutionClient::new(channel(b.grpc).await)
        .execute(execute)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.name.starts_with("remesh/node-1/"), "{}", first.name);
    drop(stream);

    let mut waited = ExecutionClient::new(channel(c.grpc).await)
        .wait_execution(WaitExecutionRequest {
            name: first.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(operation) = waited.message().await.unwrap() {
        assert_eq!(operation.name, first.name);
        last = Some(operation);
    }
    let last = last.expect("WaitExecution returned no operation");
    assert!(last.done);
    let Some(remesh_proto::longrunning::operation::Result::Response(any)) = last.result else {
        panic!("no ExecuteResponse in {last:?}");
    };
    let response = ExecuteResponse::decode(&any.value[..]).unwrap();
    assert_eq!(response.result.unwrap().exit_code, 0);
    // Node 1 ran it (its count goes up by one); node 2's executor never saw it.
    support::eventually(
        "node 1 to count the run",
        Duration::from_secs(10),
        || async { (metric(b.executor.metrics, EXECUTIONS).await == ran[1] + 1.0).then_some(()) },
    )
    .await;
    assert_eq!(metric(c.executor.metrics, EXECUTIONS).await, ran[2]);

    let nodes = cluster.ready.nodes.clone();
    let status = cluster.stop().await;
    assert!(status.success(), "up exited with {status}");
    for node in nodes {
        assert!(
            !alive(node.proxy_pid) && !alive(node.executor_pid),
            "{} still runs",
            node.node_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_build_costs_the_build_nothing() {
    require(BAZEL, "Bazel (Debian bazel-bootstrap)");
    let dir = tempfile::tempdir().unwrap();
    let cluster = UpCluster::start(3, "1,4,4", &dir.path().join("cluster")).await;
    let bazel = Bazel::new(dir.path());
    let victim = cluster.node(1).clone();

    let args = fan_args(cluster.node(0).grpc);
    let build = bazel.run("fan", "build", &args, BUILD_LIMIT);
    let kill_victim = async {
        // Wait until the victim is actually running actions, then kill it outright.
        support::eventually(
            "node 1 to run actions",
            Duration::from_secs(120),
            || async {
                let busy =
                    metric(victim.executor.metrics, "remesh_executor_actions_executing").await;
                (busy > 0.0).then_some(())
            },
        )
        .await;
        for pid in [victim.proxy_pid, victim.executor_pid] {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        Instant::now()
    };
    let (build, killed_at) = tokio::join!(build, kill_victim);
    let text = Bazel::text(&build);
    assert!(build.status.success(), "the build must survive: {text}");

    // Node 0 marks the victim down within 10 s of the kill.
    let admin = cluster.node(0).admin;
    support::wait_member_state(
        admin,
        &victim.node_id,
        "down",
        Duration::from_secs(10).saturating_sub(killed_at.elapsed()),
    )
    .await;

    let status = cluster.stop().await;
    assert!(status.success(), "up exited with {status}");
}
