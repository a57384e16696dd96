//! A node's security material, loaded before it serves: the TLS of each gRPC
//! listener, the connectors towards peers and a `grpcs://` backend, and the gossip
//! socket (sealed with the keyring, or plaintext by explicit opt-in).
//!
//! Owns reading every certificate, key, CA and keyring file once at start (a bad
//! file stops the start, before the ready line) and starting their reload
//! watchers. It never binds sockets or serves: `server` hands it the bound gossip
//! socket and passes what it returns to the listeners, the mesh and membership.
//!
//! Which listener layout is in force follows `config_security_rules`: a peer port
//! (`peer_listen`) gets mutual TLS from `[mesh_tls]` and the client port gets
//! `[tls]` or h2c; without one, the shared port gets `[tls]` and `[mesh_tls]`
//! together, or h2c for clients and peers alike.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gossip_seal::{GossipSeal, Keyring, OpenerConfig, SealStats};
use crate::listener_security::ListenerSecurity;
use crate::listener_tls::{ListenerTlsSource, MESH_SERVER_NAME};
use crate::membership::GossipSocket;
use crate::membership::gossip_socket::{KEYRING_RELOAD_INTERVAL, watch_keyring};
use crate::server::RunError;
use crate::tls::{MeshTlsConfig, Reloading, TlsConnector};

/// Everything security-related one node runs with, loaded and watched.
pub struct Security {
    /// The `listen` port.
    pub client_listener: ListenerSecurity,
    /// The `peer_listen` port, when configured.
    pub peer_listener: Option<ListenerSecurity>,
    /// How peers are dialled; `None`: h2c.
    pub peer_connector: Option<TlsConnector>,
    /// How a `grpcs://` backend is dialled.
    pub backend_connector: Option<TlsConnector>,
    pub gossip: GossipSocket,
    seal_stats: Option<Arc<SealStats>>,
}

fn tls_error(field: &'static str) -> impl Fn(crate::tls::BuildError) -> RunError {
    move |source| RunError::Tls { field, source }
}

/// The mesh identity for dialling peers. The SNI asks a shared-port peer for its
/// mesh certificate (see `listener_tls`); a peer port has only that one.
fn peer_connector(mesh: &Reloading<MeshTlsConfig>) -> TlsConnector {
    match rustls_pki_types::ServerName::try_from(MESH_SERVER_NAME) {
        Ok(name) => mesh.connector().with_server_name(name),
        Err(_) => mesh.connector(),
    }
}

impl Security {
    /// Reads every file `config` names and starts the reload watchers (they stop
    /// on `shutdown`). `config` must have passed `check_security_at_start`.
    pub fn load(
        config: &Config,
        gossip_socket: UdpSocket,
        shutdown: &CancellationToken,
    ) -> Result<Self, RunError> {
        // The watchers stop on `shutdown`; their handles are not needed.
        let watch = |handle: tokio::task::JoinHandle<()>| drop(handle);
        let (client_listener, peer_listener, peer_connector) =
            match (config.peer_listen, &config.tls, &config.mesh_tls) {
                (Some(_), tls, Some(mesh)) => {
                    let mesh = Reloading::new(mesh.clone()).map_err(tls_error("mesh_tls"))?;
                    watch(mesh.spawn_watcher(shutdown.clone()));
                    let clients = match tls {
                        Some(tls) => {
                            let tls = Reloading::new(tls.clone()).map_err(tls_error("tls"))?;
                            watch(tls.spawn_watcher(shutdown.clone()));
                            ListenerSecurity::ClientTls(tls)
                        }
                        None => ListenerSecurity::PlaintextClients,
                    };
                    let connector = peer_connector(&mesh);
                    (
                        clients,
                        Some(ListenerSecurity::PeerMtls(mesh)),
                        Some(connector),
                    )
                }
                (None, Some(tls), Some(mesh)) => {
                    let listener = Reloading::new(ListenerTlsSource {
                        tls: tls.clone(),
                        mesh: mesh.clone(),
                    })
                    .map_err(tls_error("tls"))?;
                    watch(listener.spawn_watcher(shutdown.clone()));
                    let dialling = Reloading::new(mesh.clone()).map_err(tls_error("mesh_tls"))?;
                    watch(dialling.spawn_watcher(shutdown.clone()));
                    (
                        ListenerSecurity::SharedTls(listener),
                        None,
                        Some(peer_connector(&dialling)),
                    )
                }
                // `check_security_at_start` refused every other combination with TLS.
                _ => (ListenerSecurity::PlaintextMesh, None, None),
            };
        let backend_connector = match &config.backend_tls {
            Some(backend) => {
                let reloading =
                    Reloading::new(backend.clone()).map_err(tls_error("backend_tls"))?;
                watch(reloading.spawn_watcher(shutdown.clone()));
                Some(reloading.connector())
            }
            None => None,
        };
        let (gossip, seal_stats) = match &config.gossip_keyring {
            Some(path) => {
                let keyring =
                    Arc::new(Keyring::load(path).map_err(|source| RunError::Keyring {
                        path: path.clone(),
                        source,
                    })?);
                tracing::info!(primary = %keyring.primary_id(), keys = keyring.len(), "gossip is sealed");
                let seal = GossipSeal::new(keyring.clone(), OpenerConfig::default());
                let stats = seal.stats();
                let updates = watch_keyring(
                    path.clone(),
                    keyring,
                    KEYRING_RELOAD_INTERVAL,
                    shutdown.clone(),
                );
                (
                    GossipSocket::sealed(gossip_socket, seal, updates),
                    Some(stats),
                )
            }
            None => {
                tracing::warn!(
                    "GOSSIP IS NOT SEALED (insecure_plaintext_gossip): anyone who can reach \
                     the gossip port can join this mesh, declare members dead and steer work. \
                     Set gossip_keyring outside tests and private encrypted networks."
                );
                (GossipSocket::plaintext(gossip_socket), None)
            }
        };
        Ok(Self {
            client_listener,
            peer_listener,
            peer_connector,
            backend_connector,
            gossip,
            seal_stats,
        })
    }

    /// Metrics kept by the security subsystems, read at each scrape.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus_client::collector::Collector>> {
        let mut collectors: Vec<Box<dyn prometheus_client::collector::Collector>> = Vec::new();
        if let Some(stats) = &self.seal_stats {
            collectors.push(Box::new(stats.clone()));
        }
        collectors
    }
}
