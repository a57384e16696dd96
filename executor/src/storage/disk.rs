//! Tier 1: blobs as read-only files under `data_dir/cas/<first 2 hex>/<hash>`.
//!
//! Owns the `cas/` and the `blob-*` temporary files of `tmp/`, and the LRU index of what
//! `cas/` holds. A blob becomes visible only by an atomic rename of a complete,
//! verified temporary file, so readers never see a partial blob. The index lock is only
//! ever held for in-memory bookkeeping, never across I/O. What must not interleave for
//! one hash (a rename into place against the deletion of an evicted file of that hash)
//! is ordered by a striped lock keyed by the hash, so unrelated blobs never wait for
//! each other. Readers hold open files, so an eviction never cuts a read short.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use tempfile::TempPath;

use super::lru::LruIndex;
use crate::digest::{BlobDigest, EMPTY_SHA256};
use crate::metrics::Metrics;

/// Prefix of this module's temporary files, so start-up cleaning spares everything else
/// in `tmp/` (the execution engine's work directories live there too).
const TEMP_PREFIX: &str = "blob-";

/// Files in the CAS are read-only: an accidental write through a hard link or a bug
/// must not silently change a blob under its name.
const BLOB_MODE: u32 = 0o444;

/// Stripes of the per-hash lock: enough that two hashes rarely share one.
const HASH_STRIPES: usize = 64;

pub struct DiskStore {
    cas_dir: PathBuf,
    tmp_dir: PathBuf,
    max_bytes: u64,
    index: Mutex<LruIndex>,
    /// Orders renames into place and deletions of one hash (see the module doc).
    hash_locks: Vec<tokio::sync::Mutex<()>>,
    metrics: Metrics,
}

/// A temporary file being filled; deleted when dropped unless committed.
pub struct TempBlob {
    pub file: tokio::fs::File,
    pub path: TempPath,
}

impl DiskStore {
    /// Creates `cas/` and `tmp/` under `data_dir`, removes temporary files a previous run
    /// left, indexes the blobs already present (oldest modification first, so recency
    /// survives a restart approximately) and evicts down to `max_bytes`.
    pub async fn open(data_dir: &Path, max_bytes: u64, metrics: Metrics) -> std::io::Result<Self> {
        let store = Self {
            cas_dir: data_dir.join("cas"),
            tmp_dir: data_dir.join("tmp"),
            max_bytes,
            index: Mutex::new(LruIndex::default()),
            hash_locks: (0..HASH_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            metrics,
        };
        let (cas_dir, tmp_dir) = (store.cas_dir.clone(), store.tmp_dir.clone());
        let found = tokio::task::spawn_blocking(move || scan(&cas_dir, &tmp_dir))
            .await
            .map_err(std::io::Error::other)??;
        {
            let mut index = store.lock();
            for (_, hash, size) in &found {
                index.insert(hash, size.to_owned());
            }
        }
        let empty_path = store.blob_path(EMPTY_SHA256);
        if tokio::fs::metadata(&empty_path).await.is_err() {
            let temp = store.new_temp().await?;
            drop(temp.file);
            store.place(&temp.path, &empty_path).await?;
            let _ = temp.path.keep();
        }
        store.evict("").await;
        let (blobs, bytes) = {
            let index = store.lock();
            (index.len(), index.total_bytes())
        };
        tracing::info!(found = found.len(), blobs, bytes, "local CAS indexed");
        Ok(store)
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// The path of a blob; `hash` comes from a validated digest (64 hex characters), so
    /// it cannot leave the CAS directory.
    pub fn blob_path(&self, hash: &str) -> PathBuf {
        self.cas_dir.join(&hash[..2]).join(hash)
    }

    /// Whether the blob is on local disk. Does not change recency.
    pub fn contains(&self, digest: &BlobDigest) -> bool {
        digest.is_empty_blob() || self.lock().contains(digest.hash(), digest.size())
    }

    /// Marks the blob as used; false when it is not on local disk.
    pub fn touch(&self, digest: &BlobDigest) -> bool {
        digest.is_empty_blob() || self.lock().touch(digest.hash(), digest.size())
    }

    /// Opens a local blob for reading and marks it used; `None` when it is not local.
    pub async fn open_blob(&self, digest: &BlobDigest) -> std::io::Result<Option<tokio::fs::File>> {
        if !self.touch(digest) {
            return Ok(None);
        }
        match tokio::fs::File::open(self.blob_path(digest.hash())).await {
            Ok(file) => Ok(Some(file)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.forget(digest).await;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Drops a blob from the index whose file turned out to be gone (deleted behind the
    /// executor's back), unless a writer has put it back in the meantime.
    async fn forget(&self, digest: &BlobDigest) {
        if digest.is_empty_blob() {
            return;
        }
        let _hash_guard = self.hash_lock(digest.hash()).lock().await;
        if tokio::fs::try_exists(self.blob_path(digest.hash()))
            .await
            .unwrap_or(false)
        {
            return;
        }
        let mut index = self.lock();
        if index.contains(digest.hash(), digest.size()) {
            tracing::warn!(%digest, "indexed blob file vanished");
            index.remove(digest.hash());
        }
        self.publish(&index);
    }

    /// A new, empty temporary file in `tmp/`.
    pub async fn new_temp(&self) -> std::io::Result<TempBlob> {
        let tmp_dir = self.tmp_dir.clone();
        let named = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(tmp_dir)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (file, path) = named.into_parts();
        Ok(TempBlob {
            file: tokio::fs::File::from_std(file),
            path,
        })
    }

    /// Moves a complete, verified temporary file into the CAS under `digest` and
    /// evicts what no longer fits. The caller verified the content.
    pub async fn commit(&self, temp: TempPath, digest: &BlobDigest) -> std::io::Result<()> {
        self.commit_path(&temp, digest).await?;
        // Renamed away: nothing is left for the drop guard to delete.
        let _ = temp.keep();
        Ok(())
    }

    /// Like `commit` for a file the caller owns (an action output); on failure the file
    /// stays where it was.
    pub async fn commit_path(&self, source: &Path, digest: &BlobDigest) -> std::io::Result<()> {
        if digest.is_empty_blob() {
            // Always present; the source is simply not needed.
            return Ok(());
        }
        {
            let _hash_guard = self.hash_lock(digest.hash()).lock().await;
            self.place(source, &self.blob_path(digest.hash())).await?;
            let mut index = self.lock();
            index.insert(digest.hash(), digest.size());
            self.publish(&index);
        }
        self.evict(digest.hash()).await;
        Ok(())
    }

    /// Makes `source` read-only and renames it to `dest`, creating the fan-out directory.
    async fn place(&self, source: &Path, dest: &Path) -> std::io::Result<()> {
        let (source, dest) = (source.to_owned(), dest.to_owned());
        tokio::task::spawn_blocking(move || {
            std::fs::set_permissions(&source, std::fs::Permissions::from_mode(BLOB_MODE))?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&source, &dest)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Evicts least recently used blobs beyond `max_bytes`, sparing `keep`.
    async fn evict(&self, keep: &str) {
        let victims = {
            let mut index = self.lock();
            let victims = index.evict_to(self.max_bytes, keep);
            self.publish(&index);
            victims
        };
        for (hash, _) in victims {
            self.metrics.cas_evictions_total.inc();
            let _hash_guard = self.hash_lock(&hash).lock().await;
            // Written again since it was chosen: the file on disk is the new one.
            if self.lock().contains_hash(&hash) {
                continue;
            }
            if let Err(error) = tokio::fs::remove_file(self.blob_path(&hash)).await
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%hash, %error, "could not delete an evicted blob");
            }
        }
    }

    fn hash_lock(&self, hash: &str) -> &tokio::sync::Mutex<()> {
        // Hashes are uniformly distributed hex: the first two characters pick a stripe.
        let stripe = usize::from_str_radix(&hash[..2], 16).unwrap_or(0) % HASH_STRIPES;
        &self.hash_locks[stripe]
    }

    fn publish(&self, index: &LruIndex) {
        self.metrics.cas_blobs.set(index.len() as i64);
        self.metrics.cas_bytes.set(index.total_bytes() as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruIndex> {
        // The index stays consistent even if a holder panicked: every method leaves it
        // whole before anything that could panic.
        self.index
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Creates the directories, deletes stale temporary files and lists the blobs present as
/// (modification time, hash, size), oldest first. Files that are not named like a blob
/// are left alone and not indexed.
fn scan(cas_dir: &Path, tmp_dir: &Path) -> std::io::Result<Vec<(SystemTime, String, u64)>> {
    std::fs::create_dir_all(cas_dir)?;
    std::fs::create_dir_all(tmp_dir)?;
    for entry in std::fs::read_dir(tmp_dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut found = Vec::new();
    for fan_out in std::fs::read_dir(cas_dir)? {
        let fan_out = fan_out?;
        if !fan_out.file_type()?.is_dir() {
            continue;
        }
        let prefix = fan_out.file_name().to_string_lossy().into_owned();
        for entry in std::fs::read_dir(fan_out.path())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_blob = BlobDigest::parse(&name, "0").is_ok() && name.starts_with(&prefix);
            let metadata = entry.metadata()?;
            if !is_blob || !metadata.is_file() || name == EMPTY_SHA256 {
                continue;
            }
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, name, metadata.len()));
        }
    }
    found.sort();
    Ok(found)
}
