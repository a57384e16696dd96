//! Generic backend mode, for real: a remesh-executor whose Load service the proxy does
//! not use, behind `remesh-proxy serve --backend-mode generic --capacity 2`. The proxy
//! counts its own open Execute streams as the node's load. A real Bazel builds `fan`
//! through it with remote execution; while it runs, `/metrics` and `/cluster` show the
//! load the proxy counted (more open Executes than capacity: queued), and once it is
//! done the count is back to zero (no stream leaked its slot).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::node::{NodeSpec, spawn_ready, start_executor};
use support::processes::{metric, proxy_binary};
use support::real::{BAZEL, Bazel, require};

const CAPACITY: u32 = 2;

#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    queued: f64,
    executing: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bazel_builds_fan_through_a_generic_backend_and_the_proxy_counts_its_load() {
    require(BAZEL, "Bazel (Debian bazel-bootstrap)");
    let dir = tempfile::tempdir().unwrap();
    let bazel = Bazel::new(dir.path());
    let spec = NodeSpec::loopback("generic", dir.path(), 4);
    let executor = start_executor(&spec).await;
    let args: Vec<String> = vec![
        "serve".into(),
        "--insecure-plaintext-gossip".into(),
        "--node-id".into(),
        "generic".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
        "--gossip-listen".into(),
        "127.0.0.1:0".into(),
        "--backend".into(),
        format!("grpc://{}", executor.ready.grpc),
        "--backend-mode".into(),
        "generic".into(),
        "--capacity".into(),
        CAPACITY.to_string(),
    ];
    let proxy: support::node::Process<remesh_proxy::ReadyLine> =
        spawn_ready(None, &proxy_binary(), &args, &spec.dir.join("proxy.log")).await;
    let admin = proxy.ready.admin;

    // Watch the proxy's own account of its load while Bazel builds.
    let building = Arc::new(AtomicBool::new(true));
    let watcher = tokio::spawn({
        let building = building.clone();
        async move {
            let mut peak = Peak::default();
            while building.load(Ordering::Relaxed) {
                let queued = metric(admin, "remesh_proxy_local_queue_depth").await;
                peak.queued = peak.queued.max(queued);
                if let Some(report) = support::cluster(admin).await
                    && let Some(load) = report.members.iter().find(|m| m.local).and_then(|m| m.load)
                {
                    assert_eq!(load.max_concurrency, CAPACITY, "{load:?}");
                    peak.executing = peak.executing.max(load.executing);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        }
    });
    let build = bazel
        .run(
            "fan",
            "build",
            &[
                "--config=rexec".to_owned(),
                format!("--remote_executor=grpc://{}", proxy.ready.grpc),
                "//:all".to_owned(),
            ],
            Duration::from_secs(300),
        )
        .await;
    building.store(false, Ordering::Relaxed);
    let peak = watcher.await.unwrap();
    let text = Bazel::text(&build);
    assert!(build.status.success(), "{text}");
    assert!(text.contains("51 remote"), "{text}");

    // Bazel ran up to 50 actions at once against a capacity of 2: the proxy saw its
    // slots full and the rest queued.
    assert_eq!(peak.executing, CAPACITY, "{peak:?}");
    assert!(peak.queued > 0.0, "{peak:?}");
    let executes = metric(
        admin,
        "remesh_proxy_requests_total{method=\"Execute\",code=\"Ok\"}",
    )
    .await;
    assert!(executes >= 51.0, "{executes} Executes completed OK");
    // Every stream gave its slot back.
    support::eventually(
        "the open-Execute count to return to 0",
        Duration::from_secs(10),
        || async {
            let report = support::cluster(admin).await?;
            let load = report.members.iter().find(|m| m.local)?.load?;
            (load.executing == 0 && load.queued == 0).then_some(())
        },
    )
    .await;
    assert_eq!(metric(admin, "remesh_proxy_local_queue_depth").await, 0.0);
}
