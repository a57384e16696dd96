//! A backend that dies under the proxy. Its connection's failure is what an operator
//! needs to see: it fails every stream open on it, and it is how a crashing
//! executor, a keep-alive timeout or an HTTP/2 protocol error (such as too many
//! resets) shows itself. `/metrics` counts it by upstream, and the proxy logs it as a
//! warning.
//!
//! A real `remesh-executor` process behind an in-process proxy (generic mode).

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use remesh_proto::reapi::FindMissingBlobsRequest;
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use support::node::{NodeSpec, start_executor};
use support::{eventually, http_get, loopback_config, start_proxy};

const FAILURES: &str = "remesh_proxy_upstream_connection_failures_total";

/// The failure count of `upstream` in the proxy's `/metrics`; `None` while the admin
/// port does not answer or the series is absent.
async fn failures(admin: std::net::SocketAddr, upstream: &str) -> Option<u64> {
    let (_, body) = http_get(admin, "/metrics").await.ok()?;
    let series = format!("{FAILURES}{{upstream=\"{upstream}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

async fn find_missing(
    client: &mut ContentAddressableStorageClient<tonic::transport::Channel>,
) -> Result<(), tonic::Status> {
    client
        .find_missing_blobs(FindMissingBlobsRequest::default())
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_the_proxy_is_counted_as_a_failed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::loopback("crash", dir.path(), 1);
    let mut executor = start_executor(&spec).await;
    let proxy = start_proxy(loopback_config("crash-node", executor.ready.grpc)).await;
    let admin = proxy.ready.admin;
    let mut client = ContentAddressableStorageClient::new(proxy.channel().await);

    // A call opens the proxy's connections to the backend; nothing has failed.
    find_missing(&mut client)
        .await
        .expect("a call through the proxy");
    assert_eq!(failures(admin, "backend").await, Some(0));
    assert_eq!(failures(admin, "peer").await, Some(0));

    executor.signal(Signal::SIGKILL);
    executor.wait(Duration::from_secs(10)).await;
    eventually(
        "the backend's connection to be counted as failed",
        Duration::from_secs(10),
        || async { failures(admin, "backend").await.filter(|&n| n >= 1) },
    )
    .await;
    assert_eq!(failures(admin, "peer").await, Some(0));
    // The proxy answers for the dead backend with a status, and survives.
    let status = find_missing(&mut client)
        .await
        .expect_err("the backend is gone");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}
