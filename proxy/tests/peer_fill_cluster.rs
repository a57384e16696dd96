//! Three nodes and no shared storage at all: each executor's backing cache is its
//! own proxy's fill endpoint (`fill_listen`, read-only), which answers misses from
//! the other nodes. A real Bazel builds `fan` against node a, which has one runner,
//! so b and c run most actions: the inputs Bazel uploaded to a reach them only
//! through the fill endpoints, and the outputs they made reach Bazel through a's.
//! After `bazel clean`, a rebuild against node c is served entirely from the
//! cluster's caches, results c never computed included.

mod support;

use std::net::SocketAddr;

use support::node::{NodeSpec, start_cluster};
use support::processes::metric;
use support::real::{BAZEL, Bazel, free_port, require};
use support::shared_tier::{build_fan_across, rebuild_from_cache};

/// Blobs a node's fill endpoint streamed to its executor from a peer.
const FILLED_READS: &str = "remesh_proxy_fill_requests_total{method=\"read\",outcome=\"hit\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_fill_each_others_misses_without_shared_storage() {
    require(BAZEL, "Bazel (Debian bazel-bootstrap)");
    let dir = tempfile::tempdir().unwrap();
    let bazel = Bazel::new(dir.path());
    let specs: Vec<NodeSpec> = [("a", 1), ("b", 4), ("c", 4)]
        .into_iter()
        .map(|(id, runners)| {
            let fill = SocketAddr::from(([127, 0, 0, 1], free_port()));
            NodeSpec {
                executor_args: vec![
                    "--backing-cache".to_owned(),
                    format!("grpc://{fill}"),
                    "--backing-read-only".to_owned(),
                ],
                proxy_args: vec!["--fill-listen".to_owned(), fill.to_string()],
                ..NodeSpec::loopback(id, dir.path(), runners)
            }
        })
        .collect();
    let nodes = start_cluster(specs).await;

    let ran = build_fan_across(&bazel, &nodes).await;
    // b and c read the inputs Bazel uploaded to a; a read the outputs b and c made
    // when Bazel downloaded them through it.
    for node in &nodes {
        let filled = metric(node.admin(), FILLED_READS).await;
        assert!(
            filled > 0.0,
            "{} filled nothing from peers: {filled}",
            node.id()
        );
    }
    rebuild_from_cache(&bazel, &nodes, &ran).await;
    let results_filled = metric(
        nodes[2].admin(),
        "remesh_proxy_fill_requests_total{method=\"get_action_result\",outcome=\"hit\"}",
    )
    .await;
    assert!(
        results_filled > 0.0,
        "c served results it never computed, so it must have asked its peers"
    );
}
