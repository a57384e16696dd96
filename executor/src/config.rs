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
    /// past it. Must hold the largest single action's inputs and outputs.
    pub cas_max_bytes: u64,
    /// Optional second storage tier: any REAPI CAS/AC endpoint, `grpc://host:port` or
    /// `grpcs://host:port`. Reads fall through to it, writes go to both.
    pub backing_cache: Option<String>,
    /// Instance name sent to the backing cache (BuildGrid, for one, refuses unknown ones).
    pub backing_instance_name: String,
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
    pub max_message_bytes: usize,
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
            runners: 0,
            queue_max: 10_000,
            keepalive_interval: Duration::from_secs(10),
            default_action_timeout: Duration::from_secs(15 * 60),
            max_action_timeout: Duration::from_secs(60 * 60),
            operation_retention: Duration::from_secs(10 * 60),
            shutdown_grace: Duration::from_secs(30),
            max_batch_bytes: 4 << 20,
            max_message_bytes: 8 << 20,
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
        if self.queue_max == 0 {
            return Err(invalid("queue_max", "must not be zero"));
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
            backing_instance_name,
        );
        if let Some(url) = self.backing_cache {
            config.backing_cache = (!url.is_empty()).then_some(url);
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            toml::from_str::<Config>("listen = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap_err();
        assert!(error.to_string().contains("listen_typo"), "{error}");
    }

    #[test]
    fn durations_are_human() {
        let config: Config = toml::from_str("keepalive_interval = \"500ms\"").unwrap();
        assert_eq!(config.keepalive_interval, Duration::from_millis(500));
    }

    #[test]
    fn validate_names_the_field() {
        let config = Config {
            queue_max: 0,
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("queue_max:")
        );
        let config = Config {
            backing_cache: Some("http://x".into()),
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("backing_cache:")
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("executor.toml");
        std::fs::write(&path, "runners = 3\nqueue_max = 7\n").unwrap();
        let args = Args {
            config: Some(path),
            queue_max: Some(9),
            ..Args::default()
        };
        let config = args.into_config().unwrap();
        assert_eq!((config.runners, config.queue_max), (3, 9));
    }
}
