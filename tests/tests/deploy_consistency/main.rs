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
//!
//! # Layout
//! - `yaml`: reading the YAML files and looking values up by dotted path.
//! - `problems`: collecting every disagreement of one test before failing.
//! - `manifests`: the rendered manifests in `deploy/k8s/`, by kind and name.
//! - `parsing`: every YAML and TOML file under `deploy/` parses and validates.
//! - `defaults`: the example proxy config, the chart values and the Kubernetes guide
//!   against the binaries' defaults.
//! - `render`: the rendered manifests against the chart: configs, checksum, version.
//! - `services`: the Services and the PodDisruptionBudget select the pods.
//! - `pods`: the containers, their env variables, ports, probes, volumes and shutdown.
//! - `dockerfile`: the image builds and exposes both binaries.
//! - `templates`: the chart's templates reference only documented values.
//! - `standalone`: the standalone-proxy values make a valid proxy.
//! - `tls`: the TLS, mesh TLS and keyring sections the chart renders.

use std::path::{Path, PathBuf};

mod defaults;
mod dockerfile;
mod manifests;
mod parsing;
mod pods;
mod problems;
mod render;
mod services;
mod standalone;
mod templates;
mod tls;
mod yaml;

const CHART: &str = "deploy/helm/remesh";
const VALUES: &str = "deploy/helm/remesh/values.yaml";
const MANIFESTS: &str = "deploy/k8s/remesh.yaml";
const STANDALONE: &str = "deploy/values-standalone-proxy.yaml";
const DOCKERFILE: &str = "deploy/Dockerfile";
/// What `deploy/k8s/` was rendered with.
const NAMESPACE: &str = "default";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
}
