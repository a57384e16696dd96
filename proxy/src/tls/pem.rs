//! Reading certificates, private keys and CA bundles from PEM files.
//!
//! Owns the mapping from "what is wrong with this file" to an error that names
//! the file, so an operator reading the log knows which Secret key to fix. Never
//! logs key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Files larger than this are not certificates or keys; refusing them keeps a
/// misconfigured path (a log file, a device) from being read into memory.
const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// What is wrong with a PEM file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_FILE_BYTES} bytes; not a PEM certificate or key")]
    TooLarge { path: PathBuf },
    #[error("{path} is not valid PEM: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path} holds no CERTIFICATE block")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no private key (PKCS#8, RSA or EC PRIVATE KEY block)")]
    NoKey { path: PathBuf },
    #[error("{path} holds a private key that cannot be used: {source}")]
    UnusableKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{path} holds a leaf certificate that cannot be parsed: {source}")]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path} holds a certificate that cannot be used as a trust anchor: {source}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    let read_err = |source| PemError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_PEM_FILE_BYTES {
        return Err(PemError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read(path).map_err(read_err)
}

fn malformed(path: &Path, err: pem::Error) -> PemError {
    PemError::Malformed {
        path: path.to_owned(),
        reason: err.to_string(),
    }
}

/// Reads every CERTIFICATE block of `path`, in file order (leaf first for a chain).
///
/// A truncated block (a file caught half-written) is an error, not a shorter chain.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(path, e))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of `path`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(PemError::NoKey {
            path: path.to_owned(),
        }),
        Err(e) => Err(malformed(path, e)),
    }
}

/// Reads a CA bundle into a root store; every certificate in it becomes a trust anchor.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots.add(cert).map_err(|source| PemError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain with its private key, checked to belong together.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads a certificate chain and its private key and checks that the key is the
/// one the leaf certificate was issued for, so a rotation caught between writing
/// the two files is refused instead of serving a certificate we cannot sign for.
pub fn load_identity(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<Identity, PemError> {
    let chain = load_certificates(cert_file)?;
    let key = load_private_key(key_file)?;
    match CertifiedKey::from_der(chain.clone(), key.clone_key(), provider) {
        Ok(_) => Ok(Identity { chain, key }),
        Err(rustls::Error::InconsistentKeys(_)) => Err(PemError::KeyMismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
        }),
        // The leaf did not parse: the certificate file is at fault, not the key.
        Err(source @ rustls::Error::InvalidCertificate(_)) => Err(PemError::BadCertificate {
            path: cert_file.to_owned(),
            source,
        }),
        Err(source) => Err(PemError::UnusableKey {
            path: key_file.to_owned(),
            source,
        }),
    }
}
