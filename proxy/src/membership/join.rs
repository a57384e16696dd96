//! Resolves the `join` list (static `host:port` entries, DNS names re-resolved every
//! round, as a Kubernetes headless service needs) and hands the addresses to the
//! membership task, which announces to those it does not know yet.
//!
//! A name that stops resolving is logged once as a warning, and once more when it
//! resolves again: a misspelt Service name leaves a node alone, which its operator
//! should see without turning on debug logs, while a Service with no ready pods yet
//! (every node starting at once) costs one line per node.

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
    // Per seed: whether its last lookup failed (or found no address).
    let mut failing = vec![false; seeds.len()];
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            () = shutdown.cancelled() => return,
        }
        let mut resolved = Vec::new();
        for (seed, failing) in seeds.iter().zip(&mut failing) {
            let found: Result<Vec<SocketAddr>, _> = tokio::net::lookup_host(seed.as_str())
                .await
                .map(Iterator::collect);
            match found {
                Ok(addrs) if !addrs.is_empty() => {
                    if std::mem::replace(failing, false) {
                        tracing::info!(%seed, addresses = addrs.len(), "join address resolves again");
                    }
                    resolved.extend(addrs);
                }
                Ok(_) => note_failure(seed, failing, "no addresses"),
                Err(error) => note_failure(seed, failing, &error.to_string()),
            }
        }
        resolved.sort();
        resolved.dedup();
        if sink.send(resolved).await.is_err() {
            return;
        }
    }
}

/// Logs a seed that does not resolve, once until it resolves again.
fn note_failure(seed: &str, failing: &mut bool, error: &str) {
    if !std::mem::replace(failing, true) {
        tracing::warn!(%seed, %error, "cannot resolve join address; retrying every join_interval");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_addresses_resolve_every_round_and_bad_ones_are_skipped() {
        let (sink, mut batches) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let seeds = vec![
            "localhost:7946".to_owned(),
            "127.0.0.1:7947".to_owned(),
            // Fails without asking DNS (whose speed a test cannot count on).
            "host-with:bad-port".to_owned(),
        ];
        let task = tokio::spawn(resolve_periodically(
            seeds,
            Duration::from_millis(20),
            sink,
            shutdown.clone(),
        ));
        for _ in 0..2 {
            let batch = tokio::time::timeout(Duration::from_secs(10), batches.recv())
                .await
                .expect("a batch every interval")
                .unwrap();
            let loopback: SocketAddr = "127.0.0.1:7946".parse().unwrap();
            let loopback6: SocketAddr = "[::1]:7946".parse().unwrap();
            assert!(
                batch.contains(&loopback) || batch.contains(&loopback6),
                "{batch:?}"
            );
            assert!(
                batch.contains(&"127.0.0.1:7947".parse().unwrap()),
                "{batch:?}"
            );
            assert_eq!(
                batch.len(),
                2 + usize::from(batch.contains(&loopback6)),
                "{batch:?}"
            );
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("resolver stops on shutdown")
            .unwrap();
    }
}
