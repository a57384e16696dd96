//! The TLS sections of the proxy config: what files to read and how strictly to
//! check the other side. Owns only the shape and `validate()`; reading the files
//! is `pem`'s job and building rustls configs is `build`'s.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default interval between two looks at the certificate files' metadata.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

fn default_reload_interval() -> Duration {
    DEFAULT_RELOAD_INTERVAL
}

/// A config field that does not make sense; `field` names it as written in TOML.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

/// Whether the listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    Off,
    /// A certificate is requested; a client without one is accepted, a client with
    /// one that does not chain to `client_ca_file` is refused.
    Optional,
    /// Every client must present a certificate chained to `client_ca_file`.
    Required,
}

/// TLS on the client-facing listener (Bazel and other REAPI clients).
///
/// ```toml
/// cert_file = "/etc/remesh/tls/tls.crt"
/// key_file = "/etc/remesh/tls/tls.key"
/// client_ca_file = "/etc/remesh/tls/ca.crt"
/// client_auth = "required"
/// reload_interval = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first, then intermediates.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM bundle of CAs that client certificates must chain to. Required when
    /// `client_auth` is not `off`.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Whether clients must present a certificate. Default `off`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// How often the files' metadata is checked for a change (humantime, default
    /// "10s"). Kubernetes updates Secret volumes about once a minute, so a shorter
    /// interval only costs `stat` calls; must not be zero.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

/// TLS towards a backend or backing cache (`grpcs://`).
///
/// There is no fallback to system roots: none are installed where remesh runs
/// offline, and a private CA is the norm for backends, so `ca_file` is required.
///
/// ```toml
/// ca_file = "/etc/remesh/backend/ca.crt"
/// cert_file = "/etc/remesh/backend/tls.crt"   # optional client certificate
/// key_file = "/etc/remesh/backend/tls.key"
/// server_name = "cache.internal"             # optional, else the dialled host
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM bundle of CAs the backend's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM client certificate chain, for backends that require mutual TLS. Set
    /// together with `key_file` or not at all.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name the backend's certificate is checked against (and sent as SNI). When
    /// unset, the host the caller dials is used: a DNS name, or an IP address that
    /// must then appear as an IP SAN.
    #[serde(default)]
    pub server_name: Option<String>,
    /// How often the files' metadata is checked for a change; must not be zero.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

/// Mutual TLS between proxies. One identity serves both directions: a proxy
/// presents it when accepting a peer's connection and when dialling a peer.
///
/// Peers are dialled by IP address taken from gossip, and pod IPs change with
/// every restart, so a peer's certificate is NOT checked against that address:
/// the identity of a mesh member is "holds a key whose certificate chains to the
/// mesh CA". The mesh CA must therefore be private to the mesh (not a CA that
/// also signs other services' certificates). The certificate must allow both
/// TLS server and client use (either no extended key usage, or both).
///
/// ```toml
/// ca_file = "/etc/remesh/mesh/ca.crt"
/// cert_file = "/etc/remesh/mesh/tls.crt"
/// key_file = "/etc/remesh/mesh/tls.key"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshTlsConfig {
    /// PEM bundle of the mesh CA(s). During a CA rotation, list old and new.
    pub ca_file: PathBuf,
    /// PEM certificate chain of this node, chained to the mesh CA.
    pub cert_file: PathBuf,
    /// PEM private key for `cert_file`.
    pub key_file: PathBuf,
    /// How often the files' metadata is checked for a change; must not be zero.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn check_interval(interval: Duration) -> Result<(), ConfigError> {
    if interval.is_zero() {
        return Err(ConfigError {
            field: "reload_interval",
            reason: "must not be zero",
        });
    }
    Ok(())
}

impl ServerTlsConfig {
    /// Checks the fields against each other; names the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_interval(self.reload_interval)?;
        match (self.client_auth, &self.client_ca_file) {
            (ClientAuth::Off, Some(_)) => Err(ConfigError {
                field: "client_ca_file",
                reason: "is set but client_auth is \"off\"; set client_auth to \"optional\" or \"required\"",
            }),
            (ClientAuth::Optional | ClientAuth::Required, None) => Err(ConfigError {
                field: "client_ca_file",
                reason: "is required when client_auth is \"optional\" or \"required\"",
            }),
            _ => Ok(()),
        }
    }
}

impl ClientTlsConfig {
    /// Checks the fields against each other; names the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_interval(self.reload_interval)?;
        if let Some(name) = &self.server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(ConfigError {
                field: "server_name",
                reason: "is neither a DNS name nor an IP address",
            });
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError {
                field: "key_file",
                reason: "is required when cert_file is set",
            }),
            (None, Some(_)) => Err(ConfigError {
                field: "cert_file",
                reason: "is required when key_file is set",
            }),
            _ => Ok(()),
        }
    }
}

impl MeshTlsConfig {
    /// Checks the fields; names the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_interval(self.reload_interval)
    }
}
