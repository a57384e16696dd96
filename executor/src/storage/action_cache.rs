//! The action cache: action digest → serialized ActionResult in `data_dir/ac/<hash>`.
//!
//! Owns the `ac/` directory. Entries are written atomically (temporary file in the CAS's
//! scratch directory, then rename) and through to the backing cache unless it is
//! read-only; a local miss reads through the backing cache, except in a `local_only`
//! view. A result is only served while every blob it names is still stored (in the tier
//! the view reads), so a client never gets a hit it cannot download and re-executes
//! instead.

use std::path::PathBuf;

use prost::Message;
use remesh_proto::reapi::{ActionResult, Tree};
use tokio::io::AsyncWriteExt;

use super::{Cas, StorageError};
use crate::config::Config;
use crate::digest::BlobDigest;

/// Trees larger than this are not opened to check the files they list (the tree blob
/// itself is still checked): it bounds the memory one lookup can take.
const MAX_CHECKED_TREE_BYTES: u64 = 16 << 20;

/// The action cache: action digest → ActionResult.
#[derive(Clone)]
pub struct ActionCache {
    dir: PathBuf,
    cas: Cas,
}

impl ActionCache {
    pub async fn open(config: &Config, cas: Cas) -> Result<Self, StorageError> {
        let dir = config.data_dir.join("ac");
        tokio::fs::create_dir_all(&dir).await?;
        Ok(Self { dir, cas })
    }

    /// The same cache, answering from the local tier only: a local miss is a miss, and
    /// the blobs a local result names must be local too. Writes are unchanged.
    pub fn local_only(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            cas: self.cas.local_only(),
        }
    }

    pub async fn get(&self, action: &BlobDigest) -> Result<Option<ActionResult>, StorageError> {
        let result = match self.get_local(action).await? {
            Some(result) => result,
            None => match self.get_backing(action).await? {
                Some(result) => result,
                None => return Ok(None),
            },
        };
        let referenced = self.referenced_blobs(&result).await?;
        let missing = self.cas.find_missing(&referenced).await?;
        if !missing.is_empty() {
            tracing::debug!(%action, missing = missing.len(), "cached result lost blobs");
            return Ok(None);
        }
        Ok(Some(result))
    }

    pub async fn put(
        &self,
        action: &BlobDigest,
        result: &ActionResult,
    ) -> Result<(), StorageError> {
        self.put_local(action, result).await?;
        if let Some(backing) = self.cas.backing_for_writes() {
            backing
                .update_action_result(action, result)
                .await
                .map_err(StorageError::Backing)?;
        }
        Ok(())
    }

    async fn get_local(&self, action: &BlobDigest) -> Result<Option<ActionResult>, StorageError> {
        let path = self.dir.join(action.hash());
        let data = match tokio::fs::read(&path).await {
            Ok(data) => data,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        match ActionResult::decode(data.as_slice()) {
            Ok(result) => Ok(Some(result)),
            Err(error) => {
                // Writes are atomic, so this is disk damage: drop the entry, re-execute.
                tracing::warn!(%action, %error, "dropping an undecodable action cache entry");
                let _ = tokio::fs::remove_file(&path).await;
                Ok(None)
            }
        }
    }

    async fn get_backing(&self, action: &BlobDigest) -> Result<Option<ActionResult>, StorageError> {
        let Some(backing) = self.cas.backing_for_reads() else {
            return Ok(None);
        };
        let result = backing
            .get_action_result(action)
            .await
            .map_err(StorageError::Backing)?;
        if let Some(result) = &result {
            self.put_local(action, result).await?;
        }
        Ok(result)
    }

    async fn put_local(
        &self,
        action: &BlobDigest,
        result: &ActionResult,
    ) -> Result<(), StorageError> {
        let scratch = self.cas.scratch_dir();
        let named = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("blob-ac-")
                .tempfile_in(scratch)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (file, temp_path) = named.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        file.write_all(&result.encode_to_vec()).await?;
        file.flush().await?;
        drop(file);
        let dest = self.dir.join(action.hash());
        tokio::task::spawn_blocking(move || temp_path.persist(dest).map_err(|error| error.error))
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// Every blob a client fetching `result` may download: outputs, stdout and stderr,
    /// output directory trees and (for trees of bounded size) the files in them.
    /// Digests that do not validate are skipped: they were checked on the way in.
    async fn referenced_blobs(
        &self,
        result: &ActionResult,
    ) -> Result<Vec<BlobDigest>, StorageError> {
        let mut digests: Vec<BlobDigest> = result
            .output_files
            .iter()
            .filter_map(|file| BlobDigest::from_field(file.digest.as_ref()).ok())
            .chain(
                [&result.stdout_digest, &result.stderr_digest]
                    .into_iter()
                    .filter_map(|digest| BlobDigest::from_field(digest.as_ref()).ok()),
            )
            .collect();
        for directory in &result.output_directories {
            let Ok(tree) = BlobDigest::from_field(directory.tree_digest.as_ref()) else {
                continue;
            };
            digests.push(tree.clone());
            if tree.size() > MAX_CHECKED_TREE_BYTES {
                continue;
            }
            let Some(data) = self.cas.read_bytes(&tree).await? else {
                continue; // reported missing by the check that follows
            };
            let Ok(tree) = Tree::decode(data) else {
                continue;
            };
            let files = tree
                .root
                .iter()
                .chain(tree.children.iter())
                .flat_map(|directory| directory.files.iter());
            digests
                .extend(files.filter_map(|file| BlobDigest::from_field(file.digest.as_ref()).ok()));
        }
        digests.sort();
        digests.dedup();
        Ok(digests)
    }
}
