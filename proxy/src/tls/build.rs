//! Turning a TLS config section into rustls configurations.
//!
//! Owns which rustls knobs remesh sets (protocol versions, ALPN, verifiers). Each
//! build reads every file afresh and either returns a complete config or an error:
//! there is no partially built result for `reload` to swap in by mistake.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{ClientConfig, ServerConfig};

use super::config::{ClientAuth, ClientTlsConfig, ConfigError, MeshTlsConfig, ServerTlsConfig};
use super::mesh_verifier::MeshServerVerifier;
use super::pem::{PemError, load_identity, load_roots};
use super::{ALPN_H2, provider};

/// Why a TLS config could not be built. Nothing was swapped when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid TLS config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("cannot build a client certificate verifier from {path}: {source}")]
    Verifier {
        path: PathBuf,
        #[source]
        source: VerifierBuilderError,
    },
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A config section that can be (re)built from files on disk.
pub trait TlsSource: Send + Sync + 'static {
    /// What one build produces and `Reloading` hands out.
    type Output: Send + Sync + 'static;
    /// Every file the build reads; a change to any of them triggers a reload.
    fn watched_files(&self) -> Vec<PathBuf>;
    /// How often `watched_files` are checked for a change.
    fn reload_interval(&self) -> Duration;
    /// Validates the section, reads its files and builds a complete config.
    fn build(&self) -> Result<Self::Output, BuildError>;
}

fn server_builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, BuildError>
{
    Ok(ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?)
}

fn client_builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, BuildError>
{
    Ok(ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?)
}

impl TlsSource for ServerTlsConfig {
    type Output = ServerConfig;

    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert_file.clone(), self.key_file.clone()];
        files.extend(self.client_ca_file.clone());
        files
    }

    fn reload_interval(&self) -> Duration {
        self.reload_interval
    }

    fn build(&self) -> Result<ServerConfig, BuildError> {
        self.validate()?;
        let provider = provider();
        let identity = load_identity(&self.cert_file, &self.key_file, &provider)?;
        let builder = server_builder()?;
        let builder = match (&self.client_ca_file, self.client_auth) {
            (Some(ca_file), ClientAuth::Optional | ClientAuth::Required) => {
                let roots = load_roots(ca_file)?;
                let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                if self.client_auth == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().map_err(|source| BuildError::Verifier {
                    path: ca_file.clone(),
                    source,
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            // `validate` rejected every other combination of file and mode.
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(identity.chain, identity.key)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

impl TlsSource for ClientTlsConfig {
    type Output = ClientConfig;

    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.ca_file.clone()];
        files.extend(self.cert_file.clone());
        files.extend(self.key_file.clone());
        files
    }

    fn reload_interval(&self) -> Duration {
        self.reload_interval
    }

    fn build(&self) -> Result<ClientConfig, BuildError> {
        self.validate()?;
        let roots = load_roots(&self.ca_file)?;
        let builder = client_builder()?.with_root_certificates(roots);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let identity = load_identity(cert_file, key_file, &provider())?;
                builder.with_client_auth_cert(identity.chain, identity.key)?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

/// The two halves of one mesh identity, built and swapped together so a node
/// never accepts with one certificate while dialling with another.
#[derive(Debug)]
pub struct MeshConfigs {
    /// For accepting peers: requires a client certificate chained to the mesh CA.
    pub server: Arc<ServerConfig>,
    /// For dialling peers: presents this node's certificate and accepts any server
    /// certificate chained to the mesh CA, whatever address it was dialled at.
    pub client: Arc<ClientConfig>,
}

impl TlsSource for MeshTlsConfig {
    type Output = MeshConfigs;

    fn watched_files(&self) -> Vec<PathBuf> {
        vec![
            self.ca_file.clone(),
            self.cert_file.clone(),
            self.key_file.clone(),
        ]
    }

    fn reload_interval(&self) -> Duration {
        self.reload_interval
    }

    fn build(&self) -> Result<MeshConfigs, BuildError> {
        self.validate()?;
        let provider = provider();
        let identity = load_identity(&self.cert_file, &self.key_file, &provider)?;
        let roots = load_roots(&self.ca_file)?;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|source| BuildError::Verifier {
                    path: self.ca_file.clone(),
                    source,
                })?;
        let mut server = server_builder()?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];

        let mut client = client_builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MeshServerVerifier::new(roots, provider)))
            .with_client_auth_cert(identity.chain, identity.key)?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];

        Ok(MeshConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}
