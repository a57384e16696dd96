//! The pods of the rendered StatefulSet: both containers run the right binary on the
//! right config, with real flag env variables, ports, probes and a data volume, and they
//! drain before Kubernetes kills them.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_norway::Value;

use crate::manifests::{Manifests, container_port};
use crate::problems::Problems;
use crate::yaml::{at, named, str_at, strings, u64_at, yaml};
use crate::{CHART, MANIFESTS, VALUES};

/// The `sleep N` seconds of a container's preStop hook.
fn pre_stop_seconds(container: &Value, name: &str) -> u64 {
    let command = strings(at(container, "lifecycle.preStop.exec.command"));
    match command.as_slice() {
        [sleep, seconds] if sleep == "sleep" => seconds
            .parse()
            .unwrap_or_else(|_| panic!("{MANIFESTS}: container {name} preStop sleeps {seconds:?}")),
        _ => panic!("{MANIFESTS}: container {name} preStop is not `sleep N`: {command:?}"),
    }
}

fn flag_envs(command: clap::Command) -> Vec<String> {
    command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn pods_wire_both_processes() {
    let values = yaml(VALUES);
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    let manifests = Manifests::load();
    let statefulset = manifests.statefulset();
    let pod = at(statefulset, "spec.template.spec");
    let proxy_config = manifests.proxy_config();
    let executor_config = manifests.executor_config();
    let mut problems = Problems::default();

    let names: Vec<_> = at(pod, "containers")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|container| str_at(container, "name", MANIFESTS))
        .collect();
    problems.same(
        &format!("{MANIFESTS} container names"),
        names,
        vec!["proxy", "executor"],
    );
    problems.same(
        &format!("{MANIFESTS} replicas vs {VALUES} replicaCount"),
        at(statefulset, "spec.replicas").as_u64(),
        at(&values, "replicaCount").as_u64(),
    );
    let image = format!(
        "{}:{}",
        str_at(&values, "image.repository", VALUES),
        str_at(&chart, "appVersion", CHART)
    );

    let config_map = manifests.only("ConfigMap");
    let config_volume = named(at(pod, "volumes"), "config").expect("a config volume");
    problems.same(
        &format!("{MANIFESTS} config volume vs the ConfigMap's name"),
        at(config_volume, "configMap.name"),
        at(config_map, "metadata.name"),
    );
    for (name, binary) in [("proxy", "remesh-proxy"), ("executor", "remesh-executor")] {
        let container = manifests.container(name);
        let what = format!("{MANIFESTS} container {name}");
        problems.same(
            &format!("{what} image"),
            str_at(container, "image", MANIFESTS),
            &image,
        );
        let command = strings(at(container, "command"));
        problems.same(
            &format!("{what} binary"),
            command.first(),
            Some(&binary.to_owned()),
        );
        let config_path = command
            .iter()
            .position(|arg| arg == "--config")
            .and_then(|index| command.get(index + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{what}: no --config in {command:?}"));
        let mount = named(at(container, "volumeMounts"), "config")
            .map(|mount| str_at(mount, "mountPath", MANIFESTS));
        problems.same(
            &format!("{what} --config directory vs its config mount"),
            config_path.parent().and_then(Path::to_str),
            mount,
        );
        let key = config_path.file_name().unwrap().to_str().unwrap();
        problems.check(
            at(config_map, "data")
                .get(key)
                .is_some_and(Value::is_string),
            || format!("{what} reads {key}, which the ConfigMap lacks"),
        );
    }
    problems.same(
        &format!("{MANIFESTS} proxy command"),
        strings(at(manifests.container("proxy"), "command"))
            .get(1)
            .cloned(),
        Some("serve".to_owned()),
    );

    // Environment: real flag variables, per-pod identity from the downward API.
    let proxy = manifests.container("proxy");
    let env = at(proxy, "env");
    let known = [
        (
            "REMESH_PROXY_",
            flag_envs(remesh_proxy::ServeArgs::command()),
        ),
        (
            "REMESH_EXECUTOR_",
            flag_envs(remesh_executor::Args::command()),
        ),
    ];
    for container in at(pod, "containers").as_sequence().unwrap() {
        for var in at(container, "env").as_sequence().into_iter().flatten() {
            let name = str_at(var, "name", MANIFESTS);
            for (prefix, envs) in &known {
                problems.check(
                    !name.starts_with(prefix) || envs.iter().any(|e| e == name),
                    || format!("{MANIFESTS}: {name} is no flag's environment variable"),
                );
            }
        }
    }
    let field_ref = |name: &str| {
        named(env, name).and_then(|var| at(var, "valueFrom.fieldRef.fieldPath").as_str())
    };
    let value = |name: &str| named(env, name).and_then(|var| at(var, "value").as_str());
    problems.same(
        &format!("{MANIFESTS} POD_NAME"),
        field_ref("POD_NAME"),
        Some("metadata.name"),
    );
    problems.same(
        &format!("{MANIFESTS} POD_IP"),
        field_ref("POD_IP"),
        Some("status.podIP"),
    );
    problems.same(
        &format!("{MANIFESTS} REMESH_PROXY_NODE_ID"),
        value("REMESH_PROXY_NODE_ID"),
        Some("$(POD_NAME)"),
    );
    for (var, port) in [
        ("REMESH_PROXY_GRPC_ADVERTISE", proxy_config.listen.port()),
        (
            "REMESH_PROXY_GOSSIP_ADVERTISE",
            proxy_config.gossip_listen.port(),
        ),
    ] {
        problems.same(
            &format!("{MANIFESTS} {var} vs proxy.toml's port"),
            value(var).map(str::to_owned),
            Some(format!("$(POD_IP):{port}")),
        );
    }

    // Ports: gossip is UDP only, and the probes hit the admin port.
    for (name, port, protocol) in [
        ("grpc", proxy_config.listen.port(), "TCP"),
        ("admin", proxy_config.admin_listen.port(), "TCP"),
        ("gossip", proxy_config.gossip_listen.port(), "UDP"),
    ] {
        let entry = named(at(proxy, "ports"), name);
        problems.same(
            &format!("{MANIFESTS} proxy container port {name}"),
            entry.map(|entry| {
                (
                    at(entry, "containerPort").as_u64(),
                    at(entry, "protocol").as_str(),
                )
            }),
            Some((Some(u64::from(port)), Some(protocol))),
        );
    }
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(proxy, &format!("{probe}.httpGet"));
        problems.same(
            &format!("{MANIFESTS} proxy {probe}"),
            (
                at(get, "path").as_str(),
                container_port(proxy, at(get, "port")),
            ),
            (
                Some(path),
                Some(u64::from(proxy_config.admin_listen.port())),
            ),
        );
    }

    // The executor's data directory is the data volume, a claim per pod by default.
    let executor = manifests.container("executor");
    problems.same(
        &format!("{MANIFESTS} executor data mount vs executor.toml data_dir"),
        named(at(executor, "volumeMounts"), "data").map(|m| str_at(m, "mountPath", MANIFESTS)),
        executor_config.data_dir.to_str(),
    );
    let claim = at(statefulset, "spec.volumeClaimTemplates")
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|claim| at(claim, "metadata.name").as_str() == Some("data"));
    problems.check(claim, || {
        format!("{MANIFESTS}: no volumeClaimTemplate named data")
    });
    let liveness = strings(at(executor, "livenessProbe.exec.command")).join(" ");
    problems.check(
        liveness.contains(&format!(
            "/dev/tcp/127.0.0.1/{}",
            executor_config.listen.port()
        )),
        || format!("{MANIFESTS} executor livenessProbe does not dial its listen port: {liveness}"),
    );
    problems.finish();
}

#[test]
fn pods_drain_before_they_are_killed() {
    let values = yaml(VALUES);
    let manifests = Manifests::load();
    let grace = u64_at(
        manifests.statefulset(),
        "spec.template.spec.terminationGracePeriodSeconds",
        MANIFESTS,
    );
    let proxy_pause = pre_stop_seconds(manifests.container("proxy"), "proxy");
    let executor_pause = pre_stop_seconds(manifests.container("executor"), "executor");
    let shutdown_grace = manifests.executor_config().shutdown_grace.as_secs();
    let mut problems = Problems::default();
    problems.check(grace > executor_pause + shutdown_grace, || {
        format!(
            "{MANIFESTS}: terminationGracePeriodSeconds {grace} must exceed the executor's \
             preStop {executor_pause}s + shutdown_grace {shutdown_grace}s"
        )
    });
    problems.check(grace > proxy_pause, || {
        format!("{MANIFESTS}: terminationGracePeriodSeconds {grace} ≤ proxy preStop {proxy_pause}")
    });
    problems.check(executor_pause >= proxy_pause, || {
        format!("{MANIFESTS}: the executor ({executor_pause}s) must outlive the proxy's preStop ({proxy_pause}s)")
    });
    for (path, found) in [
        ("terminationGracePeriodSeconds", grace),
        ("proxy.preStopSleepSeconds", proxy_pause),
        ("executor.preStopSleepSeconds", executor_pause),
    ] {
        problems.same(
            &format!("{MANIFESTS} vs {VALUES} {path}"),
            found,
            u64_at(&values, path, VALUES),
        );
    }
    problems.finish();
}
