//! Resolves the `join` list (static `host:port` entries, DNS names re-resolved every
//! round, as a Kubernetes headless service needs) and hands the addresses to the
//! membership task, which announces to those it does not know yet.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Resolves every entry, now and then every `interval`, until `shutdown`.
pub async fn resolve_periodically(
    seeds: Vec<String>,
    interval: Duration,
    sink: mpsc::Sender<Vec<SocketAddr>>,
    shutdown: CancellationToken,
) {
    if seeds.is_empty() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            () = shutdown.cancelled() => return,
        }
        let mut resolved = Vec::new();
        for seed in &seeds {
            match tokio::net::lookup_host(seed.as_str()).await {
                Ok(addrs) => resolved.extend(addrs),
                Err(error) => tracing::debug!(%seed, %error, "cannot resolve join address"),
            }
        }
        resolved.sort();
        resolved.dedup();
        if sink.send(resolved).await.is_err() {
            return;
        }
    }
}
