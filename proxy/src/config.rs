//! The proxy's configuration: one TOML file, every field also a flag and an
//! environment variable. Precedence: flag or environment > file > default.
//!
//! `Config` is the whole, validated configuration `run` receives; `ServeArgs` is the
//! `serve` command line (every field optional so an absent flag keeps the file's value).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::channel::Endpoint;
use crate::config_security::SecurityArgs;
use crate::flow_control;
use crate::operation_name::NodeId;
use crate::tls::{ClientTlsConfig, MeshTlsConfig, ServerTlsConfig};

/// What kind of REAPI server the proxy fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendMode {
    /// remesh-executor: load comes from its `Load.Watch` stream.
    Executor,
    /// Any other REAPI server: the proxy counts open Execute streams against
    /// `capacity`.
    Generic,
}

/// How Execute picks a node (see `balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    LeastLoaded,
    P2c,
    Affinity,
}

/// Everything one proxy needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The gRPC port clients use, and peers too unless `peer_listen` is set. Port 0
    /// picks one.
    pub listen: SocketAddr,
    /// The address `listen` is reached at; defaults to `listen` once bound. Without
    /// `peer_listen` it is what peers dial, and must be given when `listen` is a
    /// wildcard address; with `peer_listen` it is only reported (`/cluster`).
    pub grpc_advertise: Option<SocketAddr>,
    /// A gRPC port for peers only, served with mutual TLS under `[mesh_tls]`
    /// (required with it): a connection must present a certificate chained to the
    /// mesh CA, and only connections here may mark a request as forwarded. `listen`
    /// then serves clients alone, over `[tls]` or h2c. Unset: peers share `listen`.
    pub peer_listen: Option<SocketAddr>,
    /// The address peers dial for `peer_listen` (gossiped as this node's gRPC
    /// address); defaults to `peer_listen` once bound, and must be given when
    /// `peer_listen` is a wildcard address.
    pub peer_advertise: Option<SocketAddr>,
    /// Plain HTTP: `/metrics`, `/healthz`, `/readyz`, `/cluster`.
    pub admin_listen: SocketAddr,
    /// The fill endpoint: a read-only REAPI cache for the local executor (its
    /// `backing_cache`, with `backing_read_only`) that answers its misses from the
    /// other members, so the nodes share blobs and action results without a shared
    /// storage service. Keep it on loopback. Unset: no fill endpoint.
    pub fill_listen: Option<SocketAddr>,
    /// UDP port of the SWIM gossip.
    pub gossip_listen: SocketAddr,
    /// The address peers send gossip to; same defaulting rule as `grpc_advertise`.
    pub gossip_advertise: Option<SocketAddr>,
    /// This node's name in the cluster and in operation names
    /// (1–63 of `[A-Za-z0-9._-]`). Must be unique in the cluster.
    pub node_id: String,
    /// The local REAPI backend, `grpc://host:port`.
    pub backend: String,
    pub backend_mode: BackendMode,
    /// The executor's Load service (`executor` mode); defaults to `backend`.
    pub backend_load: Option<String>,
    /// Gossip addresses (`host:port`) of members to join through. DNS names are
    /// re-resolved every `join_interval`, which is how a Kubernetes headless service
    /// works as a seed list.
    pub join: Vec<String>,
    /// How often to re-resolve and re-announce to `join` while this node knows no
    /// other member. Short: a lone node is a degraded cluster.
    #[serde(with = "humantime_serde")]
    pub join_interval: Duration,
    /// Actions the backend runs at once (`generic` mode only; must not be zero there).
    pub capacity: u32,
    pub policy: Policy,
    /// `affinity`: a node whose load exceeds this factor times the mean is skipped.
    /// Must be at least 1: below it, no node could ever qualify.
    pub affinity_load_factor: f64,
    /// Load heartbeat: a member's load is re-sent this often even when unchanged, so
    /// new members learn it. Changes that matter are sent at once regardless.
    #[serde(with = "humantime_serde")]
    pub load_heartbeat: Duration,
    /// Largest gRPC message the proxy buffers: one Operation in a renamed response (the
    /// Execute request itself is capped at 1 MiB below this). Other services stream
    /// through without a bound here.
    pub max_message_bytes: usize,
    /// HTTP/2 window of each stream on the gRPC listeners: bytes a client may send
    /// before the proxy has taken them (`flow_control::LISTENER_STREAM_WINDOW`
    /// says why 512 KiB). One stream uploads at most this much per round trip, so
    /// clients far away (tens of ms) want more.
    pub listen_stream_window: u32,
    /// Pass gRPC methods the proxy does not know to the backend instead of
    /// answering UNIMPLEMENTED.
    pub pass_unknown_methods: bool,
    /// How long dialing a backend or peer may take before trying elsewhere.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// TLS for clients on the gRPC listener. Without `peer_listen` peers share the
    /// listener, so it needs `mesh_tls` too (checked at start).
    pub tls: Option<ServerTlsConfig>,
    /// Mutual TLS between proxies, both directions: on `peer_listen` when set, else
    /// on the shared gRPC listener, which then needs `tls` (checked at start).
    pub mesh_tls: Option<MeshTlsConfig>,
    /// TLS towards a `grpcs://` backend; required by, and only allowed with, one.
    pub backend_tls: Option<ClientTlsConfig>,
    /// Keyring file sealing every gossip packet (`remesh-proxy keygen` makes one);
    /// reloaded when the file changes.
    pub gossip_keyring: Option<PathBuf>,
    /// Gossip in plaintext: anyone reaching the gossip port could join the mesh or
    /// declare members dead. Only for tests or an already private, encrypted
    /// network; a node with neither this nor `gossip_keyring` refuses to start.
    pub insecure_plaintext_gossip: bool,
    /// Threads serving connections; 0 means one per CPU. One (the default) runs the
    /// whole proxy on a single thread: a sidecar relaying frames spends most of its
    /// time in the kernel, and handing each stream between threads costs more
    /// wake-ups than a second thread wins back while the executor beside it wants
    /// the cores (README, Benchmarks).
    pub worker_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8990)),
            grpc_advertise: None,
            peer_listen: None,
            peer_advertise: None,
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9466)),
            fill_listen: None,
            gossip_listen: SocketAddr::from(([0, 0, 0, 0], 7946)),
            gossip_advertise: None,
            node_id: String::new(),
            backend: "grpc://127.0.0.1:8980".into(),
            backend_mode: BackendMode::Executor,
            backend_load: None,
            join: Vec::new(),
            join_interval: Duration::from_secs(10),
            capacity: 0,
            policy: Policy::LeastLoaded,
            affinity_load_factor: 1.25,
            load_heartbeat: Duration::from_secs(1),
            max_message_bytes: 16 << 20,
            listen_stream_window: flow_control::LISTENER_STREAM_WINDOW,
            pass_unknown_methods: false,
            connect_timeout: Duration::from_secs(3),
            tls: None,
            mesh_tls: None,
            backend_tls: None,
            gossip_keyring: None,
            insecure_plaintext_gossip: false,
            worker_threads: 1,
        }
    }
}

/// HTTP/2's initial window (RFC 9113 §6.9.2): less would slow every stream down.
const MIN_STREAM_WINDOW: u32 = 65_535;
/// The largest window HTTP/2 can express (RFC 9113 §6.9.1).
const MAX_STREAM_WINDOW: u32 = (1 << 31) - 1;

/// A configuration value that cannot work, naming the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads a TOML file; fields it does not name keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    /// The node id, validated (`validate` has checked it).
    pub fn node_id(&self) -> Result<NodeId, ConfigError> {
        NodeId::new(self.node_id.clone()).map_err(|error| invalid("node_id", error.to_string()))
    }

    /// Where the Load service is: `backend_load`, else the backend itself.
    pub fn load_endpoint(&self) -> &str {
        self.backend_load.as_deref().unwrap_or(&self.backend)
    }

    /// Checks the values no type can check, naming the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node_id()?;
        Endpoint::parse(&self.backend).map_err(|error| invalid("backend", error.to_string()))?;
        if let Some(load) = &self.backend_load {
            Endpoint::parse(load).map_err(|error| invalid("backend_load", error.to_string()))?;
        }
        if self.backend_mode == BackendMode::Generic && self.capacity == 0 {
            return Err(invalid(
                "capacity",
                "must not be zero with backend_mode generic",
            ));
        }
        for seed in &self.join {
            let valid = seed
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(invalid("join", format!("{seed:?} must be host:port")));
            }
        }
        if !(self.affinity_load_factor >= 1.0 && self.affinity_load_factor.is_finite()) {
            return Err(invalid("affinity_load_factor", "must be a number ≥ 1"));
        }
        for (field, value) in [
            ("join_interval", self.join_interval),
            ("load_heartbeat", self.load_heartbeat),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must not be zero"));
            }
        }
        if self.max_message_bytes < 64 << 10 {
            return Err(invalid("max_message_bytes", "must be at least 64 KiB"));
        }
        if !(MIN_STREAM_WINDOW..=MAX_STREAM_WINDOW).contains(&self.listen_stream_window) {
            return Err(invalid(
                "listen_stream_window",
                format!("must be from {MIN_STREAM_WINDOW} to {MAX_STREAM_WINDOW} bytes"),
            ));
        }
        match self.peer_listen {
            None if self.peer_advertise.is_some() => {
                return Err(invalid("peer_advertise", "is set but peer_listen is not"));
            }
            Some(peer) if peer == self.listen && peer.port() != 0 => {
                return Err(invalid(
                    "peer_listen",
                    "must differ from listen: peers get a port of their own",
                ));
            }
            _ => {}
        }
        self.validate_security()
    }
}

/// `remesh-proxy serve` command line. Every flag has an environment variable.
#[derive(Debug, Default, Parser)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "REMESH_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "REMESH_PROXY_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_PROXY_GRPC_ADVERTISE")]
    pub grpc_advertise: Option<SocketAddr>,
    /// The peers-only mutual-TLS gRPC port (needs the `[mesh_tls]` flags).
    #[arg(long, env = "REMESH_PROXY_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_PROXY_PEER_ADVERTISE")]
    pub peer_advertise: Option<SocketAddr>,
    #[arg(long, env = "REMESH_PROXY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// The fill endpoint for the local executor's misses (keep it on loopback).
    #[arg(long, env = "REMESH_PROXY_FILL_LISTEN")]
    pub fill_listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_PROXY_GOSSIP_LISTEN")]
    pub gossip_listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_PROXY_GOSSIP_ADVERTISE")]
    pub gossip_advertise: Option<SocketAddr>,
    #[arg(long, env = "REMESH_PROXY_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "REMESH_PROXY_BACKEND")]
    pub backend: Option<String>,
    #[arg(long, env = "REMESH_PROXY_BACKEND_MODE")]
    pub backend_mode: Option<BackendMode>,
    #[arg(long, env = "REMESH_PROXY_BACKEND_LOAD")]
    pub backend_load: Option<String>,
    /// Comma-separated `host:port` gossip addresses.
    #[arg(long, env = "REMESH_PROXY_JOIN", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    #[arg(long, env = "REMESH_PROXY_JOIN_INTERVAL", value_parser = humantime::parse_duration)]
    pub join_interval: Option<Duration>,
    #[arg(long, env = "REMESH_PROXY_CAPACITY")]
    pub capacity: Option<u32>,
    #[arg(long, env = "REMESH_PROXY_POLICY")]
    pub policy: Option<Policy>,
    #[arg(long, env = "REMESH_PROXY_AFFINITY_LOAD_FACTOR")]
    pub affinity_load_factor: Option<f64>,
    #[arg(long, env = "REMESH_PROXY_LOAD_HEARTBEAT", value_parser = humantime::parse_duration)]
    pub load_heartbeat: Option<Duration>,
    #[arg(long, env = "REMESH_PROXY_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Bytes one stream may send ahead on the gRPC listeners.
    #[arg(long, env = "REMESH_PROXY_LISTEN_STREAM_WINDOW")]
    pub listen_stream_window: Option<u32>,
    #[arg(long, env = "REMESH_PROXY_PASS_UNKNOWN_METHODS")]
    pub pass_unknown_methods: Option<bool>,
    #[arg(long, env = "REMESH_PROXY_CONNECT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Threads serving connections; 0 means one per CPU.
    #[arg(long, env = "REMESH_PROXY_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

impl ServeArgs {
    /// The file (or the defaults), overridden by every flag given, then validated.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! apply {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = self.$field { config.$field = value; })*
            };
        }
        apply!(
            listen,
            admin_listen,
            gossip_listen,
            node_id,
            backend,
            backend_mode,
            join,
            join_interval,
            capacity,
            policy,
            affinity_load_factor,
            load_heartbeat,
            max_message_bytes,
            listen_stream_window,
            pass_unknown_methods,
            connect_timeout,
            worker_threads,
        );
        for (slot, value) in [
            (&mut config.grpc_advertise, self.grpc_advertise),
            (&mut config.gossip_advertise, self.gossip_advertise),
            (&mut config.peer_listen, self.peer_listen),
            (&mut config.peer_advertise, self.peer_advertise),
            (&mut config.fill_listen, self.fill_listen),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        if let Some(url) = self.backend_load {
            config.backend_load = (!url.is_empty()).then_some(url);
        }
        self.security.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(node_id: &str) -> Config {
        Config {
            node_id: node_id.into(),
            ..Config::default()
        }
    }

    #[test]
    fn defaults_with_a_node_id_are_valid() {
        named("a").validate().unwrap();
        let error = Config::default().validate().unwrap_err().to_string();
        assert!(error.starts_with("node_id:"), "{error}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = toml::from_str::<Config>("node_id = \"a\"\nnode_idd = 3\n").unwrap_err();
        assert!(error.to_string().contains("node_idd"), "{error}");
    }

    #[test]
    fn enums_and_durations_read_as_written_on_the_command_line() {
        let config: Config = toml::from_str(
            "policy = \"least-loaded\"\nbackend_mode = \"generic\"\nload_heartbeat = \"1500ms\"",
        )
        .unwrap();
        assert_eq!(config.policy, Policy::LeastLoaded);
        assert_eq!(config.backend_mode, BackendMode::Generic);
        assert_eq!(config.load_heartbeat, Duration::from_millis(1500));
    }

    #[test]
    fn validate_names_the_field() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    backend_mode: BackendMode::Generic,
                    ..named("a")
                },
                "capacity:",
            ),
            (
                Config {
                    backend: "http://x".into(),
                    ..named("a")
                },
                "backend:",
            ),
            (
                Config {
                    join: vec!["nohost".into()],
                    ..named("a")
                },
                "join:",
            ),
            (
                Config {
                    affinity_load_factor: 0.5,
                    ..named("a")
                },
                "affinity_load_factor:",
            ),
            (named("a/b"), "node_id:"),
            (
                Config {
                    listen_stream_window: 1024,
                    ..named("a")
                },
                "listen_stream_window:",
            ),
            (
                Config {
                    listen_stream_window: 1 << 31,
                    ..named("a")
                },
                "listen_stream_window:",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            "node_id = \"file\"\ncapacity = 3\njoin = [\"a:1\"]\n",
        )
        .unwrap();
        let args = ServeArgs::try_parse_from([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--node-id",
            "flag",
            "--join",
            "b:2,c:3",
            "--policy",
            "p2c",
            "--listen-stream-window",
            "4194304",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.listen_stream_window, 4 << 20);
        assert_eq!(config.node_id, "flag");
        assert_eq!(config.capacity, 3);
        assert_eq!(config.join, ["b:2", "c:3"]);
        assert_eq!(config.policy, Policy::P2c);
    }
}
