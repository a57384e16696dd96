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
