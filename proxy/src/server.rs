//! Binds a proxy's parts together and runs them until shutdown.
//!
//! The caller binds the sockets (tests bind `127.0.0.1:0` and read the addresses back);
//! `run` starts the load source, membership, the admin port and the gRPC stack on
//! them, and on `shutdown` leaves the cluster gracefully, then drains.

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
use crate::gossip_seal::{GossipSeal, Keyring, KeyringError, OpenerConfig, SealStats};
use crate::listener_tls::{ListenerTlsSource, MESH_SERVER_NAME};
use crate::load::{LoadRecord, OpenExecutions, executor_watch};
use crate::membership::GossipSocket;
use crate::membership::gossip_socket::{KEYRING_RELOAD_INTERVAL, watch_keyring};
use crate::membership::identity::generation_now;
use crate::membership::{self, ClusterView, MemberIdentity, MembershipEvents, MembershipSettings};
use crate::mesh::Mesh;
use crate::metrics::ProxyMetrics;
use crate::route::{Router, RouterConfig};
use crate::tls::{BuildError, Reloading, TlsConnector};
use crate::trace_context::TraceContextLayer;

/// Connections to the local backend, used in turn (see `Http2Channel::with_connections`).
const BACKEND_CONNECTIONS: usize = 4;

/// How long open streams may go on after shutdown before connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The sockets one proxy serves on, bound by the caller.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
    pub gossip: UdpSocket,
}

impl Listeners {
    /// Binds the addresses of `config` (port 0 picks a free port).
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind(config.listen).await?,
            admin: TcpListener::bind(config.admin_listen).await?,
            gossip: UdpSocket::bind(config.gossip_listen).await?,
        })
    }

    /// The line printed on stdout once the proxy serves. Fails (before anything is
    /// printed) when peers could not be told where this node is.
    pub fn ready_line(&self, config: &Config) -> Result<ReadyLine, RunError> {
        advertised(
            "grpc_advertise",
            config.grpc_advertise,
            self.grpc.local_addr()?,
        )?;
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
        })
    }
}

/// `{"ready":"remesh-proxy","grpc":…,"admin":…,"gossip":…,"node_id":…}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReadyLine {
    /// Always "remesh-proxy" (a `Cow` so that readers can deserialise the line).
    pub ready: std::borrow::Cow<'static, str>,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub gossip: SocketAddr,
    pub node_id: String,
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
    #[error("gossip_keyring: {0}")]
    Keyring(#[from] KeyringError),
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

/// Runs one proxy until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    config.validate()?;
    config.check_security_at_start()?;
    let node_id = config.node_id()?;
    let gossip_bound = listeners.gossip.local_addr()?;
    let security = Security::load(&config, listeners.gossip, &shutdown)?;
    let metrics = ProxyMetrics::with_collectors(security.collectors());
    let settings = ChannelSettings {
        connect_timeout: config.connect_timeout,
        ..ChannelSettings::default()
    };
    let peer_settings = ChannelSettings {
        tls: security.peer_connector.clone(),
        ..settings.clone()
    };
    let backend_settings = ChannelSettings {
        tls: security.backend_connector.clone(),
        ..settings
    };
    let backend_endpoint =
        Endpoint::parse(&config.backend).map_err(|error| ConfigError::Invalid {
            field: "backend",
            reason: error.to_string(),
        })?;
    let backend = Arc::new(Http2Channel::with_connections(
        backend_endpoint,
        backend_settings,
        BACKEND_CONNECTIONS,
    ));
    let identity = MemberIdentity {
        node_id: node_id.clone(),
        gossip_addr: advertised("gossip_advertise", config.gossip_advertise, gossip_bound)?,
        grpc_addr: advertised(
            "grpc_advertise",
            config.grpc_advertise,
            listeners.grpc.local_addr()?,
        )?,
        generation: generation_now(),
    };

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
        listeners.admin,
        AdminState::new(metrics.clone(), mesh.clone(), events),
        shutdown.clone(),
    ));

    let router = Router::new(RouterConfig {
        node_id: node_id.clone(),
        backend,
        peers: mesh,
        max_message_bytes: config.max_message_bytes,
        pass_unknown_methods: config.pass_unknown_methods,
        open_executions,
        metrics: metrics.clone(),
    });
    let metrics_for_listener = metrics.clone();
    let stack = tower::util::BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(TraceContextLayer::new(node_id))
            .layer(EdgeLayer::new(metrics))
            .service(router),
    );
    crate::grpc_server::serve(
        listeners.grpc,
        stack,
        security.listener,
        metrics_for_listener,
        shutdown,
        SHUTDOWN_GRACE,
    )
    .await;
    // Both stop on the same token; wait so the leave announcement goes out.
    let _ = membership.await;
    let _ = admin.await;
    Ok(())
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

/// The TLS configs and the gossip socket of one node, loaded (and their reload
/// watchers started) before anything serves: a bad file stops the start.
struct Security {
    listener: Option<crate::grpc_server::ListenerTlsConfig>,
    peer_connector: Option<TlsConnector>,
    backend_connector: Option<TlsConnector>,
    gossip: GossipSocket,
    seal_stats: Option<Arc<SealStats>>,
}

impl Security {
    fn load(
        config: &Config,
        socket: UdpSocket,
        shutdown: &CancellationToken,
    ) -> Result<Self, RunError> {
        let tls_error = |field| move |source| RunError::Tls { field, source };
        let (listener, peer_connector) = match (&config.tls, &config.mesh_tls) {
            (Some(tls), Some(mesh)) => {
                let listener = Reloading::new(ListenerTlsSource {
                    tls: tls.clone(),
                    mesh: mesh.clone(),
                })
                .map_err(tls_error("tls"))?;
                // The watchers stop on `shutdown`; their handles are not needed.
                drop(listener.spawn_watcher(shutdown.clone()));
                let dialling = Reloading::new(mesh.clone()).map_err(tls_error("mesh_tls"))?;
                drop(dialling.spawn_watcher(shutdown.clone()));
                // Peers are told apart from clients by this SNI (see listener_tls).
                let connector = match rustls_pki_types::ServerName::try_from(MESH_SERVER_NAME) {
                    Ok(name) => dialling.connector().with_server_name(name),
                    Err(_) => dialling.connector(),
                };
                (Some(listener), Some(connector))
            }
            // `check_security_at_start` refused one section without the other.
            _ => (None, None),
        };
        let backend_connector = match &config.backend_tls {
            Some(backend) => {
                let reloading =
                    Reloading::new(backend.clone()).map_err(tls_error("backend_tls"))?;
                drop(reloading.spawn_watcher(shutdown.clone()));
                Some(reloading.connector())
            }
            None => None,
        };
        let (gossip, seal_stats) = match &config.gossip_keyring {
            Some(path) => {
                let keyring = Arc::new(Keyring::load(path)?);
                tracing::info!(primary = %keyring.primary_id(), keys = keyring.len(), "gossip is sealed");
                let seal = GossipSeal::new(keyring.clone(), OpenerConfig::default());
                let stats = seal.stats();
                let updates = watch_keyring(
                    path.clone(),
                    keyring,
                    KEYRING_RELOAD_INTERVAL,
                    shutdown.clone(),
                );
                (GossipSocket::sealed(socket, seal, updates), Some(stats))
            }
            None => {
                tracing::warn!(
                    "GOSSIP IS NOT SEALED (insecure_plaintext_gossip): anyone who can reach \
                     the gossip port can join this mesh, declare members dead and steer work. \
                     Set gossip_keyring outside tests and private encrypted networks."
                );
                (GossipSocket::plaintext(socket), None)
            }
        };
        Ok(Self {
            listener,
            peer_connector,
            backend_connector,
            gossip,
            seal_stats,
        })
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus_client::collector::Collector>> {
        let mut collectors: Vec<Box<dyn prometheus_client::collector::Collector>> = Vec::new();
        if let Some(stats) = &self.seal_stats {
            collectors.push(Box::new(stats.clone()));
        }
        collectors
    }
}
