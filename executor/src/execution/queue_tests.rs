//! Tests of the bounded queue and the runner pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use tokio::sync::mpsc;

fn queue(capacity: usize, runners: usize) -> Arc<ActionQueue<u32>> {
    ActionQueue::new(capacity, runners, Metrics::new())
}

#[test]
fn full_queue_refuses_and_reservations_count() {
    let queue = queue(2, 1);
    let first = queue.try_reserve().unwrap();
    let second = queue.try_reserve().unwrap();
    assert_eq!(
        queue.try_reserve().err(),
        Some(QueueFull {
            waiting: 2,
            capacity: 2
        })
    );
    first.push("a".into(), 1).unwrap();
    assert!(
        queue.try_reserve().is_err(),
        "a pushed job still takes its place"
    );
    drop(second);
    let third = queue
        .try_reserve()
        .expect("a dropped slot gives its place back");
    third.push("c".into(), 3).unwrap();
    assert_eq!(queue.load().queued, 2);
    assert_eq!(queue.load().max_queue, 2);
}

#[tokio::test]
async fn jobs_come_out_in_arrival_order() {
    let queue = queue(10, 1);
    for n in 0..5 {
        queue
            .try_reserve()
            .unwrap()
            .push(format!("{n}"), n)
            .unwrap();
    }
    assert_eq!(queue.remove("2"), Some(2));
    assert_eq!(queue.remove("2"), None);
    let mut order = Vec::new();
    for _ in 0..4 {
        let (job, _executing) = queue.next().await.unwrap();
        order.push(job);
    }
    assert_eq!(order, vec![0, 1, 3, 4]);
}

#[tokio::test]
async fn load_reports_every_change() {
    let queue = queue(10, 3);
    let mut load = queue.watch_load();
    assert_eq!(
        *load.borrow_and_update(),
        LoadReport {
            queued: 0,
            executing: 0,
            max_concurrency: 3,
            max_queue: 10
        }
    );
    queue.try_reserve().unwrap().push("a".into(), 1).unwrap();
    assert!(load.has_changed().unwrap());
    assert_eq!(load.borrow_and_update().queued, 1);
    let (_, executing) = queue.next().await.unwrap();
    let report = *load.borrow_and_update();
    assert_eq!((report.queued, report.executing), (0, 1));
    drop(executing);
    assert_eq!(load.borrow_and_update().executing, 0);
}

#[tokio::test]
async fn runners_never_exceed_their_count() {
    let queue = queue(100, 3);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let runners = {
        let (running, peak) = (running.clone(), peak.clone());
        spawn_runners(&queue, 3, move |job: u32| {
            let (running, peak, done_tx) = (running.clone(), peak.clone(), done_tx.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done_tx.send(job).unwrap();
            }
        })
    };
    for n in 0..20 {
        queue
            .try_reserve()
            .unwrap()
            .push(format!("{n}"), n)
            .unwrap();
    }
    let mut finished = Vec::new();
    while finished.len() < 20 {
        let job = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
            .await
            .expect("jobs should finish")
            .unwrap();
        finished.push(job);
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "all three runners should be used, no more"
    );
    finished.sort();
    assert_eq!(finished, (0..20).collect::<Vec<_>>());

    assert!(queue.close().is_empty());
    tokio::time::timeout(Duration::from_secs(10), runners.join_all())
        .await
        .expect("runners end once the queue is closed");
}

#[tokio::test]
async fn close_hands_back_waiting_jobs_and_refuses_new_ones() {
    let queue = queue(10, 1);
    let slot = queue.try_reserve().unwrap();
    queue.try_reserve().unwrap().push("a".into(), 1).unwrap();
    assert_eq!(queue.close(), vec![1]);
    assert!(matches!(slot.push("b".into(), 2), Err(QueueClosed(2))));
    assert!(queue.next().await.is_none());
}
