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
use crate::load::{LoadRecord, OpenExecutions, executor_watch};
use crate::membership::identity::generation_now;
use crate::membership::{self, ClusterView, MemberIdentity, MembershipEvents, MembershipSettings};
use crate::mesh::Mesh;
use crate::metrics::ProxyMetrics;
use crate::route::{Router, RouterConfig};
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
    let node_id = config.node_id()?;
    let metrics = ProxyMetrics::new();
    let settings = ChannelSettings {
        connect_timeout: config.connect_timeout,
        ..ChannelSettings::default()
    };
    let backend_endpoint =
        Endpoint::parse(&config.backend).map_err(|error| ConfigError::Invalid {
            field: "backend",
            reason: error.to_string(),
        })?;
    let backend = Arc::new(Http2Channel::with_connections(
        backend_endpoint,
        settings.clone(),
        BACKEND_CONNECTIONS,
    ));
    let identity = MemberIdentity {
        node_id: node_id.clone(),
        gossip_addr: advertised(
            "gossip_advertise",
            config.gossip_advertise,
            listeners.gossip.local_addr()?,
        )?,
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
        settings,
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
        listeners.gossip,
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
    let stack = tower::util::BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(TraceContextLayer::new(node_id))
            .layer(EdgeLayer::new(metrics))
            .service(router),
    );
    crate::grpc_server::serve(listeners.grpc, stack, shutdown, SHUTDOWN_GRACE).await;
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
