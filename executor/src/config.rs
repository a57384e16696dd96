//! The executor's configuration: one TOML file, every field also a flag and an
//! environment variable. Precedence: flag or environment > file > default.
//!
//! `Config` is the whole, validated configuration `run` receives; `Args` is the command
//! line (every field optional so that an absent flag leaves the file's value alone).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// Everything one executor needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The gRPC port serving every REAPI service, health and Load. Port 0 picks one.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` over plain HTTP.
    pub metrics_listen: SocketAddr,
    /// A second gRPC port serving only `remesh.load.v1.Load` and health, meant for the
    /// co-located proxy. Keep it on loopback: it needs no authentication because of that.
    pub load_listen: SocketAddr,
    /// Holds the CAS, the action cache and the actions' work directories. Nothing is
    /// ever written outside it.
    pub data_dir: PathBuf,
    /// Size bound of the local CAS in bytes; least recently used blobs are evicted
    /// past it. Must hold the largest single action's inputs and outputs. A blob larger
    /// than this is refused up front (INVALID_ARGUMENT) by every upload path.
    pub cas_max_bytes: u64,
    /// Optional second storage tier: any REAPI CAS/AC endpoint, `grpc://host:port` or
    /// `grpcs://host:port`. Reads fall through to it, writes go to both.
    pub backing_cache: Option<String>,
    /// Instance name sent to the backing cache (BuildGrid, for one, refuses unknown ones).
    pub backing_instance_name: String,
    /// The backing cache is read-through only: no blob or action result is ever written
    /// to it. For a tier 2 that takes no writes, such as a node's proxy `fill_listen`
    /// endpoint, which answers misses from the other nodes. Needs `backing_cache`.
    pub backing_read_only: bool,
    /// PEM file of the CA(s) that sign the backing cache's server certificate. Required
    /// for `grpcs://`: no system or bundled roots are loaded, so without it no server
    /// could be trusted (for a publicly signed server, give that public CA's PEM).
    pub backing_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to a backing cache that requires mutual
    /// TLS. Both this and `backing_key_file`, or neither.
    pub backing_cert_file: Option<PathBuf>,
    /// PEM private key of `backing_cert_file`.
    pub backing_key_file: Option<PathBuf>,
    /// Name the backing cache's certificate must carry, when it is not the URL's host
    /// (dialling an IP address or a Kubernetes service alias, say).
    pub backing_tls_server_name: Option<String>,
    /// Actions run at once; 0 means one per CPU.
    pub runners: usize,
    /// Actions that may wait for a runner; Execute answers RESOURCE_EXHAUSTED past it.
    pub queue_max: usize,
    /// How often a long Execute or WaitExecution stream gets an update even when
    /// nothing changed, so that proxies and load balancers keep it open.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// Timeout of an action that names none.
    #[serde(with = "humantime_serde")]
    pub default_action_timeout: Duration,
    /// Longest timeout an action may ask for; longer requests are cut to it.
    #[serde(with = "humantime_serde")]
    pub max_action_timeout: Duration,
    /// How long a finished operation stays answerable by WaitExecution and
    /// GetOperation.
    #[serde(with = "humantime_serde")]
    pub operation_retention: Duration,
    /// On SIGTERM, how long running actions may go on before they are killed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Largest total size of a BatchUpdateBlobs or BatchReadBlobs (advertised in
    /// Capabilities); larger blobs go through ByteStream.
    pub max_batch_bytes: u64,
    /// Largest gRPC message accepted; must exceed `max_batch_bytes` by some headroom.
    /// A larger request message is refused with RESOURCE_EXHAUSTED naming both sizes, as
    /// other gRPC stacks do (see `decode_status`). Bazel retries that code a few times,
    /// which is one more reason for the headroom: a batch sized by the advertised
    /// `max_batch_bytes` must never reach this limit.
    pub max_message_bytes: usize,
    /// HTTP/2 streams (concurrent calls) one client connection may have open, announced
    /// to the client in SETTINGS_MAX_CONCURRENT_STREAMS. Clients queue or open another
    /// connection past it, so excess calls cost the server nothing; a per-connection
    /// concurrency limit would instead accept the streams and park them in the server.
    /// Bazel opens ~100 per channel; must not be zero.
    pub max_concurrent_streams: u32,
    /// Whether actions run in a bubblewrap sandbox (Debian package `bubblewrap`): no
    /// network, no capabilities, no view of the data directory, read-only system
    /// directories. `required` (or its synonym `bwrap`) probes bwrap at start-up and
    /// refuses to start when it cannot sandbox: there is no best-effort mode, because
    /// silently running unsandboxed is exactly what an operator who asked for a
    /// sandbox must never get.
    pub sandbox: SandboxMode,
    /// The bubblewrap binary; an absolute path, so the executor's PATH never decides
    /// what runs every action.
    pub bwrap_path: PathBuf,
    /// Bound on one action's output: every output file plus stdout and stderr. An
    /// action past it completes RESOURCE_EXHAUSTED (the client may retry elsewhere)
    /// and nothing of it is cached; stdout and stderr are cut at it while the action
    /// runs, and the action is killed. Outputs must also fit in `cas_max_bytes`.
    pub max_output_bytes: u64,
}

/// `sandbox`: how actions are isolated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Actions run directly on the host, as the executor's user.
    #[default]
    Off,
    /// Every action runs under bubblewrap; start-up fails when bwrap cannot sandbox.
    #[serde(alias = "bwrap")]
    #[value(alias = "bwrap")]
    Required,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8980)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            load_listen: SocketAddr::from(([127, 0, 0, 1], 8981)),
            data_dir: PathBuf::from("remesh-data"),
            cas_max_bytes: 10 << 30,
            backing_cache: None,
            backing_instance_name: String::new(),
            backing_read_only: false,
            backing_ca_file: None,
            backing_cert_file: None,
            backing_key_file: None,
            backing_tls_server_name: None,
            runners: 0,
            queue_max: 10_000,
            keepalive_interval: Duration::from_secs(10),
            default_action_timeout: Duration::from_secs(15 * 60),
            max_action_timeout: Duration::from_secs(60 * 60),
            operation_retention: Duration::from_secs(10 * 60),
            shutdown_grace: Duration::from_secs(30),
            max_batch_bytes: 4 << 20,
            max_message_bytes: 8 << 20,
            max_concurrent_streams: 200,
            sandbox: SandboxMode::Off,
            bwrap_path: PathBuf::from("/usr/bin/bwrap"),
            max_output_bytes: 4 << 30,
        }
    }
}

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

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
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

    /// The number of runners after resolving 0 to the number of CPUs.
    pub fn effective_runners(&self) -> usize {
        if self.runners > 0 {
            self.runners
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }

    /// Checks the values no type can check, naming the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.cas_max_bytes < 1 << 20 {
            return Err(invalid("cas_max_bytes", "must be at least 1 MiB"));
        }
        if let Some(url) = &self.backing_cache
            && !(url.starts_with("grpc://") || url.starts_with("grpcs://"))
        {
            return Err(invalid(
                "backing_cache",
                format!("{url:?} must start with grpc:// or grpcs://"),
            ));
        }
        if self.backing_read_only && self.backing_cache.is_none() {
            return Err(invalid("backing_read_only", "needs a backing_cache"));
        }
        self.validate_backing_tls()?;
        if self.queue_max == 0 {
            return Err(invalid("queue_max", "must not be zero"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(invalid("max_concurrent_streams", "must not be zero"));
        }
        for (field, value) in [
            ("keepalive_interval", self.keepalive_interval),
            ("default_action_timeout", self.default_action_timeout),
            ("max_action_timeout", self.max_action_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must not be zero"));
            }
        }
        if self.default_action_timeout > self.max_action_timeout {
            return Err(invalid(
                "default_action_timeout",
                "must not exceed max_action_timeout",
            ));
        }
        if self.max_batch_bytes == 0 {
            return Err(invalid("max_batch_bytes", "must not be zero"));
        }
        if (self.max_message_bytes as u64) < self.max_batch_bytes + (64 << 10) {
            return Err(invalid(
                "max_message_bytes",
                "must exceed max_batch_bytes by at least 64 KiB for message framing",
            ));
        }
        if self.max_output_bytes == 0 {
            return Err(invalid("max_output_bytes", "must not be zero"));
        }
        if self.sandbox != SandboxMode::Off && !self.bwrap_path.is_absolute() {
            return Err(invalid(
                "bwrap_path",
                format!("{} must be an absolute path", self.bwrap_path.display()),
            ));
        }
        Ok(())
    }

    /// TLS files only with a `grpcs://` backing cache (anything else would silently
    /// ignore them), a CA for every `grpcs://` one, certificate and key as a pair, and
    /// every named file readable now rather than at the first backing-cache call.
    fn validate_backing_tls(&self) -> Result<(), ConfigError> {
        let tls = self
            .backing_cache
            .as_deref()
            .is_some_and(|url| url.starts_with("grpcs://"));
        let files = [
            ("backing_ca_file", &self.backing_ca_file),
            ("backing_cert_file", &self.backing_cert_file),
            ("backing_key_file", &self.backing_key_file),
        ];
        if !tls {
            for (field, value) in files {
                if value.is_some() {
                    return Err(invalid(field, "needs a grpcs:// backing_cache"));
                }
            }
            if self.backing_tls_server_name.is_some() {
                return Err(invalid(
                    "backing_tls_server_name",
                    "needs a grpcs:// backing_cache",
                ));
            }
            return Ok(());
        }
        if self.backing_ca_file.is_none() {
            return Err(invalid(
                "backing_ca_file",
                "required for a grpcs:// backing_cache: no system roots are loaded",
            ));
        }
        if self.backing_cert_file.is_some() != self.backing_key_file.is_some() {
            let missing = if self.backing_cert_file.is_none() {
                "backing_cert_file"
            } else {
                "backing_key_file"
            };
            return Err(invalid(
                missing,
                "a client certificate needs both backing_cert_file and backing_key_file",
            ));
        }
        for (field, value) in files {
            if let Some(path) = value
                && let Err(error) = std::fs::metadata(path)
            {
                return Err(invalid(field, format!("{}: {error}", path.display())));
            }
        }
        if self
            .backing_tls_server_name
            .as_deref()
            .is_some_and(str::is_empty)
        {
            return Err(invalid("backing_tls_server_name", "must not be empty"));
        }
        Ok(())
    }
}

/// `remesh-executor` command line. Every flag has an environment variable.
#[derive(Debug, Default, Parser)]
#[command(name = "remesh-executor", version, about = "One node's REAPI backend")]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "REMESH_EXECUTOR_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "REMESH_EXECUTOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_EXECUTOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_EXECUTOR_LOAD_LISTEN")]
    pub load_listen: Option<SocketAddr>,
    #[arg(long, env = "REMESH_EXECUTOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "REMESH_EXECUTOR_CAS_MAX_BYTES")]
    pub cas_max_bytes: Option<u64>,
    #[arg(long, env = "REMESH_EXECUTOR_BACKING_CACHE")]
    pub backing_cache: Option<String>,
    #[arg(long, env = "REMESH_EXECUTOR_BACKING_INSTANCE_NAME")]
    pub backing_instance_name: Option<String>,
    /// `--backing-read-only` alone means true.
    #[arg(
        long,
        env = "REMESH_EXECUTOR_BACKING_READ_ONLY",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub backing_read_only: Option<bool>,
    #[arg(long, env = "REMESH_EXECUTOR_BACKING_CA_FILE")]
    pub backing_ca_file: Option<PathBuf>,
    #[arg(long, env = "REMESH_EXECUTOR_BACKING_CERT_FILE")]
    pub backing_cert_file: Option<PathBuf>,
    #[arg(long, env = "REMESH_EXECUTOR_BACKING_KEY_FILE")]
    pub backing_key_file: Option<PathBuf>,
    #[arg(long, env = "REMESH_EXECUTOR_BACKING_TLS_SERVER_NAME")]
    pub backing_tls_server_name: Option<String>,
    #[arg(long, env = "REMESH_EXECUTOR_RUNNERS")]
    pub runners: Option<usize>,
    #[arg(long, env = "REMESH_EXECUTOR_QUEUE_MAX")]
    pub queue_max: Option<usize>,
    #[arg(long, env = "REMESH_EXECUTOR_KEEPALIVE_INTERVAL", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Option<Duration>,
    #[arg(long, env = "REMESH_EXECUTOR_DEFAULT_ACTION_TIMEOUT", value_parser = humantime::parse_duration)]
    pub default_action_timeout: Option<Duration>,
    #[arg(long, env = "REMESH_EXECUTOR_MAX_ACTION_TIMEOUT", value_parser = humantime::parse_duration)]
    pub max_action_timeout: Option<Duration>,
    #[arg(long, env = "REMESH_EXECUTOR_OPERATION_RETENTION", value_parser = humantime::parse_duration)]
    pub operation_retention: Option<Duration>,
    #[arg(long, env = "REMESH_EXECUTOR_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
    #[arg(long, env = "REMESH_EXECUTOR_MAX_BATCH_BYTES")]
    pub max_batch_bytes: Option<u64>,
    #[arg(long, env = "REMESH_EXECUTOR_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    #[arg(long, env = "REMESH_EXECUTOR_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,
    #[arg(long, env = "REMESH_EXECUTOR_SANDBOX", value_enum)]
    pub sandbox: Option<SandboxMode>,
    #[arg(long, env = "REMESH_EXECUTOR_BWRAP_PATH")]
    pub bwrap_path: Option<PathBuf>,
    #[arg(long, env = "REMESH_EXECUTOR_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: Option<u64>,
}

impl Args {
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
            metrics_listen,
            load_listen,
            data_dir,
            cas_max_bytes,
            runners,
            queue_max,
            keepalive_interval,
            default_action_timeout,
            max_action_timeout,
            operation_retention,
            shutdown_grace,
            max_batch_bytes,
            max_message_bytes,
            max_concurrent_streams,
            backing_instance_name,
            backing_read_only,
            sandbox,
            bwrap_path,
            max_output_bytes,
        );
        // Optional fields: a flag sets them, an empty one clears the file's value.
        macro_rules! apply_optional {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = self.$field {
                    config.$field = (!value.as_os_str().is_empty()).then_some(value);
                })*
            };
        }
        apply_optional!(backing_ca_file, backing_cert_file, backing_key_file);
        if let Some(name) = self.backing_tls_server_name {
            config.backing_tls_server_name = (!name.is_empty()).then_some(name);
        }
        if let Some(url) = self.backing_cache {
            config.backing_cache = (!url.is_empty()).then_some(url);
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "config_limits_tests.rs"]
mod limits_tests;

#[cfg(test)]
#[path = "config_sandbox_tests.rs"]
mod sandbox_tests;
