//! Storage: the content-addressable store (CAS) and the action cache (AC).
//!
//! Tier 1 is the local disk (`disk`), size-bounded with LRU eviction; tier 2 is an
//! optional backing cache (`backing`): any REAPI endpoint, read-through and
//! write-through (read-through only with `backing_read_only`). `Cas` and `ActionCache`
//! are the only types the services and the execution engine see; they never learn
//! which tier answered. Their `local_only` views answer from tier 1 alone, for requests
//! that must not reach tier 2 (see `LOCAL_ONLY_HEADER`).
//!
//! Invariants: every blob in the local CAS hashes to its name (digests are verified
//! before a blob becomes visible, writes are atomic: temp file + rename), and every path
//! this module touches lies inside `data_dir`, except the two the execution engine hands
//! in: the destination of `materialize` and the output given to `ingest_file`.

mod action_cache;
mod backing;
#[cfg(test)]
mod backing_tests;
mod backing_tls;
#[cfg(test)]
mod backing_tls_tests;
mod disk;
mod lru;
mod single_flight;
#[cfg(test)]
mod tests;
mod tier2;
mod upload;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

pub use action_cache::ActionCache;
pub use backing::{BackingCache, CHUNK_BYTES, read_full};
pub use backing_tls::{BackingTls, BackingTlsError};
pub use upload::Upload;

use crate::config::Config;
use crate::digest::{BlobDigest, DigestHasher};
use crate::metrics::Metrics;
use disk::DiskStore;
use single_flight::SingleFlight;

/// Why a storage operation failed, and whether anything changed (it never did: a failed
/// write leaves no blob behind).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("uploaded data hashes to {actual}, not to the digest named {expected}")]
    DigestMismatch {
        expected: BlobDigest,
        actual: BlobDigest,
    },
    #[error("blob {0} not found")]
    NotFound(BlobDigest),
    #[error("local storage: {0}")]
    Io(#[from] std::io::Error),
    /// The backing cache's TLS files could not be read (start-up only).
    #[error("backing cache TLS: {0}")]
    BackingTls(#[from] BackingTlsError),
    #[error("backing cache: {0}")]
    Backing(tonic::Status),
    /// Refused before any byte was stored or read: the blob cannot fit.
    #[error("blob {digest} is larger than the {max_bytes}-byte CAS can ever hold")]
    TooLarge { digest: BlobDigest, max_bytes: u64 },
    /// The local file of a blob does not have the size its index entry (and so its
    /// digest) names: the disk was changed behind the executor's back.
    #[error("local file of blob {digest} holds {on_disk} bytes")]
    Corrupt { digest: BlobDigest, on_disk: u64 },
}

impl From<StorageError> for tonic::Status {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::DigestMismatch { .. } => {
                tonic::Status::invalid_argument(error.to_string())
            }
            StorageError::NotFound(_) => tonic::Status::not_found(error.to_string()),
            StorageError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                tonic::Status::resource_exhausted(error.to_string())
            }
            StorageError::Io(_) | StorageError::BackingTls(_) => {
                tonic::Status::internal(error.to_string())
            }
            StorageError::Backing(status) => {
                tonic::Status::unavailable(format!("backing cache: {}", status.message()))
            }
            // INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: no eviction can ever make room,
            // and clients (Bazel among them) retry RESOURCE_EXHAUSTED with backoff, which
            // would only repeat a request that cannot succeed on this server.
            StorageError::TooLarge { .. } => tonic::Status::invalid_argument(error.to_string()),
            StorageError::Corrupt { .. } => tonic::Status::data_loss(error.to_string()),
        }
    }
}

impl StorageError {
    /// A copy for every waiter of a merged fetch (`io::Error` is not `Clone`).
    fn duplicate(&self) -> Self {
        match self {
            Self::DigestMismatch { expected, actual } => Self::DigestMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Self::NotFound(digest) => Self::NotFound(digest.clone()),
            Self::Io(error) => Self::Io(std::io::Error::new(error.kind(), error.to_string())),
            Self::BackingTls(error) => Self::Io(std::io::Error::other(error.to_string())),
            Self::Backing(status) => Self::Backing(status.clone()),
            Self::TooLarge { digest, max_bytes } => Self::TooLarge {
                digest: digest.clone(),
                max_bytes: *max_bytes,
            },
            Self::Corrupt { digest, on_disk } => Self::Corrupt {
                digest: digest.clone(),
                on_disk: *on_disk,
            },
        }
    }
}

/// Files read or hashed in one piece of blocking work at a time.
const HASH_BUFFER_BYTES: usize = 256 << 10;

/// Blobs at least this large are hashed off the async runtime's worker threads.
const HASH_INLINE_MAX_BYTES: usize = 256 << 10;

/// The outcome of a merged backing fetch: whether the blob is now local.
type FetchOutcome = Result<bool, Arc<StorageError>>;

/// The CAS: cheap to clone, shared by every service and runner.
#[derive(Clone)]
pub struct Cas {
    inner: Arc<CasInner>,
    /// False in a `local_only` view: no read of this handle reaches the backing cache.
    use_backing: bool,
}

struct CasInner {
    disk: DiskStore,
    backing: Option<BackingCache>,
    /// `backing_read_only`: nothing is written through to the backing cache.
    backing_read_only: bool,
    fetches: SingleFlight<BlobDigest, FetchOutcome>,
    metrics: Metrics,
    /// `cas_max_bytes`: no single blob larger than this can ever be stored.
    max_blob_bytes: u64,
}

impl Cas {
    /// Opens (or creates) the CAS under `config.data_dir`, indexing what a previous run
    /// left there, and connects the backing cache if one is configured.
    pub async fn open(config: &Config, metrics: Metrics) -> Result<Self, StorageError> {
        let disk = DiskStore::open(&config.data_dir, config.cas_max_bytes, metrics.clone()).await?;
        let backing = match &config.backing_cache {
            Some(url) => Some(
                BackingCache::connect(
                    url,
                    &config.backing_instance_name,
                    config.max_message_bytes,
                    &BackingTls::from_config(config)?,
                )
                .map_err(StorageError::Backing)?,
            ),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(CasInner {
                disk,
                backing,
                backing_read_only: config.backing_read_only,
                fetches: SingleFlight::default(),
                metrics,
                max_blob_bytes: config.cas_max_bytes,
            }),
            use_backing: true,
        })
    }

    /// The digests of `digests` that neither tier holds (that the local tier does not
    /// hold, in a `local_only` view), in request order.
    pub async fn find_missing(
        &self,
        digests: &[BlobDigest],
    ) -> Result<Vec<BlobDigest>, StorageError> {
        let disk = self.disk();
        // Asking is a use: Bazel asks right before it relies on a blob being there.
        let local_missing: Vec<BlobDigest> = digests
            .iter()
            .filter(|digest| !disk.touch(digest))
            .cloned()
            .collect();
        match self.backing_for_reads() {
            Some(backing) if !local_missing.is_empty() => backing
                .find_missing(&local_missing)
                .await
                .map_err(StorageError::Backing),
            _ => Ok(local_missing),
        }
    }

    /// Whether the local tier holds the blob (no backing-cache round trip).
    pub fn contains_local(&self, digest: &BlobDigest) -> bool {
        self.disk().contains(digest)
    }

    /// The largest blob this CAS can hold (`cas_max_bytes`).
    pub fn max_blob_bytes(&self) -> u64 {
        self.inner.max_blob_bytes
    }

    /// Refuses, before anything is stored or fetched, a blob that could never fit.
    pub fn check_fits(&self, digest: &BlobDigest) -> Result<(), StorageError> {
        if digest.size() > self.inner.max_blob_bytes {
            return Err(StorageError::TooLarge {
                digest: digest.clone(),
                max_bytes: self.inner.max_blob_bytes,
            });
        }
        Ok(())
    }

    /// A whole blob in memory, fetched from the backing cache if need be. Callers bound
    /// the size (batch limits) before calling; `None` when no tier has it.
    ///
    /// The buffer is sized from the open file, never from the digest alone, and only
    /// after the file was found to have the digest's size: a client-declared size
    /// allocates nothing until a blob of exactly that size is known to exist.
    pub async fn read_bytes(&self, digest: &BlobDigest) -> Result<Option<Bytes>, StorageError> {
        use tokio::io::AsyncReadExt as _;
        if digest.is_empty_blob() {
            return Ok(Some(Bytes::new()));
        }
        let Some(file) = self.open_file(digest).await? else {
            return Ok(None);
        };
        let on_disk = file.metadata().await?.len();
        let corrupt = || StorageError::Corrupt {
            digest: digest.clone(),
            on_disk,
        };
        if on_disk != digest.size() {
            return Err(corrupt());
        }
        let capacity = usize::try_from(on_disk).map_err(|_| corrupt())?;
        let mut data = Vec::with_capacity(capacity);
        // `take` keeps a file growing behind our back from growing the buffer.
        file.take(on_disk).read_to_end(&mut data).await?;
        if data.len() != capacity {
            return Err(StorageError::Corrupt {
                digest: digest.clone(),
                on_disk: data.len() as u64,
            });
        }
        Ok(Some(Bytes::from(data)))
    }

    /// Stores a whole blob after checking that `data` hashes to `digest`.
    pub async fn write_bytes(&self, digest: &BlobDigest, data: Bytes) -> Result<(), StorageError> {
        self.check_fits(digest)?;
        let actual = if data.len() < HASH_INLINE_MAX_BYTES {
            BlobDigest::of_bytes(&data)
        } else {
            let data = data.clone();
            tokio::task::spawn_blocking(move || BlobDigest::of_bytes(&data))
                .await
                .map_err(std::io::Error::other)?
        };
        if &actual != digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if self.disk().touch(digest) {
            return Ok(());
        }
        let mut temp = self.disk().new_temp().await?;
        temp.file.write_all(&data).await?;
        temp.file.flush().await?;
        drop(temp.file);
        self.disk().commit(temp.path, digest).await?;
        if let Some(backing) = self.backing_for_writes() {
            backing
                .write_bytes(digest, data)
                .await
                .map_err(StorageError::Backing)?;
        }
        Ok(())
    }

    /// An open file holding the blob (made local first when only the backing cache has
    /// it), for streaming reads at any offset; `None` when no tier has it.
    pub async fn open_file(
        &self,
        digest: &BlobDigest,
    ) -> Result<Option<tokio::fs::File>, StorageError> {
        if let Some(file) = self.disk().open_blob(digest).await? {
            return Ok(Some(file));
        }
        if !self.fetch_from_backing(digest).await? {
            return Ok(None);
        }
        Ok(self.disk().open_blob(digest).await?)
    }

    /// Starts a streaming upload of `digest` into a temporary file inside the data dir.
    /// A digest larger than the CAS is refused before any temporary file exists.
    pub async fn start_upload(&self, digest: &BlobDigest) -> Result<Upload, StorageError> {
        self.check_fits(digest)?;
        let temp = self.disk().new_temp().await?;
        Ok(Upload::new(self.clone(), digest.clone(), temp, true))
    }

    /// Copies a blob to `dest` (a new file; parents exist), with the executable bit as
    /// asked. Inputs are copies, not hard links, so that an action writing to its
    /// inputs cannot corrupt the CAS.
    pub async fn materialize(
        &self,
        digest: &BlobDigest,
        dest: &Path,
        executable: bool,
    ) -> Result<(), StorageError> {
        // Holding the open source file makes the copy immune to a concurrent eviction.
        let source = if digest.is_empty_blob() {
            None
        } else {
            let file = self.open_file(digest).await?;
            Some(
                file.ok_or_else(|| StorageError::NotFound(digest.clone()))?
                    .into_std()
                    .await,
            )
        };
        let dest = dest.to_owned();
        let mode = if executable { 0o555 } else { 0o444 };
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut target = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&dest)?;
            if let Some(mut source) = source {
                std::io::copy(&mut source, &mut target)?;
            }
            target.set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// Hashes the file at `path` and moves it into the CAS (the caller gives it up), then
    /// writes it through to the backing cache. Used for action outputs.
    pub async fn ingest_file(&self, path: &Path) -> Result<BlobDigest, StorageError> {
        let source = path.to_owned();
        let digest = tokio::task::spawn_blocking(move || hash_regular_file(&source))
            .await
            .map_err(std::io::Error::other)??;
        self.check_fits(&digest)?;
        if let Err(error) = self.disk().commit_path(path, &digest).await {
            // The output directory may sit on another filesystem (EXDEV): copy instead.
            tracing::debug!(%error, path = %path.display(), "rename into the CAS failed, copying");
            let mut upload = self.start_upload(&digest).await?;
            let mut file = tokio::fs::File::open(path).await?;
            let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
            loop {
                let n = backing::read_full(&mut file, &mut buffer).await?;
                if n == 0 {
                    break;
                }
                upload.write(&buffer[..n]).await?;
            }
            upload.commit().await?;
            return Ok(digest);
        }
        self.write_through_file(&digest).await?;
        Ok(digest)
    }

    /// Where temporary files and work directories may live: on the CAS's filesystem, so
    /// renames into the CAS are atomic.
    pub fn scratch_dir(&self) -> PathBuf {
        self.disk().tmp_dir().to_owned()
    }

    fn disk(&self) -> &DiskStore {
        &self.inner.disk
    }
}

/// The digest of a regular file, read in bounded pieces. Refuses symlinks and special
/// files: moving a symlink into the CAS would store the link, not content.
fn hash_regular_file(path: &Path) -> std::io::Result<BlobDigest> {
    let metadata = std::fs::symlink_metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut file = std::fs::File::open(path)?;
    let mut hasher = DigestHasher::default();
    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..n]);
    }
}
