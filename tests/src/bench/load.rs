//! The closed-loop load driver: `concurrency` workers, each issuing one operation at a
//! time, until the count or the time limit is reached.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::Limits;
use super::stats::Round;
use crate::reapi_client::Clients;

/// Runs `operation(clients, index)` for indices `0..limits.count` with `concurrency`
/// operations in flight, spread over `connections` in turn, and stops early once
/// `limits.time` has passed. Any failed operation fails the round: a benchmark that
/// counts errors as throughput measures nothing.
pub async fn drive<F, Fut>(
    connections: &[Clients],
    concurrency: usize,
    limits: Limits,
    operation: F,
) -> anyhow::Result<Round>
where
    F: Fn(Clients, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let operation = Arc::new(operation);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limits.time;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let clients = connections[worker % connections.len()].clone();
        let (operation, next) = (operation.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= limits.count || Instant::now() >= deadline {
                    return anyhow::Ok(latencies);
                }
                let sent = Instant::now();
                operation(clients.clone(), index).await?;
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(Round {
        completed: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    })
}
