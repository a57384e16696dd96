//! Shared set-up of the service tests: storage in a temporary directory, and an
//! in-process gRPC server of the storage services on 127.0.0.1:0.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::{ActionCache, Cas};

/// Storage of one test node; the directory lives as long as this does.
pub struct TestStorage {
    /// Deleted when the test ends.
    _dir: tempfile::TempDir,
    pub config: Config,
    pub metrics: Metrics,
    pub cas: Cas,
    pub action_cache: ActionCache,
}

impl TestStorage {
    pub async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    /// Storage with `adjust` applied to the default configuration first.
    pub async fn open_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        adjust(&mut config);
        let metrics = Metrics::new();
        let cas = Cas::open(&config, metrics.clone())
            .await
            .expect("opening the CAS");
        let action_cache = ActionCache::open(&config, cas.clone())
            .await
            .expect("opening the action cache");
        Self {
            _dir: dir,
            config,
            metrics,
            cas,
            action_cache,
        }
    }

    /// Serves this storage's gRPC services on a fresh loopback port until the returned
    /// token is cancelled (or dropped with the test).
    pub async fn serve(&self) -> (SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let stop = CancellationToken::new();
        let routes = super::storage_routes(&self.config, &self.cas, &self.action_cache);
        let router = tonic::transport::Server::builder().add_routes(routes);
        let server = router.serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        );
        tokio::spawn(server);
        (addr, stop)
    }
}
