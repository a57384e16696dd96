//! Long-lived Execute streams must not starve short calls to the same backend.
//!
//! A backend announces how many streams one HTTP/2 connection may carry (hyper and
//! tonic servers default to 200; remesh-executor's `max_concurrent_streams` too).
//! Every queued or running action holds an Execute stream open for as long as it
//! waits and runs, which on a busy node is minutes. If those streams shared the
//! proxy's backend connections with CAS and action-cache calls, a deep queue would
//! take every slot and a FindMissingBlobs would wait behind actions that wait for
//! runners: a build stalls on its own backlog. The proxy keeps separate connections
//! for long streams, as many as they need, so short calls always find room and
//! every Execute reaches the backend's queue.
//!
//! The same holds between proxies: a peer's proxy takes 1,000 streams per
//! connection, and Executes forwarded to it must not block the operation calls
//! that follow them there.
//!
//! In-process proxies (generic mode) in front of the fake backend, whose `hold`
//! instance keeps an Execute open.

mod support;

use std::time::Duration;

use remesh_proto::longrunning::GetOperationRequest;
use remesh_proto::longrunning::operations_client::OperationsClient;
use remesh_proto::reapi::action_cache_client::ActionCacheClient;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{Digest, ExecuteRequest, GetActionResultRequest};
use support::fake_backend::FakeBackend;
use support::{loopback_config, start_proxy, wait_member_state};

/// More open Executes than four backend connections of 200 streams hold.
const HELD: usize = 900;

/// Opens `count` Execute streams of the `hold` instance on `channels` (in turn) and
/// keeps them open until the returned tasks are aborted; each task ends early only
/// with an error. Returns once every stream has its first update.
async fn hold_executes(
    channels: &[tonic::transport::Channel],
    count: usize,
    prefix: &str,
) -> Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>> {
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<String>(count);
    let mut held = Vec::with_capacity(count);
    for index in 0..count {
        let mut client = ExecutionClient::new(channels[index % channels.len()].clone());
        let first_tx = first_tx.clone();
        let hash = format!("{prefix}{index:060x}");
        held.push(tokio::spawn(async move {
            let request = ExecuteRequest {
                instance_name: "hold".into(),
                action_digest: Some(Digest {
                    hash,
                    size_bytes: 1,
                }),
                ..Default::default()
            };
            let mut stream = client.execute(request).await?.into_inner();
            if let Some(operation) = stream.message().await? {
                let _ = first_tx.send(operation.name).await;
            }
            std::future::pending::<()>().await;
            Ok(())
        }));
    }
    for _ in 0..count {
        tokio::time::timeout(Duration::from_secs(60), first_rx.recv())
            .await
            .expect("every held Execute gets its first update within 60 s");
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_queue_of_execute_streams_does_not_block_the_action_cache() {
    let backend = FakeBackend {
        max_concurrent_streams: Some(200),
        ..FakeBackend::default()
    };
    let recorded = backend.recorded.clone();
    let backend = backend.start().await;
    let mut config = loopback_config("a", backend);
    config.capacity = 100_000;
    let proxy = start_proxy(config).await;
    // Two client connections: the proxy allows 1,000 streams on each.
    let execution = [proxy.channel().await, proxy.channel().await];

    // All of them reach the backend: the long-stream connections grow past what
    // four connections of 200 streams would hold.
    let held = hold_executes(&execution, HELD, "").await;
    assert!(recorded.lock().unwrap().executes >= HELD);

    let mut cache = ActionCacheClient::new(proxy.channel().await);
    for size in 1..=20 {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            cache.get_action_result(GetActionResultRequest {
                instance_name: "main".into(),
                action_digest: Some(Digest {
                    hash: "ab".repeat(32),
                    size_bytes: size,
                }),
                ..Default::default()
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("GetActionResult waited over 5 s behind {HELD} open Execute streams")
        })
        .expect("GetActionResult");
        assert_eq!(answer.into_inner().exit_code, size as i32);
    }
    for task in held {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executes_forwarded_past_a_peer_connection_s_stream_limit_do_not_block_it() {
    // a: full at once (capacity 1); b: room for everything.
    let a_backend = FakeBackend::default().start().await;
    let mut a_config = loopback_config("a", a_backend);
    a_config.capacity = 1;
    a_config.join_interval = Duration::from_millis(500);
    a_config.load_heartbeat = Duration::from_millis(300);
    let a = start_proxy(a_config).await;
    let b_backend = FakeBackend {
        max_concurrent_streams: Some(200),
        ..FakeBackend::default()
    };
    let b_recorded = b_backend.recorded.clone();
    let b_backend = b_backend.start().await;
    let mut b_config = loopback_config("b", b_backend);
    b_config.capacity = 100_000;
    b_config.join = vec![a.ready.gossip.to_string()];
    b_config.join_interval = Duration::from_millis(500);
    b_config.load_heartbeat = Duration::from_millis(300);
    let b = start_proxy(b_config).await;
    wait_member_state(a.ready.admin, "b", "alive", Duration::from_secs(30)).await;

    let clients = [a.channel().await, a.channel().await];
    let mut held = hold_executes(&clients[..1], 1, "a").await;
    // More than one peer connection's 1,000 streams, all forwarded to b.
    held.extend(hold_executes(&clients, 1_100, "b").await);
    assert!(
        b_recorded.lock().unwrap().executes >= 1_100,
        "b's backend got {} Executes",
        b_recorded.lock().unwrap().executes
    );
    // An operation call to b through a still gets through at once.
    let mut operations = OperationsClient::new(a.channel().await);
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        operations.get_operation(GetOperationRequest {
            name: "remesh/b/ops/anything".into(),
        }),
    )
    .await
    .expect("GetOperation to b waited over 5 s behind 1,100 forwarded Executes")
    .expect("GetOperation");
    assert_eq!(answer.into_inner().name, "remesh/b/ops/anything");
    for task in held {
        task.abort();
    }
    drop(b);
}
