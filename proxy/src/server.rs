//! Binds a proxy's parts together and runs them until shutdown.
//!
//! The caller binds the sockets (tests bind `127.0.0.1:0` and read the addresses back);
//! `prepare` checks the configuration and loads its certificates and keyring (so a
//! bad file fails before a ready line is printed); `Prepared::serve` starts the load
//! source, membership, the admin port and the gRPC stack on the client port and, when
//! configured, the peer port, and on `shutdown` leaves the cluster gracefully, then
//! drains. `run` is the two in a row.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::balance;
use crate::channel::{ChannelSettings, Endpoint, Http2Channel};
use crate::config::{BackendMode, Config, ConfigError};
use crate::edge::EdgeLayer;
use crate::gossip_seal::KeyringError;
use crate::load::{LoadRecord, OpenExecutions, executor_watch};
use crate::membership::identity::generation_now;
use crate::membership::{self, ClusterView, MemberIdentity, MembershipEvents, MembershipSettings};
use crate::mesh::Mesh;
use crate::metrics::{ProxyMetrics, label};
use crate::operation_name::NodeId;
use crate::route::{Router, RouterConfig};
use crate::security::Security;
use crate::stream_pool::{self, StreamPool};
use crate::tls::BuildError;
use crate::trace_context::TraceContextLayer;

/// Connections to the local backend for every call but Execute and WaitExecution,
/// used in turn (see `Http2Channel::with_connections`; those two have a `StreamPool`).
const BACKEND_CONNECTIONS: usize = 4;

/// How long open streams may go on after shutdown before connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The sockets one proxy serves on, bound by the caller.
pub struct Listeners {
    /// gRPC for clients (`listen`), and for peers when there is no peer port.
    pub grpc: TcpListener,
    /// gRPC for peers only (`peer_listen`), mutual TLS.
    pub peer: Option<TcpListener>,
    pub admin: TcpListener,
    pub gossip: UdpSocket,
    /// The fill endpoint for the local executor (`fill_listen`).
    pub fill: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config` (port 0 picks a free port).
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let peer = match config.peer_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let fill = match config.fill_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            grpc: TcpListener::bind(config.listen).await?,
            peer,
            admin: TcpListener::bind(config.admin_listen).await?,
            gossip: UdpSocket::bind(config.gossip_listen).await?,
            fill,
        })
    }

    /// The line printed on stdout once the proxy serves. Fails (before anything is
    /// printed) when peers could not be told where this node is.
    pub fn ready_line(&self, config: &Config) -> Result<ReadyLine, RunError> {
        let addresses = self.addresses(config)?;
        advertised(
            "gossip_advertise",
            config.gossip_advertise,
            self.gossip.local_addr()?,
        )?;
        Ok(ReadyLine {
            ready: "remesh-proxy".into(),
            grpc: self.grpc.local_addr()?,
            admin: self.admin.local_addr()?,
            gossip: self.gossip.local_addr()?,
            node_id: config.node_id.clone(),
            peer: addresses.peer_bound,
            fill: self
                .fill
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
        })
    }

    /// Where clients and peers reach this node's gRPC listeners.
    fn addresses(&self, config: &Config) -> Result<GrpcAddresses, RunError> {
        let client_bound = self.grpc.local_addr()?;
        let peer_bound = self
            .peer
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let (client, peers_dial) = match peer_bound {
            // Peers dial the peer port; the client address is only reported.
            Some(bound) => (
                config.grpc_advertise.unwrap_or(client_bound),
                advertised("peer_advertise", config.peer_advertise, bound)?,
            ),
            None => {
                let shared = advertised("grpc_advertise", config.grpc_advertise, client_bound)?;
                (shared, shared)
            }
        };
        Ok(GrpcAddresses {
            client,
            peers_dial,
            peer_bound,
        })
    }
}

/// A node's gRPC addresses as others should use them.
struct GrpcAddresses {
    /// Where clients reach `listen`.
    client: SocketAddr,
    /// What peers dial (gossiped as the member's `grpc_addr`): the peer port's
    /// advertised address, else the shared port's.
    peers_dial: SocketAddr,
    /// The bound peer port, if any.
    peer_bound: Option<SocketAddr>,
}

/// `{"ready":"remesh-proxy","grpc":…,"admin":…,"gossip":…,"node_id":…}`, plus
/// `"peer":…` when the node has a peer port and `"fill":…` when it has a fill endpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReadyLine {
    /// Always "remesh-proxy" (a `Cow` so that readers can deserialise the line).
    pub ready: std::borrow::Cow<'static, str>,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub gossip: SocketAddr,
    pub node_id: String,
    /// The peer port (`peer_listen`) as bound; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// The fill endpoint (`fill_listen`) as bound; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<SocketAddr>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{field}: {addr} is a wildcard address; set {field} to an address peers can reach")]
    NeedsAdvertise {
        field: &'static str,
        addr: SocketAddr,
    },
    #[error("reading a bound address: {0}")]
    Io(#[from] std::io::Error),
    #[error("{field}: {source}")]
    Tls {
        field: &'static str,
        source: BuildError,
    },
    #[error("gossip_keyring {}: {source}", path.display())]
    Keyring {
        path: std::path::PathBuf,
        source: KeyringError,
    },
}

/// The address peers should use for a socket bound to `bound`.
pub fn advertised(
    field: &'static str,
    configured: Option<SocketAddr>,
    bound: SocketAddr,
) -> Result<SocketAddr, RunError> {
    match configured {
        Some(addr) => Ok(addr),
        None if bound.ip().is_unspecified() => Err(RunError::NeedsAdvertise { field, addr: bound }),
        None => Ok(bound),
    }
}

/// A proxy whose configuration is checked and whose certificates, keys and keyring
/// are loaded (their watchers started), not serving yet: `serve` prints its ready
/// line between `prepare` and `Prepared::serve`, so a bad file never looks started.
pub struct Prepared {
    config: Config,
    node_id: NodeId,
    identity: MemberIdentity,
    addresses: GrpcAddresses,
    grpc: TcpListener,
    peer: Option<TcpListener>,
    admin: TcpListener,
    fill: Option<TcpListener>,
    security: Security,
    shutdown: CancellationToken,
}

/// Checks `config` and loads its security material. Must run inside a tokio
/// runtime (the reload watchers are spawned here).
pub fn prepare(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<Prepared, RunError> {
    config.validate()?;
    config.check_security_at_start()?;
    if config.peer_listen.is_some() != listeners.peer.is_some() {
        // A peer port bound without its TLS, or configured but never bound.
        return Err(ConfigError::Invalid {
            field: "peer_listen",
            reason: "the bound listeners do not match the configuration (bind with \
                     Listeners::bind)"
                .into(),
        }
        .into());
    }
    let node_id = config.node_id()?;
    let addresses = listeners.addresses(&config)?;
    let identity = MemberIdentity {
        node_id: node_id.clone(),
        gossip_addr: advertised(
            "gossip_advertise",
            config.gossip_advertise,
            listeners.gossip.local_addr()?,
        )?,
        grpc_addr: addresses.peers_dial,
        generation: generation_now(),
    };
    let security = Security::load(&config, listeners.gossip, &shutdown)?;
    Ok(Prepared {
        config,
        node_id,
        identity,
        addresses,
        grpc: listeners.grpc,
        peer: listeners.peer,
        admin: listeners.admin,
        fill: listeners.fill,
        security,
        shutdown,
    })
}

/// Runs one proxy until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    prepare(config, listeners, shutdown)?.serve().await
}

impl Prepared {
    /// Serves until the shutdown token fires, then leaves the cluster and drains.
    pub async fn serve(self) -> Result<(), RunError> {
        let Self {
            config,
            node_id,
            identity,
            addresses,
            grpc,
            peer,
            admin,
            fill,
            security,
            shutdown,
        } = self;
        let metrics = ProxyMetrics::with_collectors(security.collectors());
        let settings = ChannelSettings {
            connect_timeout: config.connect_timeout,
            ..ChannelSettings::default()
        };
        let failures = |upstream: &str| {
            metrics
                .upstream_connection_failures_total
                .get_or_create(&label("upstream", upstream))
                .clone()
        };
        let peer_settings = ChannelSettings {
            tls: security.peer_connector.clone(),
            failures: failures("peer"),
            ..settings.clone()
        };
        let backend_settings = ChannelSettings {
            tls: security.backend_connector.clone(),
            failures: failures("backend"),
            ..settings
        };
        let backend_endpoint =
            Endpoint::parse(&config.backend).map_err(|error| ConfigError::Invalid {
                field: "backend",
                reason: error.to_string(),
            })?;
        let backend_streams = Arc::new(StreamPool::new(
            backend_endpoint.clone(),
            backend_settings.clone(),
            stream_pool::STREAMS_PER_CONNECTION,
            stream_pool::MAX_CONNECTIONS,
        ));
        let backend = Arc::new(Http2Channel::with_connections(
            backend_endpoint,
            backend_settings,
            BACKEND_CONNECTIONS,
        ));

        let (local_load, open_executions) = start_load_source(&config, &shutdown);
        let mesh = Arc::new(Mesh::new(
            ClusterView::alone(identity.clone(), *local_load.borrow()),
            local_load.clone(),
            balance::selector_for(config.policy, config.affinity_load_factor),
            peer_settings,
        ));
        let events = MembershipEvents::default();
        let membership = tokio::spawn(membership::run(
            MembershipSettings {
                identity,
                join: config.join.clone(),
                join_interval: config.join_interval,
                load_heartbeat: config.load_heartbeat,
                events: events.clone(),
            },
            security.gossip,
            local_load,
            mesh.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let admin = tokio::spawn(admin::serve(
            admin,
            AdminState::new(metrics.clone(), mesh.clone(), events).with_addresses(
                addresses.client,
                addresses.peer_bound.map(|_| addresses.peers_dial),
            ),
            shutdown.clone(),
        ));

        let fill = fill.map(|listener| {
            let fill = crate::fill::Fill::new(mesh.clone(), metrics.clone());
            tokio::spawn(crate::fill::serve(listener, fill, shutdown.clone()))
        });

        let router = Router::new(RouterConfig {
            node_id: node_id.clone(),
            backend,
            backend_streams,
            peers: mesh,
            max_message_bytes: config.max_message_bytes,
            pass_unknown_methods: config.pass_unknown_methods,
            open_executions,
            metrics: metrics.clone(),
        });
        let metrics_for_listeners = metrics.clone();
        let stream_window = config.listen_stream_window;
        let stack = tower::ServiceBuilder::new()
            .layer(TraceContextLayer::new(node_id))
            .layer(EdgeLayer::new(metrics))
            .service(router);
        let peers_served = {
            let (stack, metrics, shutdown) = (
                stack.clone(),
                metrics_for_listeners.clone(),
                shutdown.clone(),
            );
            async move {
                if let (Some(listener), Some(security)) = (peer, security.peer_listener) {
                    let grace = SHUTDOWN_GRACE;
                    crate::grpc_server::serve(
                        listener,
                        stack,
                        security,
                        metrics,
                        shutdown,
                        grace,
                        stream_window,
                    )
                    .await;
                }
            }
        };
        let clients_served = crate::grpc_server::serve(
            grpc,
            stack,
            security.client_listener,
            metrics_for_listeners,
            shutdown,
            SHUTDOWN_GRACE,
            stream_window,
        );
        tokio::join!(clients_served, peers_served);
        // Both stop on the same token; wait so the leave announcement goes out.
        let _ = membership.await;
        let _ = admin.await;
        if let Some(fill) = fill {
            let _ = fill.await;
        }
        Ok(())
    }
}

/// Starts following the backend's load; returns its watch and, in generic mode, the
/// counter the router feeds.
fn start_load_source(
    config: &Config,
    shutdown: &CancellationToken,
) -> (watch::Receiver<LoadRecord>, Option<OpenExecutions>) {
    match config.backend_mode {
        BackendMode::Generic => {
            let open = OpenExecutions::new(config.capacity);
            (open.subscribe(), Some(open))
        }
        BackendMode::Executor => {
            let (sink, receiver) = watch::channel(LoadRecord::default());
            tokio::spawn(executor_watch::follow(
                config.load_endpoint().to_owned(),
                sink,
                shutdown.clone(),
            ));
            (receiver, None)
        }
    }
}
