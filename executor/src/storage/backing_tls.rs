//! TLS towards the backing cache: the private CA that signs its certificate, the
//! optional client certificate for mutual TLS, and the name to verify.
//!
//! Owns reading the PEM files named in the config (once, at start-up) and turning them
//! into tonic's `ClientTlsConfig`. No system or bundled roots are ever loaded: a
//! `grpcs://` backing cache is trusted only through `backing_ca_file`.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::Config;

/// Why the TLS files could not be used; nothing was connected.
#[derive(Debug, thiserror::Error)]
pub enum BackingTlsError {
    #[error("{field} {path}: {source}")]
    Read {
        field: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The TLS material of the backing-cache client; empty for plain `grpc://`.
#[derive(Debug, Clone, Default)]
pub struct BackingTls {
    ca: Option<Certificate>,
    identity: Option<Identity>,
    server_name: Option<String>,
}

impl BackingTls {
    /// Reads the files `config` names. Pairing and presence were checked by
    /// `Config::validate`; a certificate without its key is ignored here.
    pub fn from_config(config: &Config) -> Result<Self, BackingTlsError> {
        let ca = match &config.backing_ca_file {
            Some(path) => Some(Certificate::from_pem(read("backing_ca_file", path)?)),
            None => None,
        };
        let identity = match (&config.backing_cert_file, &config.backing_key_file) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                read("backing_cert_file", cert)?,
                read("backing_key_file", key)?,
            )),
            _ => None,
        };
        Ok(Self {
            ca,
            identity,
            server_name: config.backing_tls_server_name.clone(),
        })
    }

    /// The client TLS settings for a backing cache at `host`. PEM contents are parsed
    /// here by tonic; a malformed file fails the endpoint's `tls_config`.
    pub fn client_config(&self, host: &str) -> ClientTlsConfig {
        let name = self.server_name.as_deref().unwrap_or(host);
        let mut tls = ClientTlsConfig::new().domain_name(name);
        if let Some(ca) = &self.ca {
            tls = tls.ca_certificate(ca.clone());
        }
        if let Some(identity) = &self.identity {
            tls = tls.identity(identity.clone());
        }
        tls
    }
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, BackingTlsError> {
    std::fs::read(path).map_err(|source| BackingTlsError::Read {
        field,
        path: path.to_owned(),
        source,
    })
}
