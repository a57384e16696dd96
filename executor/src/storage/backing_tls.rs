//! TLS towards the backing cache: the private CA that signs its certificate, the
//! optional client certificate for mutual TLS, and the name to verify.
//!
//! Owns reading the PEM files named in the config (once, at start-up) and turning them
//! into tonic's `ClientTlsConfig`. No system or bundled roots are ever loaded: a
//! `grpcs://` backing cache is trusted only through `backing_ca_file`.

use std::path::Path;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
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
    /// Checked here because tonic takes a PEM file without certificates silently, and
    /// every connection would then fail its handshake instead of the start-up.
    #[error("{field} {path}: {reason}")]
    Pem {
        field: &'static str,
        path: std::path::PathBuf,
        reason: String,
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
            Some(path) => Some(Certificate::from_pem(read_certificates(
                "backing_ca_file",
                path,
            )?)),
            None => None,
        };
        let identity = match (&config.backing_cert_file, &config.backing_key_file) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                read_certificates("backing_cert_file", cert)?,
                read_key("backing_key_file", key)?,
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

/// A PEM file holding at least one certificate, every one of them well-formed.
fn read_certificates(field: &'static str, path: &Path) -> Result<Vec<u8>, BackingTlsError> {
    let pem = read(field, path)?;
    let invalid = |reason: String| BackingTlsError::Pem {
        field,
        path: path.to_owned(),
        reason,
    };
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        certificate.map_err(|error| invalid(format!("not a valid PEM certificate: {error}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid("holds no PEM certificate".into()));
    }
    Ok(pem)
}

/// A PEM file holding a private key (PKCS#8, PKCS#1 or SEC1).
fn read_key(field: &'static str, path: &Path) -> Result<Vec<u8>, BackingTlsError> {
    let pem = read(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| BackingTlsError::Pem {
        field,
        path: path.to_owned(),
        reason: format!("holds no usable PEM private key: {error}"),
    })?;
    Ok(pem)
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, BackingTlsError> {
    std::fs::read(path).map_err(|source| BackingTlsError::Read {
        field,
        path: path.to_owned(),
        source,
    })
}
