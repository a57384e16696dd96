//! How the CAS uses tier 2: which handle may read from or write to the backing cache
//! (`local_only` views read nothing from it; with `backing_read_only` nothing is written
//! to it), write-through of local blobs, and fetches of blobs missing locally, merged so
//! that concurrent readers of one blob fetch it once.

use std::sync::Arc;

use super::{BackingCache, Cas, StorageError, Upload};
use crate::digest::BlobDigest;

impl Cas {
    /// The same CAS, but every read answers from the local tier only: a local miss is a
    /// miss, and no backing fetch is started or joined. Writes are unchanged.
    pub fn local_only(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            use_backing: false,
        }
    }

    /// The backing cache local misses fall through to: none without one, or in a
    /// `local_only` view.
    pub(crate) fn backing_for_reads(&self) -> Option<&BackingCache> {
        self.inner.backing.as_ref().filter(|_| self.use_backing)
    }

    /// The backing cache writes go through to: none without one, or when it is
    /// read-only (`backing_read_only`).
    pub(crate) fn backing_for_writes(&self) -> Option<&BackingCache> {
        self.inner
            .backing
            .as_ref()
            .filter(|_| !self.inner.backing_read_only)
    }

    /// Writes a local blob to the backing cache, if it takes writes.
    pub(super) async fn write_through_file(&self, digest: &BlobDigest) -> Result<(), StorageError> {
        let Some(backing) = self.backing_for_writes() else {
            return Ok(());
        };
        let file = self
            .disk()
            .open_blob(digest)
            .await?
            .ok_or_else(|| StorageError::NotFound(digest.clone()))?;
        backing
            .write_file(digest, file)
            .await
            .map_err(StorageError::Backing)
    }

    /// Makes a blob local by streaming it from the backing cache; concurrent fetches of
    /// one blob are merged. Returns false when the backing cache does not have it (or
    /// there is none). A `local_only` view returns false before it could start or join
    /// a merged fetch: waiting for one would be waiting for the backing cache.
    pub(super) async fn fetch_from_backing(
        &self,
        digest: &BlobDigest,
    ) -> Result<bool, StorageError> {
        let Some(backing) = self.backing_for_reads() else {
            return Ok(false);
        };
        // A blob the local tier cannot hold is not streamed in only to be thrown away.
        self.check_fits(digest)?;
        let work = async {
            // A fetch that finished just before this one started already made it local.
            if self.disk().contains(digest) {
                return Ok(true);
            }
            self.fetch_once(backing, digest).await.map_err(Arc::new)
        };
        self.inner
            .fetches
            .run(digest, work)
            .await
            .map_err(|error| error.duplicate())
    }

    async fn fetch_once(
        &self,
        backing: &BackingCache,
        digest: &BlobDigest,
    ) -> Result<bool, StorageError> {
        let temp = self.disk().new_temp().await?;
        let upload =
            tokio::sync::Mutex::new(Upload::new(self.clone(), digest.clone(), temp, false));
        let found = backing
            .read(digest, |chunk| {
                let upload = &upload;
                async move {
                    upload.lock().await.write(&chunk).await.map_err(|error| {
                        tonic::Status::internal(format!("storing a fetched blob: {error}"))
                    })
                }
            })
            .await
            .map_err(StorageError::Backing)?;
        if !found {
            return Ok(false);
        }
        match upload.into_inner().commit().await {
            Ok(()) => {
                self.inner.metrics.backing_fetches_total.inc();
                Ok(true)
            }
            // The backing cache holds a corrupt blob: that is not the client's fault.
            Err(StorageError::DigestMismatch { actual, .. }) => Err(StorageError::Backing(
                tonic::Status::data_loss(format!("backing cache returned {actual} for {digest}")),
            )),
            Err(error) => Err(error),
        }
    }
}
