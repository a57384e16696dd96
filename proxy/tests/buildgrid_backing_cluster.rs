//! BuildGrid (cache-only, instance `main`) as the shared backing cache (tier 2) of a
//! three-node cluster: every executor reads and writes through it. A real Bazel builds
//! `fan` against node a, which has one runner, so b and c run most actions: they can
//! only get the inputs Bazel uploaded to a (and the fan-in's inputs, made on other
//! nodes) through BuildGrid. After `bazel clean`, a rebuild against node c is served
//! entirely from the cache, including results c never computed itself.

mod support;

use support::node::{NodeSpec, start_cluster};
use support::real::{BAZEL, Bazel, BuildGrid, require};
use support::shared_tier::{build_fan_across, rebuild_from_cache};

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

    let ran = build_fan_across(&bazel, &nodes).await;
    rebuild_from_cache(&bazel, &nodes, &ran).await;
}
