//! Storage: the content-addressable store (CAS) and the action cache (AC).
//!
//! Tier 1 is the local disk (`disk`), size-bounded with LRU eviction; tier 2 is an
//! optional backing cache (`backing`): any REAPI endpoint, read-through and
//! write-through. `Cas` and `ActionCache` are the only types the services and the
//! execution engine see; they never learn which tier answered.
//!
//! Invariants: every blob in the local CAS hashes to its name (digests are verified
//! before a blob becomes visible, writes are atomic: temp file + rename), and every path
//! this module touches lies inside `data_dir`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use remesh_proto::reapi::ActionResult;

use crate::config::Config;
use crate::digest::BlobDigest;
use crate::metrics::Metrics;

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
    #[error("backing cache: {0}")]
    Backing(tonic::Status),
}

impl From<StorageError> for tonic::Status {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::DigestMismatch { .. } => {
                tonic::Status::invalid_argument(error.to_string())
            }
            StorageError::NotFound(_) => tonic::Status::not_found(error.to_string()),
            StorageError::Io(_) => tonic::Status::internal(error.to_string()),
            StorageError::Backing(status) => {
                tonic::Status::unavailable(format!("backing cache: {}", status.message()))
            }
        }
    }
}

/// The CAS: cheap to clone, shared by every service and runner.
#[derive(Clone)]
pub struct Cas {}

impl Cas {
    /// Opens (or creates) the CAS under `config.data_dir`, indexing what a previous run
    /// left there, and connects the backing cache if one is configured.
    pub async fn open(config: &Config, metrics: Metrics) -> Result<Self, StorageError> {
        let _ = (config, metrics);
        todo!()
    }

    /// The digests of `digests` that neither tier holds, in request order.
    pub async fn find_missing(
        &self,
        digests: &[BlobDigest],
    ) -> Result<Vec<BlobDigest>, StorageError> {
        let _ = digests;
        todo!()
    }

    /// A whole blob in memory, fetched from the backing cache if need be. Callers bound
    /// the size (batch limits) before calling; `None` when no tier has it.
    pub async fn read_bytes(&self, digest: &BlobDigest) -> Result<Option<Bytes>, StorageError> {
        let _ = digest;
        todo!()
    }

    /// Stores a whole blob after checking that `data` hashes to `digest`.
    pub async fn write_bytes(&self, digest: &BlobDigest, data: Bytes) -> Result<(), StorageError> {
        let _ = (digest, data);
        todo!()
    }

    /// An open file holding the blob (made local first when only the backing cache has
    /// it), for streaming reads at any offset; `None` when no tier has it.
    pub async fn open_file(
        &self,
        digest: &BlobDigest,
    ) -> Result<Option<tokio::fs::File>, StorageError> {
        let _ = digest;
        todo!()
    }

    /// Starts a streaming upload of `digest` into a temporary file inside the data dir.
    pub async fn start_upload(&self, digest: &BlobDigest) -> Result<Upload, StorageError> {
        let _ = digest;
        todo!()
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
        let _ = (digest, dest, executable);
        todo!()
    }

    /// Hashes the file at `path` and moves it into the CAS (the caller gives it up), then
    /// writes it through to the backing cache. Used for action outputs.
    pub async fn ingest_file(&self, path: &Path) -> Result<BlobDigest, StorageError> {
        let _ = path;
        todo!()
    }

    /// Where temporary files and work directories may live: on the CAS's filesystem, so
    /// renames into the CAS are atomic.
    pub fn scratch_dir(&self) -> PathBuf {
        todo!()
    }
}

/// A streaming upload: chunks are hashed as they are written; `commit` verifies and
/// renames into place, so a failed or abandoned upload leaves nothing visible.
pub struct Upload {}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        let _ = chunk;
        todo!()
    }

    /// Bytes written so far (the `committed_size` of QueryWriteStatus).
    pub fn written(&self) -> u64 {
        todo!()
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        todo!()
    }
}

/// The action cache: action digest → ActionResult.
#[derive(Clone)]
pub struct ActionCache {}

impl ActionCache {
    pub async fn open(config: &Config, cas: Cas) -> Result<Self, StorageError> {
        let _ = (config, cas);
        todo!()
    }

    pub async fn get(&self, action: &BlobDigest) -> Result<Option<ActionResult>, StorageError> {
        let _ = action;
        todo!()
    }

    pub async fn put(
        &self,
        action: &BlobDigest,
        result: &ActionResult,
    ) -> Result<(), StorageError> {
        let _ = (action, result);
        todo!()
    }
}
