//! What a gRPC listener demands of each connection before serving it, and whether
//! that connection may mark requests as forwarded (`x-remesh-hop`, see `hop`).
//!
//! Owns the mapping from the configured layout (see `config_security_rules`) to a
//! per-connection decision: which rustls config the handshake uses, and afterwards
//! "is this a mesh peer?". It never touches HTTP or sockets: `grpc_server` asks it
//! once per connection and removes the hop header when the answer is no.
//!
//! Only peers may mark a request as forwarded; anyone else could pin work to the
//! node they reached. A peer is: anyone on an all-h2c listener (a private network,
//! no TLS configured); a connection on the shared TLS listener whose certificate
//! chains to the mesh CA; every connection on the peer port, whose handshake
//! already required such a certificate. A client-only listener trusts nobody.

use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use crate::listener_tls::{ListenerTls, ListenerTlsSource};
use crate::tls::{MeshTlsConfig, Reloading, ServerTlsConfig};

/// How one gRPC listener secures its connections. Cheap to clone; the TLS
/// variants follow certificate reloads.
#[derive(Clone)]
pub enum ListenerSecurity {
    /// h2c, every connection trusted as a peer: no `[tls]` and no `[mesh_tls]`,
    /// the plaintext mesh of a private network.
    PlaintextMesh,
    /// h2c for clients only (peers have their own port): the hop header is never
    /// honoured.
    PlaintextClients,
    /// One TLS port for clients and peers (`[tls]` + `[mesh_tls]`, no peer port):
    /// a certificate chained to the mesh CA marks a peer.
    SharedTls(Reloading<ListenerTlsSource>),
    /// TLS for clients only (`[tls]` beside a peer port): the hop header is never
    /// honoured.
    ClientTls(Reloading<ServerTlsConfig>),
    /// Mutual TLS for peers only (`peer_listen`): the handshake requires a
    /// certificate chained to the mesh CA and presents this node's mesh
    /// certificate, so every connection that gets through is a peer.
    PeerMtls(Reloading<MeshTlsConfig>),
}

/// The TLS of one connection: the config its handshake uses (the build current
/// at accept time, kept to the connection's end) and how to judge it afterwards.
pub struct ConnectionTls {
    pub server: Arc<ServerConfig>,
    judge: Judge,
}

enum Judge {
    Peer,
    Client,
    ByMeshCertificate(Arc<ListenerTls>),
}

impl ConnectionTls {
    /// Whether the connection, its handshake done, is a mesh peer.
    pub fn is_peer(&self, connection: &ServerConnection) -> bool {
        match &self.judge {
            Judge::Peer => true,
            Judge::Client => false,
            Judge::ByMeshCertificate(listener) => listener.is_mesh_member(connection),
        }
    }
}

impl ListenerSecurity {
    /// The TLS for a connection accepted now; `None` serves h2c.
    pub fn connection_tls(&self) -> Option<ConnectionTls> {
        let (server, judge) = match self {
            Self::PlaintextMesh | Self::PlaintextClients => return None,
            Self::SharedTls(tls) => {
                let current = tls.current();
                (current.server.clone(), Judge::ByMeshCertificate(current))
            }
            Self::ClientTls(tls) => (tls.current(), Judge::Client),
            Self::PeerMtls(mesh) => (mesh.current().server.clone(), Judge::Peer),
        };
        Some(ConnectionTls { server, judge })
    }

    /// Whether an h2c connection on this listener is a peer.
    pub fn plaintext_is_peer(&self) -> bool {
        matches!(self, Self::PlaintextMesh)
    }

    /// The `listener` label of this listener's connection counter.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PeerMtls(_) => "peer",
            _ => "client",
        }
    }
}
