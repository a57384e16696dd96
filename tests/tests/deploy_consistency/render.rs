//! The rendered manifests follow the chart: the ConfigMap's configs agree with the
//! values and with each other, the config checksum covers them, and the chart's version
//! and render follow the workspace.

use std::net::SocketAddr;

use serde_norway::Value;
use sha2::{Digest, Sha256};

use crate::manifests::Manifests;
use crate::problems::Problems;
use crate::yaml::{at, str_at, u64_at, yaml};
use crate::{CHART, MANIFESTS, NAMESPACE, VALUES, read};

/// The port of `grpc://host:port`.
fn endpoint_addr(url: &str, file: &str) -> SocketAddr {
    url.strip_prefix("grpc://")
        .and_then(|rest| rest.parse().ok())
        .unwrap_or_else(|| panic!("{file}: {url:?} is not grpc://ip:port"))
}

#[test]
fn rendered_configs_agree_with_the_values() {
    let values = yaml(VALUES);
    let manifests = Manifests::load();
    let proxy = manifests.proxy_config();
    let executor = manifests.executor_config();
    let mut problems = Problems::default();
    let file = format!("{MANIFESTS} ConfigMap");

    // The pod supplies node_id; with it, the binary must accept the file.
    let named_proxy = remesh_proxy::Config {
        node_id: "remesh-0".into(),
        ..proxy.clone()
    };
    if let Err(error) = named_proxy.validate() {
        problems.push(format!("{file} proxy.toml: {error}"));
    }
    if let Err(error) = executor.validate() {
        problems.push(format!("{file} executor.toml: {error}"));
    }
    for (field, addr, path) in [
        ("listen", proxy.listen, "proxy.ports.grpc"),
        ("admin_listen", proxy.admin_listen, "proxy.ports.admin"),
        ("gossip_listen", proxy.gossip_listen, "proxy.ports.gossip"),
    ] {
        problems.check(addr.ip().is_unspecified(), || {
            format!("{file} proxy.toml {field} = {addr}: must bind every interface")
        });
        problems.same(
            &format!("{file} proxy.toml {field} port vs {VALUES} {path}"),
            u64::from(addr.port()),
            u64_at(&values, path, VALUES),
        );
    }
    for (field, addr, path) in [
        ("listen", executor.listen, "executor.ports.grpc"),
        ("load_listen", executor.load_listen, "executor.ports.load"),
        (
            "metrics_listen",
            executor.metrics_listen,
            "executor.ports.metrics",
        ),
    ] {
        problems.check(addr.ip().is_loopback(), || {
            format!("{file} executor.toml {field} = {addr}: must stay on loopback")
        });
        problems.same(
            &format!("{file} executor.toml {field} port vs {VALUES} {path}"),
            u64::from(addr.port()),
            u64_at(&values, path, VALUES),
        );
    }
    problems.same(
        &format!("{file} proxy.toml backend vs executor.toml listen"),
        endpoint_addr(&proxy.backend, MANIFESTS),
        executor.listen,
    );
    problems.same(
        &format!("{file} proxy.toml backend_load vs executor.toml load_listen"),
        endpoint_addr(proxy.load_endpoint(), MANIFESTS),
        executor.load_listen,
    );
    problems.same(
        &format!("{file} proxy.toml backend_mode"),
        serde_norway::to_value(proxy.backend_mode).unwrap(),
        Value::String("executor".into()),
    );
    problems.same(
        &format!("{file} executor.toml data_dir vs {VALUES} executor.dataDir"),
        executor.data_dir.to_str().unwrap(),
        str_at(&values, "executor.dataDir", VALUES),
    );
    for (field, found, path) in [
        (
            "cas_max_bytes",
            executor.cas_max_bytes,
            "executor.casMaxBytes",
        ),
        ("runners", executor.runners as u64, "executor.runners"),
        ("queue_max", executor.queue_max as u64, "executor.queueMax"),
        (
            "shutdown_grace",
            executor.shutdown_grace.as_secs(),
            "executor.shutdownGraceSeconds",
        ),
    ] {
        problems.same(
            &format!("{file} executor.toml {field} vs {VALUES} {path}"),
            found,
            u64_at(&values, path, VALUES),
        );
    }

    // replicaCount > 1 turns clustering on: the proxies join the headless Service.
    let headless = at(manifests.statefulset(), "spec.serviceName")
        .as_str()
        .expect("StatefulSet serviceName");
    let expected_join = format!(
        "{headless}.{NAMESPACE}.svc.{}:{}",
        str_at(&values, "clusterDomain", VALUES),
        proxy.gossip_listen.port()
    );
    problems.check(u64_at(&values, "replicaCount", VALUES) > 1, || {
        format!("{VALUES}: replicaCount must stay > 1 for this render to show clustering")
    });
    problems.same(
        &format!("{file} proxy.toml join vs the headless Service"),
        proxy.join.clone(),
        vec![expected_join],
    );

    // No backingCache in the values: the executors fill each other's misses through
    // their proxy's loopback fill endpoint, which they may only read.
    problems.check(
        str_at(&values, "executor.backingCache", VALUES).is_empty(),
        || {
            format!(
                "{VALUES}: executor.backingCache must stay empty for this render to show peer fill"
            )
        },
    );
    match proxy.fill_listen {
        Some(fill) => {
            problems.check(fill.ip().is_loopback(), || {
                format!("{file} proxy.toml fill_listen = {fill}: must stay on loopback")
            });
            problems.same(
                &format!("{file} proxy.toml fill_listen port vs {VALUES} proxy.ports.fill"),
                u64::from(fill.port()),
                u64_at(&values, "proxy.ports.fill", VALUES),
            );
            problems.same(
                &format!("{file} executor.toml backing_cache vs proxy.toml fill_listen"),
                executor
                    .backing_cache
                    .as_deref()
                    .map(|url| endpoint_addr(url, MANIFESTS)),
                Some(fill),
            );
            problems.check(executor.backing_read_only, || {
                format!(
                    "{file} executor.toml: backing_read_only must be true with the fill endpoint"
                )
            });
        }
        None => problems.push(format!(
            "{file} proxy.toml: no fill_listen in a cluster without a backing cache"
        )),
    }
    problems.finish();
}

#[test]
fn the_config_checksum_covers_the_rendered_configs() {
    // _helpers.tpl: sha256 of proxy.toml, a newline, executor.toml (no trailing newlines).
    let manifests = Manifests::load();
    let proxy = manifests.config_file("proxy.toml");
    let executor = manifests.config_file("executor.toml");
    let digest = Sha256::digest(format!("{}\n{}", proxy.trim_end(), executor.trim_end()));
    assert_eq!(
        at(
            manifests.statefulset(),
            "spec.template.metadata.annotations"
        )
        .get("checksum/config")
        .and_then(Value::as_str),
        Some(hex::encode(digest).as_str()),
        "{MANIFESTS}: checksum/config does not match the ConfigMap's files"
    );
}

#[test]
fn the_chart_and_its_render_follow_the_workspace() {
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    let workspace: toml::Table = read("Cargo.toml").parse().unwrap();
    let version = workspace["workspace"]["package"]["version"]
        .as_str()
        .unwrap();
    let mut problems = Problems::default();
    // The image tag defaults to appVersion: it names the binaries' version.
    problems.same(
        &format!("{CHART}/Chart.yaml appVersion vs Cargo.toml workspace.package.version"),
        str_at(&chart, "appVersion", CHART),
        version,
    );
    let rendered = read(MANIFESTS);
    problems.check(!rendered.contains("{{"), || {
        format!("{MANIFESTS}: holds unrendered template syntax")
    });
    problems.check(
        !rendered.contains("namespace:") || rendered.contains(&format!("namespace: {NAMESPACE}")),
        || format!("{MANIFESTS}: rendered for another namespace than {NAMESPACE}"),
    );
    problems.finish();
}
