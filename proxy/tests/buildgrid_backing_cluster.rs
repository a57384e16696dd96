//! BuildGrid (cache-only, instance `main`) as the shared backing cache (tier 2) of a
//! three-node cluster: every executor reads and writes through it. A real Bazel builds
//! `fan` against node a, which has one runner, so b and c run most actions: they can
//! only get the inputs Bazel uploaded to a (and the fan-in's inputs, made on other
//! nodes) through BuildGrid. After `bazel clean`, a rebuild against node c is served
//! entirely from the cache, including results c never computed itself.

mod support;

use std::time::Duration;

use support::node::{NodeSpec, start_cluster};
use support::processes::metric;
use support::real::{BAZEL, Bazel, BuildGrid, fan_args, require};

const BUILD_LIMIT: Duration = Duration::from_secs(300);
/// Actions a node's executor ran to a successful end.
const EXECUTIONS: &str = "remesh_executor_executions_total{outcome=\"success\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_buildgrid_as_its_backing_cache() {
    require(BAZEL, "Bazel (Debian bazel-bootstrap)");
    let dir = tempfile::tempdir().unwrap();
    let bazel = Bazel::new(dir.path());
    let buildgrid = BuildGrid::start(dir.path()).await;
    let backing = vec![
        "--backing-cache".to_owned(),
        format!("grpc://{}", buildgrid.addr),
        "--backing-instance-name".to_owned(),
        "main".to_owned(),
    ];
    let specs: Vec<NodeSpec> = [("a", 1), ("b", 4), ("c", 4)]
        .into_iter()
        .map(|(id, runners)| NodeSpec {
            executor_args: backing.clone(),
            ..NodeSpec::loopback(id, dir.path(), runners)
        })
        .collect();
    let nodes = start_cluster(specs).await;

    let build = bazel
        .run("fan", "build", &fan_args(nodes[0].grpc()), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&build);
    assert!(build.status.success(), "{text}");
    assert!(text.contains("51 remote"), "{text}");
    let mut ran = Vec::new();
    for node in &nodes {
        ran.push(metric(node.executor.ready.metrics, EXECUTIONS).await);
    }
    assert_eq!(
        ran.iter().sum::<f64>(),
        51.0,
        "every action ran once: {ran:?}"
    );
    assert!(
        ran[1] > 0.0 && ran[2] > 0.0,
        "b and c must run actions: {ran:?}"
    );

    let clean = bazel.run("fan", "clean", &[], BUILD_LIMIT).await;
    assert!(clean.status.success(), "{}", Bazel::text(&clean));
    let rebuild = bazel
        .run("fan", "build", &fan_args(nodes[2].grpc()), BUILD_LIMIT)
        .await;
    let text = Bazel::text(&rebuild);
    assert!(rebuild.status.success(), "{text}");
    assert!(text.contains("51 remote cache hit"), "{text}");
    // Nothing ran again anywhere.
    for (node, before) in nodes.iter().zip(&ran) {
        let after = metric(node.executor.ready.metrics, EXECUTIONS).await;
        assert_eq!(after, *before, "{} ran actions on the rebuild", node.id());
    }
}
