//! TLS for remesh: the listener's server side, the backend client side and the
//! proxy-to-proxy mutual TLS ("mesh"), all with certificates reloaded from disk.
//!
//! This module owns reading PEM files, building rustls configurations from them,
//! swapping those configurations when the files change, and the handshake helpers
//! the listener and the connectors call. It never binds sockets, dials peers or
//! knows about HTTP: callers hand it an accepted or connected socket.
//!
//! # Layout
//! - `config`: the serde config structs (`ServerTlsConfig`, `ClientTlsConfig`,
//!   `MeshTlsConfig`) and their `validate()`.
//! - `pem`: certificate chains, private keys and CA bundles read from PEM files,
//!   with errors that name the file at fault.
//! - `build`: turns a config into a `rustls::ServerConfig` / `ClientConfig`.
//! - `mesh_verifier`: how a proxy checks a peer proxy's server certificate.
//! - `reload`: `Reloading<S>`, the swappable current config and its file watcher.
//! - `server`: `TlsAcceptor`, the handshake for accepted connections.
//! - `client`: `TlsConnector`, the handshake for outgoing connections.
//!
//! # Peer identity in the mesh
//! Peers are dialled at IP addresses learnt from gossip, which change with every
//! pod restart, so a peer's certificate is checked for a chain to the mesh CA
//! (validity, key usage, signatures) and NOT for a name or IP SAN: holding a key
//! certified by the private mesh CA is the identity. Both directions are checked:
//! the acceptor requires a client certificate chained to the mesh CA, and the
//! connector refuses a server certificate that is not. Backends, by contrast, are
//! checked by name as usual (`ClientTlsConfig::server_name` or the dialled host).
//!
//! # Wiring (for the listener and the connectors)
//! ```text
//! let tls = ReloadingServerConfig::new(config.tls)?;     // fails on bad files
//! let _watch = tls.spawn_watcher(shutdown.clone());       // polls reload_interval
//! let acceptor = tls.acceptor();
//! loop { let (tcp, _) = listener.accept().await?;
//!        let acceptor = acceptor.clone();
//!        tokio::spawn(async move { let tls = acceptor.accept(tcp).await?; /* serve h2 */ }); }
//!
//! let mesh = ReloadingMeshConfig::new(config.mesh_tls)?;  // same for peers:
//! mesh.acceptor() on the peer listener, mesh.connector().connect(&peer_ip, tcp)
//! ```
//!
//! # Reload model
//! Every reload builds a complete new `Arc<ServerConfig>` (or `ClientConfig`) and
//! swaps it in one step. A handshake takes the config that is current when it
//! starts and keeps its `Arc` for the connection's lifetime, so in-flight
//! connections are never touched and new handshakes see the new certificate.
//! Rebuilding the whole config, rather than swapping only the certificate
//! resolver, means a rotated client CA is picked up by the same mechanism.

mod build;
mod client;
mod config;
mod mesh_verifier;
mod pem;
mod reload;
mod server;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use build::{BuildError, MeshConfigs, TlsSource};
pub use client::{ConnectError, TlsConnector, server_certificate};
pub use config::{
    ClientAuth, ClientTlsConfig, ConfigError, DEFAULT_RELOAD_INTERVAL, MeshTlsConfig,
    ServerTlsConfig,
};
pub use pem::{Identity, PemError, load_certificates, load_identity, load_private_key, load_roots};
pub use reload::{ReloadStats, Reloading};
pub use server::{
    AcceptError, DEFAULT_HANDSHAKE_TIMEOUT, RemoteAddr, TlsAcceptor, peer_certificate,
};

/// The server side of the listener, reloaded from disk.
pub type ReloadingServerConfig = Reloading<ServerTlsConfig>;
/// The client side towards backends and backing caches, reloaded from disk.
pub type ReloadingClientConfig = Reloading<ClientTlsConfig>;
/// The mesh identity (server and client at once), reloaded from disk.
pub type ReloadingMeshConfig = Reloading<MeshTlsConfig>;

/// ALPN protocol id both sides offer: gRPC runs only over HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Installs ring as the process-wide rustls crypto provider, for code (tonic,
/// hyper connectors) that builds rustls configs without naming a provider.
///
/// Safe to call more than once: a provider that is already installed is kept.
pub fn install_crypto_provider() {
    // An error only means some provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The provider this module builds every config with. Naming it explicitly, instead
/// of relying on the process default, means building a config can never panic
/// because no default (or two candidate defaults) was installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
