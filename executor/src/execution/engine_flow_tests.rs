//! Engine tests of the flow of operations: merging, the bounded queue, cancel,
//! timeout and drain. Real CAS, real `/bin/sh`.

use remesh_proto::reapi::Directory;

use super::*;
use crate::execution::test_harness::*;

#[tokio::test]
async fn timeout_is_deadline_exceeded_with_partial_output() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let mut spec = h.action("echo partial; sleep 60", root, &[], &[]).await;
    spec.timeout = Some(Duration::from_secs(1));
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::DeadlineExceeded);
    assert_eq!(
        h.read(result(&response).stdout_digest.as_ref().unwrap())
            .await,
        "partial\n"
    );
    assert!(h.work_dirs().is_empty());
}

#[tokio::test]
async fn identical_actions_merge_into_one_run() {
    let h = Harness::new(2, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let action = h
        .upload(&h.action("sleep 1; date +%s%N", root, &[], &[]).await)
        .await;
    let first = h.execute(&action).await;
    let second = h.execute(&action).await;
    assert_eq!(first.name(), second.name());
    assert_eq!(done(&first).await, done(&second).await);
    assert!(h.metrics.render().contains("outcome=\"merged\"} 1"));
}

#[tokio::test]
async fn a_full_queue_is_resource_exhausted_and_cancel_empties_it() {
    let h = Harness::new(1, 1).await;
    let root = h.put_message(&Directory::default()).await;
    let mut digests = Vec::new();
    for salt in 0..3u8 {
        let mut spec = h.action("sleep 60", root.clone(), &[], &[]).await;
        spec.salt = vec![salt];
        digests.push(h.upload(&spec).await);
    }
    let running = h.execute(&digests[0]).await;
    wait_stage(&running, Stage::Executing).await;
    let queued = h.execute(&digests[1]).await;
    wait_stage(&queued, Stage::Queued).await;
    assert_eq!(h.engine.load().queued, 1);
    let error = h
        .engine
        .execute(&request(&digests[2], false))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);

    h.engine.cancel(queued.name()).unwrap();
    assert_eq!(code(&done(&queued).await), tonic::Code::Cancelled);
    assert_eq!(h.engine.load().queued, 0);

    let started = std::time::Instant::now();
    h.engine.cancel(running.name()).unwrap();
    assert_eq!(code(&done(&running).await), tonic::Code::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancel killed the process"
    );
    assert!(h.work_dirs().is_empty());
}

#[tokio::test]
async fn drain_refuses_new_work_and_kills_after_the_grace() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let running = h
        .execute(
            &h.upload(&h.action("sleep 60", root.clone(), &[], &[]).await)
                .await,
        )
        .await;
    wait_stage(&running, Stage::Executing).await;
    let late = h.upload(&h.action("true", root, &[], &[]).await).await;

    h.engine.drain(Duration::from_millis(200)).await;
    assert_eq!(code(&done(&running).await), tonic::Code::Unavailable);
    let error = h.engine.execute(&request(&late, false)).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable);
    assert!(h.work_dirs().is_empty());
}
