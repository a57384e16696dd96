//! The chart rendered with its defaults (`deploy/k8s/remesh.yaml`), looked up by kind
//! and name.

use serde_norway::Value;

use crate::MANIFESTS;
use crate::yaml::{at, named, yaml_documents};

/// The default-values render in `deploy/k8s/`, by kind and name.
pub struct Manifests(Vec<Value>);

impl Manifests {
    pub fn load() -> Self {
        Self(yaml_documents(MANIFESTS))
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.0
            .iter()
            .find(|doc| {
                at(doc, "kind").as_str() == Some(kind)
                    && at(doc, "metadata.name").as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("{MANIFESTS}: no {kind} named {name}"))
    }

    pub fn only(&self, kind: &str) -> &Value {
        let found: Vec<_> = self
            .0
            .iter()
            .filter(|doc| at(doc, "kind").as_str() == Some(kind))
            .collect();
        assert_eq!(found.len(), 1, "{MANIFESTS}: expected one {kind}");
        found[0]
    }

    pub fn statefulset(&self) -> &Value {
        self.only("StatefulSet")
    }

    pub fn container(&self, name: &str) -> &Value {
        named(
            at(self.statefulset(), "spec.template.spec.containers"),
            name,
        )
        .unwrap_or_else(|| panic!("{MANIFESTS}: the StatefulSet has no container {name}"))
    }

    pub fn config_file(&self, key: &str) -> String {
        let config_map = self.only("ConfigMap");
        // Keys like `proxy.toml` hold a dot, so no dotted path here.
        at(config_map, "data")
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{MANIFESTS}: the ConfigMap has no {key}"))
            .to_owned()
    }

    pub fn proxy_config(&self) -> remesh_proxy::Config {
        toml::from_str(&self.config_file("proxy.toml"))
            .unwrap_or_else(|error| panic!("{MANIFESTS}: ConfigMap proxy.toml: {error}"))
    }

    pub fn executor_config(&self) -> remesh_executor::Config {
        toml::from_str(&self.config_file("executor.toml"))
            .unwrap_or_else(|error| panic!("{MANIFESTS}: ConfigMap executor.toml: {error}"))
    }
}

/// The number of a container port given by name or number.
pub fn container_port(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(number) => number.as_u64(),
        Value::String(name) => named(at(container, "ports"), name)
            .and_then(|entry| at(entry, "containerPort").as_u64()),
        _ => None,
    }
}
