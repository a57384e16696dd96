//! A blob being written into the local CAS chunk by chunk: a temporary file plus a
//! running hash. Nothing is visible until `commit` has verified the digest; dropping an
//! `Upload` deletes its temporary file.

use tokio::io::AsyncWriteExt;

use super::disk::TempBlob;
use super::{Cas, StorageError};
use crate::digest::{BlobDigest, DigestHasher};

/// A streaming upload: chunks are hashed as they are written; `commit` verifies and
/// renames into place, so a failed or abandoned upload leaves nothing visible.
pub struct Upload {
    cas: Cas,
    expected: BlobDigest,
    temp: TempBlob,
    hasher: DigestHasher,
    written: u64,
    /// Whether `commit` also writes the blob to the backing cache. False for blobs that
    /// came from there.
    write_through: bool,
}

impl Upload {
    pub(super) fn new(cas: Cas, expected: BlobDigest, temp: TempBlob, write_through: bool) -> Self {
        Self {
            cas,
            expected,
            temp,
            hasher: DigestHasher::default(),
            written: 0,
            write_through,
        }
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.temp.file.write_all(chunk).await?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far (the `committed_size` of QueryWriteStatus).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest this upload must match.
    pub fn expected(&self) -> &BlobDigest {
        &self.expected
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        let Self {
            cas,
            expected,
            mut temp,
            hasher,
            write_through,
            ..
        } = self;
        temp.file.flush().await?;
        drop(temp.file);
        let actual = hasher.finish();
        if actual != expected {
            return Err(StorageError::DigestMismatch { expected, actual });
        }
        cas.disk().commit(temp.path, &expected).await?;
        if write_through {
            cas.write_through_file(&expected).await?;
        }
        Ok(())
    }
}
