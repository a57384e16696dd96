//! Test harness: a small in-process REAPI backend built with tonic, and helpers that
//! start proxies with `remesh_proxy::run` on loopback port 0.
#![allow(dead_code)]

pub mod fake_backend;

use std::future::Future;
use std::time::{Duration, Instant};

use remesh_proxy::{Config, Listeners, ReadyLine};
use tokio_util::sync::CancellationToken;

/// A proxy running in this process; stops when dropped.
pub struct RunningProxy {
    pub ready: ReadyLine,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), remesh_proxy::RunError>>,
}

impl RunningProxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.ready.grpc)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connecting to the proxy")
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A config on loopback port 0 everywhere, fronting `backend` in generic mode.
pub fn loopback_config(node_id: &str, backend: std::net::SocketAddr) -> Config {
    Config {
        node_id: node_id.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        gossip_listen: "127.0.0.1:0".parse().unwrap(),
        backend: format!("grpc://{backend}"),
        backend_mode: remesh_proxy::config::BackendMode::Generic,
        capacity: 4,
        ..Config::default()
    }
}

pub async fn start_proxy(config: Config) -> RunningProxy {
    let listeners = Listeners::bind(&config).await.expect("binding");
    let ready = listeners.ready_line(&config).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(remesh_proxy::run(config, listeners, shutdown.clone()));
    RunningProxy {
        ready,
        shutdown,
        task,
    }
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
