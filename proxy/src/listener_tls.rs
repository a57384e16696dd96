//! TLS on the shared gRPC listener, which clients (Bazel) and peer proxies share when
//! the node has no peer port (`peer_listen`; see `listener_security`).
//!
//! Owns the one rustls `ServerConfig` the listener hands to every handshake, built
//! from the `[tls]` and `[mesh_tls]` sections together, and the answer to "did this
//! connection come from a mesh member?". It never touches HTTP: `grpc_server` asks
//! it once per connection and strips the hop header when the answer is no.
//!
//! # One port, two identities
//! - Which certificate the listener presents is chosen by SNI: a proxy dialling a
//!   peer sends [`MESH_SERVER_NAME`] (its verifier ignores names, see `tls`), so
//!   it gets the mesh certificate; every other client gets the `[tls]` one, whose
//!   SANs match the names clients dial.
//! - A client certificate is accepted when it chains to the mesh CA or to
//!   `[tls].client_ca_file`. Whether one is required follows `[tls].client_auth`:
//!   `required` refuses clients without one; `optional` and `off` admit them.
//!   With `off`, a presented certificate must still chain to the mesh CA.
//! - Only a connection whose certificate chains to the mesh CA is a mesh member,
//!   and only a mesh member's `x-remesh-hop` header is honoured: anyone else could
//!   otherwise pin work to the node it reached. The mesh CA must therefore be
//!   private to the mesh and distinct from the client CA.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::tls::{
    ALPN_H2, BuildError, ClientAuth, MeshTlsConfig, ServerTlsConfig, TlsSource, load_identity,
    load_roots,
};

/// The SNI a proxy sends when it dials a peer, so the peer presents its mesh
/// certificate. `.invalid` can never be a real DNS name (RFC 6761).
pub const MESH_SERVER_NAME: &str = "mesh.remesh.invalid";

/// The listener's two sections, rebuilt together when any of their files change.
#[derive(Debug, Clone)]
pub struct ListenerTlsSource {
    pub tls: ServerTlsConfig,
    pub mesh: MeshTlsConfig,
}

/// One build of the listener's TLS: what a handshake uses, and how to tell a mesh
/// member's certificate afterwards.
#[derive(Debug)]
pub struct ListenerTls {
    pub server: Arc<ServerConfig>,
    mesh_verifier: Arc<dyn ClientCertVerifier>,
}

impl ListenerTls {
    /// Whether the connection presented a certificate chained to the mesh CA.
    pub fn is_mesh_member(&self, connection: &rustls::ServerConnection) -> bool {
        let Some((leaf, intermediates)) = connection
            .peer_certificates()
            .and_then(|chain| chain.split_first())
        else {
            return false;
        };
        self.mesh_verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSource for ListenerTlsSource {
    type Output = ListenerTls;

    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.tls.watched_files();
        files.extend(self.mesh.watched_files());
        files
    }

    fn reload_interval(&self) -> Duration {
        self.tls.reload_interval.min(self.mesh.reload_interval)
    }

    fn build(&self) -> Result<ListenerTls, BuildError> {
        self.tls.validate()?;
        self.mesh.validate()?;
        let provider = provider();
        let client_identity = load_identity(&self.tls.cert_file, &self.tls.key_file, &provider)?;
        let mesh_identity = load_identity(&self.mesh.cert_file, &self.mesh.key_file, &provider)?;
        let resolver = SniResolver {
            clients: Arc::new(CertifiedKey::from_der(
                client_identity.chain,
                client_identity.key,
                &provider,
            )?),
            mesh: Arc::new(CertifiedKey::from_der(
                mesh_identity.chain,
                mesh_identity.key,
                &provider,
            )?),
        };
        let verifier = |path: &PathBuf| -> Result<Arc<dyn ClientCertVerifier>, BuildError> {
            WebPkiClientVerifier::builder_with_provider(load_roots(path)?, provider.clone())
                .build()
                .map_err(|source| BuildError::Verifier {
                    path: path.clone(),
                    source,
                })
        };
        let mesh_verifier = verifier(&self.mesh.ca_file)?;
        let client_verifier = match (&self.tls.client_ca_file, self.tls.client_auth) {
            (Some(path), ClientAuth::Optional | ClientAuth::Required) => Some(verifier(path)?),
            _ => None,
        };
        let mut hints = mesh_verifier.root_hint_subjects().to_vec();
        if let Some(client) = &client_verifier {
            hints.extend_from_slice(client.root_hint_subjects());
        }
        let either = EitherCa {
            mesh: mesh_verifier.clone(),
            clients: client_verifier,
            mandatory: self.tls.client_auth == ClientAuth::Required,
            hints,
        };
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(either))
            .with_cert_resolver(Arc::new(resolver));
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(ListenerTls {
            server: Arc::new(server),
            mesh_verifier,
        })
    }
}

/// Presents the mesh certificate to peers (by SNI) and the client one to others.
#[derive(Debug)]
struct SniResolver {
    clients: Arc<CertifiedKey>,
    mesh: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello.server_name() == Some(MESH_SERVER_NAME) {
            Some(self.mesh.clone())
        } else {
            Some(self.clients.clone())
        }
    }
}

/// Accepts a client certificate chained to the mesh CA or to the client CA.
#[derive(Debug)]
struct EitherCa {
    mesh: Arc<dyn ClientCertVerifier>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for EitherCa {
    fn offer_client_auth(&self) -> bool {
        // Always asked for: peers must be able to present their mesh certificate.
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.mesh.verify_client_cert(end_entity, intermediates, now) {
            Ok(verified) => Ok(verified),
            Err(mesh_error) => match &self.clients {
                Some(clients) => clients.verify_client_cert(end_entity, intermediates, now),
                None => Err(mesh_error),
            },
        }
    }

    // Signatures are checked the same way whichever CA the chain ends at: both
    // verifiers are built from one crypto provider, so the mesh one answers.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.mesh.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.mesh.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.mesh.supported_verify_schemes()
    }
}
