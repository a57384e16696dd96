//! Test harness: a small in-process REAPI backend built with tonic, and helpers that
//! start proxies with `remesh_proxy::run` on loopback port 0.
#![allow(dead_code)]

pub mod fake_backend;
pub mod netns;
pub mod node;
pub mod processes;
pub mod real;
pub mod secure;
pub mod shared_tier;

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
        // In-process tests exercise routing; sealed gossip has its own tests.
        insecure_plaintext_gossip: true,
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

/// A plain HTTP/1.0 GET: (status code, body). Enough for the admin port.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The `/cluster` report of a proxy.
pub async fn cluster(admin: std::net::SocketAddr) -> Option<remesh_proxy::admin::ClusterReport> {
    let (status, body) = http_get(admin, "/cluster").await.ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Waits until `admin`'s view has `node` in `state`.
pub async fn wait_member_state(
    admin: std::net::SocketAddr,
    node: &str,
    state: &str,
    deadline: Duration,
) {
    eventually(&format!("{node} {state} at {admin}"), deadline, || async {
        let report = cluster(admin).await?;
        report
            .members
            .iter()
            .any(|m| {
                m.node_id == node && m.state == state && (state != "alive" || m.load.is_some())
            })
            .then_some(())
    })
    .await
}
