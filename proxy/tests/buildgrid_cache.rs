//! Bazel (a real client) through the proxy to BuildGrid (a REAPI server remesh did not
//! write), in generic mode: every CAS, ByteStream, ActionCache and Capabilities call
//! passes through, and a rebuild is served from BuildGrid's action cache.

mod support;

use std::time::Duration;

use support::real::{Bazel, BuildGrid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bazel_remote_cache_through_the_proxy_to_buildgrid() {
    let dir = tempfile::tempdir().unwrap();
    let buildgrid = BuildGrid::start(dir.path()).await;
    let proxy = support::start_proxy(support::loopback_config("cache-node", buildgrid.addr)).await;
    let bazel = Bazel::new(dir.path());
    let args = vec![
        "--config=rcache".to_owned(),
        format!("--remote_cache=grpc://{}", proxy.ready.grpc),
        "//...".to_owned(),
    ];
    let limit = Duration::from_secs(300);

    let first = bazel.run("hello", "build", &args, limit).await;
    assert!(
        first.status.success(),
        "first build: {}",
        Bazel::text(&first)
    );

    let clean = bazel.run("hello", "clean", &[], limit).await;
    assert!(clean.status.success(), "clean: {}", Bazel::text(&clean));
    let second = bazel.run("hello", "build", &args, limit).await;
    let text = Bazel::text(&second);
    assert!(second.status.success(), "second build: {text}");
    assert!(
        text.contains("remote cache hit"),
        "the rebuild must come from the cache: {text}"
    );

    // 50 MiB through ByteStream both ways: uploaded by the first build, downloaded by
    // the consumer's cache hit after a clean.
    let big = bazel.run("big", "build", &args, limit).await;
    assert!(big.status.success(), "big build: {}", Bazel::text(&big));
    let clean = bazel.run("big", "clean", &[], limit).await;
    assert!(clean.status.success(), "clean: {}", Bazel::text(&clean));
    let big = bazel.run("big", "build", &args, limit).await;
    let text = Bazel::text(&big);
    assert!(big.status.success(), "big rebuild: {text}");
    assert!(text.contains("remote cache hit"), "{text}");

    // The proxy saw and counted the traffic, all of it successful.
    let (_, metrics) = support::http_get(proxy.ready.admin, "/metrics")
        .await
        .unwrap();
    for method in ["GetActionResult", "Write", "Read"] {
        assert!(
            metrics.contains(&format!("method=\"{method}\",code=\"Ok\"")),
            "{method}: {metrics}"
        );
    }
}
