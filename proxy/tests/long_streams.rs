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
//! In-process proxy (generic mode, room for every action) in front of the fake
//! backend, whose `hold` instance keeps an Execute open.

mod support;

use std::time::Duration;

use remesh_proto::reapi::action_cache_client::ActionCacheClient;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{Digest, ExecuteRequest, GetActionResultRequest};
use support::fake_backend::FakeBackend;
use support::{eventually, loopback_config, start_proxy};

/// More open Executes than four backend connections of 200 streams hold.
const HELD: usize = 900;

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

    let mut held = Vec::with_capacity(HELD);
    for index in 0..HELD {
        let mut client = ExecutionClient::new(execution[index % 2].clone());
        held.push(tokio::spawn(async move {
            let request = ExecuteRequest {
                instance_name: "hold".into(),
                action_digest: Some(Digest {
                    hash: format!("{index:064x}"),
                    size_bytes: 1,
                }),
                ..Default::default()
            };
            let mut stream = client.execute(request).await?.into_inner();
            // The first update arrives; then the stream stays open.
            stream.message().await?;
            std::future::pending::<()>().await;
            Ok::<(), tonic::Status>(())
        }));
    }
    // All of them reach the backend: the long-stream connections grow past what
    // four connections of 200 streams would hold.
    eventually(
        "the backend to hold every Execute",
        Duration::from_secs(60),
        || async { (recorded.lock().unwrap().executes >= HELD).then_some(()) },
    )
    .await;

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
