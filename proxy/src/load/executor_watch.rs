//! Load of a remesh executor, read from its `remesh.load.v1.Load/Watch` stream and
//! republished on a watch channel. When the stream breaks, the node advertises zero
//! capacity (so peers stop sending work) and reconnects with backoff.

use std::time::Duration;

use remesh_proto::load::WatchLoadRequest;
use remesh_proto::load::load_client::LoadClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::LoadRecord;

/// Follows the executor's load until `shutdown`. `endpoint` is `grpc://host:port`.
pub async fn follow(
    endpoint: String,
    sink: watch::Sender<LoadRecord>,
    shutdown: CancellationToken,
) {
    let url = endpoint.replacen("grpc://", "http://", 1);
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut client = LoadClient::connect(url.clone()).await?;
            let mut stream = client.watch(WatchLoadRequest {}).await?.into_inner();
            while let Some(report) = stream.message().await? {
                backoff = Duration::from_millis(100);
                sink.send_replace(LoadRecord {
                    queued: report.queued,
                    executing: report.executing,
                    max_concurrency: report.max_concurrency,
                });
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        let result = tokio::select! {
            result = attempt => result,
            () = shutdown.cancelled() => return,
        };
        if let Err(error) = result {
            tracing::debug!(%endpoint, %error, "executor load stream broke");
        }
        // No news from the executor: take no new work until it is back.
        sink.send_if_modified(|load| {
            let was_serving = load.max_concurrency != 0;
            *load = LoadRecord::default();
            was_serving
        });
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
