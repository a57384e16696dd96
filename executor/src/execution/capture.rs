//! Capturing an action's stdout and stderr into files under one shared byte budget.
//!
//! The child writes into pipes; a task per pipe copies into the file and stops at the
//! budget (`max_output_bytes`), so neither file can outgrow it however much the action
//! prints. Crossing the budget fires a token: the caller then kills the action, and
//! the reader is dropped, so a writer still going gets EPIPE rather than blocking.
//!
//! A copy is never aborted mid-write: `stop` ends it between reads, after its last
//! write has completed, so a file handed to the CAS afterwards cannot change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bytes read from a pipe at a time.
const CHUNK_BYTES: usize = 64 << 10;

/// The budget stdout and stderr share, and the token fired when it is exceeded.
#[derive(Debug, Clone)]
pub struct CaptureBudget {
    remaining: Arc<AtomicU64>,
    exceeded: CancellationToken,
}

impl CaptureBudget {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            remaining: Arc::new(AtomicU64::new(max_bytes)),
            exceeded: CancellationToken::new(),
        }
    }

    /// Fires once the action has printed more than the budget.
    pub fn exceeded(&self) -> &CancellationToken {
        &self.exceeded
    }

    /// Takes up to `wanted` bytes of the budget; returns how many were granted.
    fn take(&self, wanted: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |remaining| {
                granted = remaining.min(wanted);
                Some(remaining - granted)
            });
        granted
    }
}

/// Why capturing failed (the file could not be written).
#[derive(Debug, thiserror::Error)]
#[error("writing the action's output to {path}: {source}")]
pub struct CaptureError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Copies `pipe` into the already created `file` at `path` until EOF, until the
/// budget runs out, or until `stop` fires. Runs as its own task so stdout and stderr
/// drain concurrently.
pub fn spawn_copy(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    file: std::fs::File,
    path: &Path,
    budget: CaptureBudget,
    stop: CancellationToken,
) -> JoinHandle<Result<(), CaptureError>> {
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let fail = |source| CaptureError {
            path: path.clone(),
            source,
        };
        let mut file = tokio::fs::File::from_std(file);
        let mut pipe = pipe;
        let mut buffer = vec![0_u8; CHUNK_BYTES];
        loop {
            let read = tokio::select! {
                read = pipe.read(&mut buffer) => match read {
                    Ok(0) => break,
                    Ok(read) => read,
                    // The write end vanishing is an end like EOF, not a failure to report.
                    Err(_) => break,
                },
                () = stop.cancelled() => break,
            };
            let granted = budget.take(read as u64) as usize;
            file.write_all(&buffer[..granted]).await.map_err(fail)?;
            if granted < read {
                budget.exceeded.cancel();
                break;
            }
        }
        // A tokio file completes its last write only when flushed.
        file.flush().await.map_err(fail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_at_the_shared_budget_and_fires_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let budget = CaptureBudget::new(10);
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        let copy = |data: &'static [u8], path: &Path| {
            spawn_copy(
                data,
                std::fs::File::create(path).unwrap(),
                path,
                budget.clone(),
                CancellationToken::new(),
            )
        };
        copy(b"123456", &first).await.unwrap().unwrap();
        assert!(!budget.exceeded().is_cancelled(), "6 of 10 bytes is fine");
        copy(b"abcdefgh", &second).await.unwrap().unwrap();
        assert!(budget.exceeded().is_cancelled());
        assert_eq!(std::fs::read(&first).unwrap(), b"123456");
        assert_eq!(std::fs::read(&second).unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn exactly_the_budget_is_not_exceeding_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let budget = CaptureBudget::new(4);
        let file = std::fs::File::create(&path).unwrap();
        spawn_copy(
            &b"abcd"[..],
            file,
            &path,
            budget.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!budget.exceeded().is_cancelled());
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn stop_ends_a_copy_whose_pipe_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        // The write half is kept: the pipe never reaches EOF by itself.
        let (mut writer, reader) = tokio::io::duplex(64);
        writer.write_all(b"kept").await.unwrap();
        let stop = CancellationToken::new();
        let file = std::fs::File::create(&path).unwrap();
        let copy = spawn_copy(reader, file, &path, CaptureBudget::new(100), stop.clone());
        crate::execution::capture::tests::wait_for_len(&path, 4).await;
        stop.cancel();
        copy.await.unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        drop(writer);
    }

    async fn wait_for_len(path: &Path, len: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(path).map_or(0, |m| m.len()) < len {
            assert!(std::time::Instant::now() < deadline, "nothing was copied");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
