//! The scenario both storage layouts of a cluster must pass (a shared backing cache,
//! or nodes filling each other's misses): Bazel builds `fan` against node 0, which has
//! one runner, so nodes 1 and 2 run most actions; after `bazel clean`, a rebuild
//! against node 2 is served entirely from the cache, results node 2 never computed
//! included, and runs nothing anywhere.

use std::time::Duration;

use super::node::Node;
use super::processes::{EXECUTIONS, metric};
use super::real::{Bazel, assert_fan_spread, fan_args};

const BUILD_LIMIT: Duration = Duration::from_secs(300);

/// Builds `fan` against `nodes[0]`; checks that it succeeded, that every action ran
/// once, and that nodes 1 and 2 ran some. Returns what each node ran.
pub async fn build_fan_across(bazel: &Bazel, nodes: &[Node]) -> Vec<f64> {
    let build = bazel
        .run("fan", "build", &fan_args(nodes[0].grpc()), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&build);
    assert!(build.status.success(), "{text}");
    assert!(text.contains("51 remote"), "{text}");
    let mut ran = Vec::new();
    for node in nodes {
        ran.push(metric(node.executor.ready.metrics, EXECUTIONS).await);
    }
    assert_fan_spread(&ran);
    ran
}

/// After `bazel clean`, rebuilds `fan` against `nodes[2]`: every action is a remote
/// cache hit and no node runs anything beyond `ran`.
pub async fn rebuild_from_cache(bazel: &Bazel, nodes: &[Node], ran: &[f64]) {
    let clean = bazel.run("fan", "clean", &[], BUILD_LIMIT).await;
    assert!(clean.status.success(), "{}", Bazel::text(&clean));
    let rebuild = bazel
        .run("fan", "build", &fan_args(nodes[2].grpc()), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&rebuild);
    assert!(rebuild.status.success(), "{text}");
    assert!(text.contains("51 remote cache hit"), "{text}");
    for (node, before) in nodes.iter().zip(ran) {
        let after = metric(node.executor.ready.metrics, EXECUTIONS).await;
        assert_eq!(after, *before, "{} ran actions on the rebuild", node.id());
    }
}
