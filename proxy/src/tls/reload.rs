//! The current TLS config of one section, swapped when its files change.
//!
//! Owns the `ArcSwap` holding the current config, the file-change detection and
//! the watcher task. It never touches connections: a handshake takes the config
//! current when it starts, so a swap affects only handshakes that start later.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::build::{BuildError, TlsSource};

/// What identifies one version of a file. Kubernetes Secret volumes replace files
/// by repointing a `..data` symlink, so the stamp is taken through the symlinks:
/// the inode of the resolved file changes even when size and mtime happen to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    device_inode: (u64, u64),
}

impl FileStamp {
    /// `None` when the file cannot be stat'ed (missing, dangling symlink, no
    /// permission): that is a state too, and leaving it is a change.
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            device_inode: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            },
        })
    }
}

/// Counters of one `Reloading`, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// Reloads that built a new config and swapped it in.
    pub reloads: u64,
    /// Reloads that failed; the previous config stayed in use.
    pub failures: u64,
}

struct Inner<S: TlsSource> {
    source: S,
    files: Vec<PathBuf>,
    current: ArcSwap<S::Output>,
    /// The stamps of the files as last read. The lock also serialises reloads,
    /// so an explicit `reload` and the watcher never swap out of order.
    seen: Mutex<Vec<Option<FileStamp>>>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

/// A TLS config built from files and rebuilt when they change. Cheap to clone;
/// clones share the current config.
pub struct Reloading<S: TlsSource> {
    inner: Arc<Inner<S>>,
}

impl<S: TlsSource> Clone for Reloading<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: TlsSource> std::fmt::Debug for Reloading<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.inner.files)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S: TlsSource> Reloading<S> {
    /// Builds the first config. Failing here is fatal for the caller: there is
    /// no previous config to fall back on.
    pub fn new(source: S) -> Result<Self, BuildError> {
        let files = source.watched_files();
        // Stamps are taken before reading, so a change during the read shows up
        // as a difference at the next poll instead of being missed.
        let seen = stamps(&files);
        let config = source.build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                files,
                current: ArcSwap::from_pointee(config),
                seen: Mutex::new(seen),
                reloads: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        })
    }

    /// The config new handshakes should use.
    pub fn current(&self) -> Arc<S::Output> {
        self.inner.current.load_full()
    }

    /// The config section this was built from.
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// Counters of reloads so far.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            reloads: self.inner.reloads.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }

    /// Re-reads every file and swaps the config in if, and only if, all of them
    /// parse and fit together. On error the previous config stays current, a
    /// warning is logged and the failure counter goes up.
    ///
    /// Blocking (reads files); call from a blocking context or accept a short stall.
    pub fn reload(&self) -> Result<(), BuildError> {
        let mut seen = self.lock_seen();
        self.reload_locked(&mut seen)
    }

    /// Reloads when any file's stamp differs from the one seen at the last
    /// (re)load; returns `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), BuildError>> {
        let mut seen = self.lock_seen();
        if stamps(&self.inner.files) == *seen {
            return None;
        }
        Some(self.reload_locked(&mut seen))
    }

    /// Spawns a task that checks the files every `reload_interval` and reloads on
    /// change, until `cancel` fires. A failed reload is not retried until the files
    /// change again, so a broken Secret logs one warning, not one per interval.
    pub fn spawn_watcher(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        // Built-in sections reject a zero interval in `validate`; the floor keeps a
        // foreign `TlsSource` from making `interval` panic or spin.
        let period = self
            .inner
            .source
            .reload_interval()
            .max(std::time::Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once; the files were read moments ago.
            ticks.tick().await;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let poller = this.clone();
                // Stat and read off the runtime threads; the result is logged and
                // counted inside, so only a panic in the task would be lost here.
                if let Err(err) =
                    tokio::task::spawn_blocking(move || poller.reload_if_changed()).await
                {
                    tracing::error!(error = %err, "TLS reload task failed");
                }
            }
            tracing::debug!("TLS file watcher stopped");
        })
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Vec<Option<FileStamp>>> {
        // A panic elsewhere while holding the lock leaves only stale stamps
        // behind, which at worst causes one extra reload: keep going.
        self.inner
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reload_locked(&self, seen: &mut Vec<Option<FileStamp>>) -> Result<(), BuildError> {
        let before = stamps(&self.inner.files);
        // Recorded on failure too: a broken file is retried when it changes again.
        *seen = before;
        match self.inner.source.build() {
            Ok(config) => {
                self.inner.current.store(Arc::new(config));
                self.inner.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(files = ?self.inner.files, "TLS certificates reloaded");
                Ok(())
            }
            Err(err) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "TLS reload failed; keeping the previous certificates");
                Err(err)
            }
        }
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<FileStamp>> {
    files.iter().map(|f| FileStamp::of(f)).collect()
}
