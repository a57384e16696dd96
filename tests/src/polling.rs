//! Waiting for something to become true, bounded by a deadline.
//!
//! Tests never sleep for a fixed time hoping a process is ready: they poll a condition
//! every few milliseconds and fail with a message naming what they waited for.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How often conditions are re-checked: short enough not to slow tests down, long enough
/// not to burn one of the machine's two cores.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `condition` until it returns `Some`, or fails once `timeout` has passed.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Blocking variant of [`poll_until`] for code that runs outside a runtime.
pub fn poll_until_blocking<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A loopback port that was free a moment ago, for servers (BuildGrid) that cannot be
/// told to pick one themselves. Binding then releasing leaves a small race with other
/// processes; the kernel does not hand the same ephemeral port out again at once.
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
