//! The deployment files agree with each other and with the binaries.
//!
//! The same ports, names and timings are written down in several places: the binaries'
//! `Config::default()`, the example TOML configs, the Dockerfile's EXPOSE lines, the Helm
//! chart's values and templates, and the manifests in `deploy/k8s/` (the chart rendered
//! with its defaults, for people without Helm). Nothing but this test ties them
//! together, so each check names the file that disagrees.
//!
//! Parsed, not pattern-matched: YAML with a YAML parser (templates excepted: they are
//! Go templates, only their `.Values` references are checked), TOML as the binaries'
//! own `Config` types, so a config the binary would refuse fails here too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde::Deserialize;
use serde_norway::Value;
use sha2::{Digest, Sha256};

const CHART: &str = "deploy/helm/remesh";
const VALUES: &str = "deploy/helm/remesh/values.yaml";
const MANIFESTS: &str = "deploy/k8s/remesh.yaml";
const STANDALONE: &str = "deploy/values-standalone-proxy.yaml";
const DOCKERFILE: &str = "deploy/Dockerfile";
/// What `deploy/k8s/` was rendered with.
const NAMESPACE: &str = "default";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// Every document of a (multi-document) YAML file; empty documents are skipped.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value =
            Value::deserialize(document).unwrap_or_else(|error| panic!("{relative}: {error}"));
        if !value.is_null() {
            documents.push(value);
        }
    }
    documents
}

fn yaml(relative: &str) -> Value {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative}: expected one YAML document");
    documents.remove(0)
}

/// `at(v, "a.b.c")`: nested mapping lookup, `Null` when any step is missing.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .try_fold(value, |current, key| current.get(key))
        .unwrap_or(&NULL)
}

fn u64_at(value: &Value, path: &str, file: &str) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: {path} is not a number"))
}

fn str_at<'a>(value: &'a Value, path: &str, file: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{file}: {path} is not a string"))
}

/// The element named `name` of a list of `{name: …}` mappings.
fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_sequence()?
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => serde_norway::to_string(other).unwrap().trim().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The port of `grpc://host:port`.
fn endpoint_addr(url: &str, file: &str) -> SocketAddr {
    url.strip_prefix("grpc://")
        .and_then(|rest| rest.parse().ok())
        .unwrap_or_else(|| panic!("{file}: {url:?} is not grpc://ip:port"))
}

/// Collects every disagreement, then fails once with all of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn same<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, found: T, expected: T) {
        self.check(found == expected, || {
            format!("{what}: found {found:?}, expected {expected:?}")
        });
    }

    fn finish(self) {
        assert!(self.0.is_empty(), "\n{}\n", self.0.join("\n"));
    }
}

/// The default-values render in `deploy/k8s/`, by kind and name.
struct Manifests(Vec<Value>);

impl Manifests {
    fn load() -> Self {
        Self(yaml_documents(MANIFESTS))
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.0
            .iter()
            .find(|doc| {
                at(doc, "kind").as_str() == Some(kind)
                    && at(doc, "metadata.name").as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("{MANIFESTS}: no {kind} named {name}"))
    }

    fn only(&self, kind: &str) -> &Value {
        let found: Vec<_> = self
            .0
            .iter()
            .filter(|doc| at(doc, "kind").as_str() == Some(kind))
            .collect();
        assert_eq!(found.len(), 1, "{MANIFESTS}: expected one {kind}");
        found[0]
    }

    fn statefulset(&self) -> &Value {
        self.only("StatefulSet")
    }

    fn container(&self, name: &str) -> &Value {
        named(
            at(self.statefulset(), "spec.template.spec.containers"),
            name,
        )
        .unwrap_or_else(|| panic!("{MANIFESTS}: the StatefulSet has no container {name}"))
    }

    fn config_file(&self, key: &str) -> String {
        let config_map = self.only("ConfigMap");
        // Keys like `proxy.toml` hold a dot, so no dotted path here.
        at(config_map, "data")
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{MANIFESTS}: the ConfigMap has no {key}"))
            .to_owned()
    }

    fn proxy_config(&self) -> remesh_proxy::Config {
        toml::from_str(&self.config_file("proxy.toml"))
            .unwrap_or_else(|error| panic!("{MANIFESTS}: ConfigMap proxy.toml: {error}"))
    }

    fn executor_config(&self) -> remesh_executor::Config {
        toml::from_str(&self.config_file("executor.toml"))
            .unwrap_or_else(|error| panic!("{MANIFESTS}: ConfigMap executor.toml: {error}"))
    }
}

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

/// The number of a container port given by name or number.
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(number) => number.as_u64(),
        Value::String(name) => named(at(container, "ports"), name)
            .and_then(|entry| at(entry, "containerPort").as_u64()),
        _ => None,
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
fn every_deploy_file_parses() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // Templates are Go templates, not YAML.
            if path.is_dir() && !path.ends_with("templates") {
                walk(&path, found);
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    let mut problems = Problems::default();
    let (mut yaml_files, mut toml_files) = (0, 0);
    for path in &files {
        let relative = path.strip_prefix(root()).unwrap().to_str().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("yaml" | "yml") => {
                yaml_files += 1;
                problems.check(!yaml_documents(relative).is_empty(), || {
                    format!("{relative}: no YAML document")
                });
            }
            Some("toml") => {
                toml_files += 1;
                let outcome = if name.starts_with("proxy") {
                    remesh_proxy::Config::from_file(path)
                        .and_then(|config| config.validate())
                        .map_err(|error| error.to_string())
                } else if name.starts_with("executor") {
                    remesh_executor::Config::from_file(path)
                        .and_then(|config| config.validate())
                        .map_err(|error| error.to_string())
                } else {
                    Err("name it proxy*.toml or executor*.toml so its binary is known".into())
                };
                problems.check(outcome.is_ok(), || {
                    format!("{relative}: {}", outcome.unwrap_err())
                });
            }
            _ => {}
        }
    }
    problems.check(yaml_files >= 4 && toml_files >= 2, || {
        format!("deploy/: found only {yaml_files} YAML and {toml_files} TOML files")
    });
    problems.finish();
}

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
        problems.0.push(format!("{file} proxy.toml: {error}"));
    }
    if let Err(error) = executor.validate() {
        problems.0.push(format!("{file} executor.toml: {error}"));
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
    problems.finish();
}

#[test]
fn services_find_every_pod() {
    let values = yaml(VALUES);
    let manifests = Manifests::load();
    let statefulset = manifests.statefulset();
    let proxy_container = manifests.container("proxy");
    let pod_labels = at(statefulset, "spec.template.metadata.labels");
    let gossip_port = u64_at(&values, "proxy.ports.gossip", VALUES);
    let grpc_port = u64_at(&values, "proxy.ports.grpc", VALUES);
    let mut problems = Problems::default();

    let headless_name = str_at(statefulset, "spec.serviceName", MANIFESTS);
    let headless = manifests.get("Service", headless_name);
    problems.same(
        &format!("{MANIFESTS} Service {headless_name} clusterIP"),
        at(headless, "spec.clusterIP").as_str(),
        Some("None"),
    );
    problems.same(
        &format!("{MANIFESTS} Service {headless_name} publishNotReadyAddresses"),
        at(headless, "spec.publishNotReadyAddresses").as_bool(),
        Some(true),
    );
    let client = manifests.get("Service", str_at(statefulset, "metadata.name", MANIFESTS));
    for (service, port_name, port, protocol) in [
        (headless, "gossip", gossip_port, "UDP"),
        (headless, "grpc", grpc_port, "TCP"),
        (client, "grpc", grpc_port, "TCP"),
    ] {
        let service_name = str_at(service, "metadata.name", MANIFESTS);
        let what = format!("{MANIFESTS} Service {service_name} port {port_name}");
        let Some(entry) = named(at(service, "spec.ports"), port_name) else {
            problems.0.push(format!("{what}: missing"));
            continue;
        };
        problems.same(
            &format!("{what} port"),
            at(entry, "port").as_u64(),
            Some(port),
        );
        problems.same(
            &format!("{what} protocol"),
            at(entry, "protocol").as_str(),
            Some(protocol),
        );
        problems.same(
            &format!("{what} targetPort (proxy container port)"),
            container_port(proxy_container, at(entry, "targetPort")),
            Some(port),
        );
        let selector = at(service, "spec.selector").as_mapping();
        problems.check(
            selector.is_some_and(|selector| {
                !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
            }),
            || format!("{MANIFESTS} Service {service_name} selector does not match the pods"),
        );
    }
    let budget = manifests.only("PodDisruptionBudget");
    problems.same(
        &format!("{MANIFESTS} PodDisruptionBudget selector vs the StatefulSet's"),
        at(budget, "spec.selector"),
        at(statefulset, "spec.selector"),
    );
    problems.finish();
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
fn the_image_builds_and_exposes_both_binaries() {
    let dockerfile = read(DOCKERFILE);
    // Join continuation lines so each instruction is one line.
    let instructions: Vec<String> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let with = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter_map(|line| line.strip_prefix(keyword))
            .filter_map(|rest| rest.strip_prefix(' '))
            .collect()
    };
    let exposed: Vec<String> = with("EXPOSE")
        .iter()
        .flat_map(|rest| rest.split_whitespace())
        .map(|port| {
            if port.contains('/') {
                port.to_owned()
            } else {
                format!("{port}/tcp")
            }
        })
        .collect();
    let proxy = remesh_proxy::Config::default();
    let executor = remesh_executor::Config::default();
    let mut problems = Problems::default();
    for (what, port, protocol) in [
        ("proxy listen", proxy.listen.port(), "tcp"),
        ("proxy admin_listen", proxy.admin_listen.port(), "tcp"),
        ("proxy gossip_listen", proxy.gossip_listen.port(), "udp"),
        ("executor listen", executor.listen.port(), "tcp"),
        ("executor load_listen", executor.load_listen.port(), "tcp"),
        (
            "executor metrics_listen",
            executor.metrics_listen.port(),
            "tcp",
        ),
    ] {
        let wanted = format!("{port}/{protocol}");
        problems.check(exposed.contains(&wanted), || {
            format!("{DOCKERFILE}: EXPOSE lacks {wanted} ({what} default); has {exposed:?}")
        });
    }
    let gossip_tcp = format!("{}/tcp", proxy.gossip_listen.port());
    problems.check(!exposed.contains(&gossip_tcp), || {
        format!("{DOCKERFILE}: gossip is UDP only, yet {gossip_tcp} is exposed")
    });
    problems.check(with("FROM").len() >= 2, || {
        format!("{DOCKERFILE}: not multi-stage")
    });
    let build = with("RUN")
        .into_iter()
        .find(|run| run.contains("cargo build"));
    problems.check(
        build.is_some_and(|build| {
            ["--release", "--locked", "-p remesh-executor", "-p remesh-proxy"]
                .iter()
                .all(|part| build.contains(part))
        }),
        || format!("{DOCKERFILE}: no `cargo build --release --locked -p remesh-executor -p remesh-proxy`"),
    );
    problems.check(
        with("COPY").iter().any(|copy| {
            copy.starts_with("--from=")
                && copy.contains("remesh-proxy")
                && copy.contains("remesh-executor")
                && copy.ends_with("/usr/local/bin/")
        }),
        || format!("{DOCKERFILE}: does not copy both binaries to /usr/local/bin/"),
    );
    let user = with("USER").last().map(|user| user.to_string());
    problems.check(
        user.as_deref()
            .is_some_and(|user| !["root", "0", "0:0"].contains(&user)),
        || format!("{DOCKERFILE}: the runtime stage must end as a non-root USER, has {user:?}"),
    );
    let packages = ["bash", "coreutils", "ca-certificates"];
    problems.check(
        with("RUN")
            .iter()
            .any(|run| packages.iter().all(|p| run.contains(p))),
        || format!("{DOCKERFILE}: the runtime must install {packages:?}"),
    );
    // cargo needs every workspace member in the build context.
    let workspace: toml::Table = read("Cargo.toml").parse().unwrap();
    let copies = with("COPY");
    for member in workspace["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        problems.check(
            copies
                .iter()
                .any(|copy| copy.split_whitespace().next() == Some(member)),
            || format!("{DOCKERFILE}: workspace member {member} is not copied into the builder"),
        );
    }
    problems.finish();
}

#[test]
fn templates_use_only_documented_values() {
    let values = yaml(VALUES);
    let mut problems = Problems::default();
    let dir = root().join(CHART).join("templates");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.strip_prefix(root()).unwrap().display().to_string();
        for (start, _) in text.match_indices(".Values.") {
            let reference: String = text[start + ".Values.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let reference = reference.trim_end_matches('.');
            // A key present in values.yaml, or one inside a map values.yaml leaves empty.
            let mut current = &values;
            for key in reference.split('.') {
                match current.get(key) {
                    Some(next) => current = next,
                    None => {
                        let open_map = current.as_mapping().is_some_and(|map| map.is_empty());
                        problems.check(open_map, || {
                            format!("{file}: .Values.{reference} is not in {VALUES}")
                        });
                        break;
                    }
                }
            }
        }
    }
    problems.finish();
}

#[test]
fn the_standalone_proxy_values_make_a_valid_proxy() {
    let values = yaml(VALUES);
    let standalone = yaml(STANDALONE);
    let mut problems = Problems::default();
    problems.same(
        &format!("{STANDALONE} executor.enabled"),
        at(&standalone, "executor.enabled").as_bool(),
        Some(false),
    );
    // What _helpers.tpl renders into proxy.toml without an executor, plus proxy.config.
    let mut config = serde_json::json!({
        "node_id": "remesh-0",
        "backend": str_at(&standalone, "backend.address", STANDALONE),
        "backend_mode": str_at(&standalone, "backend.mode", STANDALONE),
        "capacity": u64_at(&standalone, "backend.capacity", STANDALONE),
    });
    for file_values in [(&values, VALUES), (&standalone, STANDALONE)] {
        let (file_values, file) = file_values;
        let extra: serde_json::Value =
            serde_json::to_value(at(file_values, "proxy.config")).unwrap();
        for (key, value) in extra.as_object().into_iter().flatten() {
            config[key] = value.clone();
        }
        problems.check(at(file_values, "proxy.config").is_mapping(), || {
            format!("{file}: proxy.config must be a map")
        });
    }
    match serde_json::from_value::<remesh_proxy::Config>(config) {
        Ok(config) => {
            if let Err(error) = config.validate() {
                problems
                    .0
                    .push(format!("{STANDALONE}: the proxy would refuse it: {error}"));
            }
        }
        Err(error) => problems
            .0
            .push(format!("{STANDALONE}: not a proxy config: {error}")),
    }
    let grace = at(&standalone, "terminationGracePeriodSeconds")
        .as_u64()
        .unwrap_or_else(|| u64_at(&values, "terminationGracePeriodSeconds", VALUES));
    problems.check(
        grace > u64_at(&values, "proxy.preStopSleepSeconds", VALUES),
        || format!("{STANDALONE}: terminationGracePeriodSeconds must exceed the proxy's preStop"),
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

#[test]
fn tls_and_keyring_sections_fit_the_proxy_config() {
    // What _helpers.tpl adds to proxy.toml when tls, meshTls and gossipKeyring are on,
    // with the files where the StatefulSet mounts the Secrets: each must parse and
    // validate as the proxy's configuration.
    let values = yaml(VALUES);
    let tls = str_at(&values, "tls.mountPath", VALUES);
    let mesh = str_at(&values, "meshTls.mountPath", VALUES);
    let keyring = str_at(&values, "gossipKeyring.mountPath", VALUES);
    let sections = [
        (
            "gossip_keyring",
            format!("gossip_keyring = \"{keyring}/keyring\"\n"),
        ),
        (
            "tls",
            format!(
                "[tls]\ncert_file = \"{tls}/tls.crt\"\nkey_file = \"{tls}/tls.key\"\n\
                 client_auth = \"required\"\nclient_ca_file = \"{tls}/ca.crt\"\n"
            ),
        ),
        (
            "mesh_tls",
            format!(
                "[mesh_tls]\nca_file = \"{mesh}/ca.crt\"\ncert_file = \"{mesh}/tls.crt\"\n\
                 key_file = \"{mesh}/tls.key\"\n"
            ),
        ),
    ];
    let mut problems = Problems::default();
    for (field, section) in sections {
        let text = format!("node_id = \"remesh-0\"\n{section}");
        match toml::from_str::<remesh_proxy::Config>(&text) {
            Err(error) => problems.0.push(format!(
                "{CHART}/templates/_helpers.tpl renders `{field}` the proxy refuses: {error}"
            )),
            Ok(config) => {
                if let Err(error) = config.validate() {
                    problems
                        .0
                        .push(format!("{CHART}/templates/_helpers.tpl `{field}`: {error}"));
                }
            }
        }
    }
    problems.finish();
}

#[test]
fn mesh_tls_values_make_a_node_that_may_start() {
    // What _helpers.tpl renders with meshTls on (a peer port with [mesh_tls]),
    // with and without tls: the proxy must accept it at start, not only parse it.
    // tls alone is refused, as values.yaml says.
    let values = yaml(VALUES);
    let peer = u64_at(&values, "proxy.ports.peer", VALUES);
    let tls = str_at(&values, "tls.mountPath", VALUES);
    let mesh = str_at(&values, "meshTls.mountPath", VALUES);
    let keyring = str_at(&values, "gossipKeyring.mountPath", VALUES);
    let top = format!("node_id = \"remesh-0\"\ngossip_keyring = \"{keyring}/keyring\"\n");
    let peer_listen = format!("peer_listen = \"0.0.0.0:{peer}\"\n");
    let tls_section = format!(
        "[tls]\ncert_file = \"{tls}/tls.crt\"\nkey_file = \"{tls}/tls.key\"\nclient_auth = \"off\"\n"
    );
    let mesh_section = format!(
        "[mesh_tls]\nca_file = \"{mesh}/ca.crt\"\ncert_file = \"{mesh}/tls.crt\"\n\
         key_file = \"{mesh}/tls.key\"\n"
    );
    let mut problems = Problems::default();
    let proxy = remesh_proxy::Config::default();
    problems.check(
        ![proxy.listen.port(), proxy.admin_listen.port()].contains(&(peer as u16)),
        || format!("{VALUES}: proxy.ports.peer {peer} collides with another proxy port"),
    );
    for (what, text, may_start) in [
        ("meshTls", format!("{top}{peer_listen}{mesh_section}"), true),
        (
            "tls and meshTls",
            format!("{top}{peer_listen}{tls_section}{mesh_section}"),
            true,
        ),
        ("tls alone", format!("{top}{tls_section}"), false),
    ] {
        let outcome = toml::from_str::<remesh_proxy::Config>(&text)
            .map_err(|error| error.to_string())
            .and_then(|config| {
                config.validate().map_err(|error| error.to_string())?;
                config
                    .check_security_at_start()
                    .map_err(|error| error.to_string())
            });
        problems.check(outcome.is_ok() == may_start, || {
            format!("{CHART}/templates/_helpers.tpl with {what}: {outcome:?}")
        });
    }
    problems.finish();
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
