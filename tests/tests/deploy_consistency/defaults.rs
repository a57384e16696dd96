//! Where the binaries' defaults are written down again: the example proxy config, the
//! chart's values and the Kubernetes guide.

use crate::problems::Problems;
use crate::yaml::{at, u64_at, yaml};
use crate::{VALUES, read, root};

#[test]
fn the_example_proxy_config_spells_out_the_defaults() {
    let example = remesh_proxy::Config::from_file(&root().join("deploy/proxy.toml")).unwrap();
    let defaults = remesh_proxy::Config::default();
    assert_eq!(
        remesh_proxy::Config {
            node_id: defaults.node_id.clone(),
            ..example
        },
        defaults,
        "deploy/proxy.toml must show the proxy's defaults (node_id aside)"
    );
}

#[test]
fn chart_values_are_the_binaries_defaults() {
    let values = yaml(VALUES);
    let proxy = remesh_proxy::Config::default();
    let executor = remesh_executor::Config::default();
    let mut problems = Problems::default();
    for (path, default) in [
        ("proxy.ports.grpc", proxy.listen.port()),
        ("proxy.ports.admin", proxy.admin_listen.port()),
        ("proxy.ports.gossip", proxy.gossip_listen.port()),
        ("executor.ports.grpc", executor.listen.port()),
        ("executor.ports.load", executor.load_listen.port()),
        ("executor.ports.metrics", executor.metrics_listen.port()),
    ] {
        problems.same(
            &format!("{VALUES} {path} vs the binary's default port"),
            u64_at(&values, path, VALUES),
            u64::from(default),
        );
    }
    for (path, default) in [
        ("executor.casMaxBytes", executor.cas_max_bytes),
        ("executor.runners", executor.runners as u64),
        ("executor.queueMax", executor.queue_max as u64),
        (
            "executor.shutdownGraceSeconds",
            executor.shutdown_grace.as_secs(),
        ),
    ] {
        problems.same(
            &format!("{VALUES} {path} vs remesh-executor's default"),
            u64_at(&values, path, VALUES),
            default,
        );
    }
    problems.same(
        &format!("{VALUES} proxy.policy vs remesh-proxy's default"),
        at(&values, "proxy.policy").clone(),
        serde_norway::to_value(proxy.policy).unwrap(),
    );
    problems.finish();
}

#[test]
fn the_kubernetes_guide_names_the_default_ports() {
    let guide = read("docs/kubernetes.md");
    let proxy = remesh_proxy::Config::default();
    let mut problems = Problems::default();
    for port in [
        proxy.listen.port(),
        proxy.admin_listen.port(),
        proxy.gossip_listen.port(),
    ] {
        problems.check(guide.contains(&port.to_string()), || {
            format!("docs/kubernetes.md does not mention the proxy's default port {port}")
        });
    }
    problems.finish();
}
