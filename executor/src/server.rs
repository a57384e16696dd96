//! Binds every service to its listener and runs until shutdown.
//!
//! The caller binds the sockets (tests bind `127.0.0.1:0` and read the addresses back);
//! `run` serves on them until the `shutdown` token fires, then drains: Execute stops
//! taking work, running actions get `shutdown_grace` to finish, and the servers close.

use std::net::SocketAddr;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::config::{Config, SandboxMode};
use crate::decode_status::DecodeStatusLayer;
use crate::execution::Engine;
use crate::execution::sandbox::{Sandbox, SandboxError};
use crate::flow_control;
use crate::grpc_metrics::GrpcMetricsLayer;
use crate::metrics::{self, Metrics};
use crate::service;
use crate::storage::{ActionCache, Cas, StorageError};

/// The three sockets an executor serves on, bound by the caller.
pub struct Listeners {
    pub grpc: TcpListener,
    pub metrics: TcpListener,
    pub load: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config` (port 0 picks a free port).
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind(config.listen).await?,
            metrics: TcpListener::bind(config.metrics_listen).await?,
            load: TcpListener::bind(config.load_listen).await?,
        })
    }

    /// The line printed on stdout once the executor serves.
    pub fn ready_line(&self) -> std::io::Result<ReadyLine> {
        Ok(ReadyLine {
            ready: "remesh-executor",
            grpc: self.grpc.local_addr()?,
            metrics: self.metrics.local_addr()?,
            load: self.load.local_addr()?,
        })
    }
}

/// `{"ready":"remesh-executor","grpc":…,"metrics":…,"load":…}`: what a supervisor or a
/// test reads to learn where the executor listens.
#[derive(Debug, Serialize)]
pub struct ReadyLine {
    pub ready: &'static str,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub load: SocketAddr,
}

/// Why the executor could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening storage: {0}")]
    Storage(#[from] StorageError),
    #[error("creating {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// One executor's state, opened and ready to serve.
pub struct Executor {
    config: Config,
    metrics: Metrics,
    cas: Cas,
    action_cache: ActionCache,
    engine: Engine,
}

impl Executor {
    /// Creates the data directory, opens storage (indexing what a previous run left)
    /// and, with `sandbox = "required"`, proves bwrap can sandbox on this host.
    pub async fn open(config: Config) -> Result<Self, RunError> {
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(|source| RunError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        let metrics = Metrics::new();
        let cas = Cas::open(&config, metrics.clone()).await?;
        if config.sandbox == SandboxMode::Required {
            // Once here rather than at the first action: an executor that cannot
            // sandbox must not start, let alone report capacity and take work.
            Sandbox::new(config.bwrap_path.clone())
                .probe(&cas.scratch_dir())
                .await?;
            tracing::info!(bwrap = %config.bwrap_path.display(), "actions run sandboxed");
        }
        let action_cache = ActionCache::open(&config, cas.clone()).await?;
        let engine = Engine::start(&config, cas.clone(), action_cache.clone(), metrics.clone());
        Ok(Self {
            config,
            metrics,
            cas,
            action_cache,
            engine,
        })
    }

    /// Serves until `shutdown` fires, then drains and returns.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> Result<(), RunError> {
        let Self {
            config,
            metrics,
            cas,
            action_cache,
            engine,
        } = self;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let health_service = health_service.max_decoding_message_size(config.max_message_bytes);

        let stop_serving = CancellationToken::new();
        let main_server = Server::builder()
            .max_frame_size(flow_control::MAX_FRAME)
            .initial_stream_window_size(flow_control::STREAM_WINDOW)
            .initial_connection_window_size(flow_control::CONNECTION_WINDOW)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            // SETTINGS_MAX_CONCURRENT_STREAMS rather than a per-connection concurrency
            // limit: clients learn the bound and queue or open another connection,
            // instead of the server accepting streams it then parks.
            .max_concurrent_streams(Some(config.max_concurrent_streams))
            // Inside the metrics layer, so requests are counted with the precise code.
            .layer(GrpcMetricsLayer::new(metrics.clone()))
            .layer(DecodeStatusLayer::new())
            .add_routes(service::with_execution_routes(
                service::storage_routes(&config, &cas, &action_cache),
                &config,
                &engine,
            ))
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(
                no_delay(listeners.grpc),
                stop_serving.clone().cancelled_owned(),
            );
        let load_server = Server::builder()
            .layer(DecodeStatusLayer::new())
            .add_routes(service::load_routes(&config, &engine))
            .add_service(health_service)
            .serve_with_incoming_shutdown(
                no_delay(listeners.load),
                stop_serving.clone().cancelled_owned(),
            );
        let metrics_server =
            metrics::serve(listeners.metrics, metrics.clone(), stop_serving.clone());

        let drain = async {
            shutdown.cancelled().await;
            tracing::info!("shutting down: no new work, draining running actions");
            // Proxies stop sending work as soon as health says so; Execute refuses with
            // UNAVAILABLE meanwhile, and WaitExecution is served until the drain ends.
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            engine.drain(config.shutdown_grace).await;
            stop_serving.cancel();
        };
        let (main_result, load_result, (), ()) =
            tokio::join!(main_server, load_server, metrics_server, drain);
        main_result?;
        load_result?;
        Ok(())
    }
}

/// Opens the executor and serves until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    Executor::open(config)
        .await?
        .serve(listeners, shutdown)
        .await
}

/// Accepted connections with Nagle's algorithm off: gRPC writes small frames (headers,
/// short replies, trailers) and waits for answers, and with Nagle on each of those
/// writes can sit out a delayed-ACK timeout (about 40 ms) before it leaves.
fn no_delay(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
