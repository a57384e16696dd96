//! Collecting an action's outputs into the CAS after it ran: files (with their
//! executable bit), directories as `Tree` messages, and symlinks (never followed).
//!
//! The action's process group is dead by now, but what it left is still hostile: a
//! parent of an output may be a symlink pointing anywhere. Parents are resolved and
//! must stay inside the input root; the output itself is looked at without following
//! it. Files are hard-linked into a staging directory before `Cas::ingest_file` takes
//! them, so one file may be reached by several outputs (a file inside an output
//! directory that is also listed itself). Missing outputs are simply absent.
//!
//! The files' total size is bounded (`max_output_bytes` less what stdout and stderr
//! took): each file is measured before it is ingested, so an action cannot fill the CAS
//! with outputs past the bound; exceeding it fails the collection as `TooLarge`.

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prost::Message;
use remesh_proto::reapi::{
    Directory, DirectoryNode, FileNode, OutputDirectory, OutputFile, OutputSymlink, SymlinkNode,
    Tree,
};

use crate::digest::BlobDigest;
use crate::execution::action::{OutputKind, OutputRequest};
use crate::execution::error::ExecutionError;
use crate::execution::input_tree::MAX_TREE_DEPTH;
use crate::storage::Cas;

/// Most entries one output directory may hold.
pub const MAX_OUTPUT_ENTRIES: u64 = 1_000_000;

/// The output half of an ActionResult.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CollectedOutputs {
    pub files: Vec<OutputFile>,
    pub directories: Vec<OutputDirectory>,
    /// Every symlink output (REAPI v2.1 `output_symlinks`).
    pub symlinks: Vec<OutputSymlink>,
    /// The same symlinks split by how they were requested, for v2.0 clients.
    pub file_symlinks: Vec<OutputSymlink>,
    pub directory_symlinks: Vec<OutputSymlink>,
}

/// Collects `requests` from the input root `root`, staging hard links in `staging` (an
/// existing directory on the CAS's filesystem). The files may hold `max_bytes` in all.
pub async fn collect_outputs(
    cas: &Cas,
    root: &Path,
    staging: &Path,
    requests: &[OutputRequest],
    max_bytes: u64,
) -> Result<CollectedOutputs, ExecutionError> {
    let collector = Collector {
        cas,
        staging,
        next_staged: AtomicU64::new(0),
        entries: AtomicU64::new(0),
        remaining_bytes: AtomicU64::new(max_bytes),
        max_bytes,
    };
    let canonical_root = tokio::fs::canonicalize(root)
        .await
        .map_err(ExecutionError::io("resolving the input root"))?;
    let mut collected = CollectedOutputs::default();
    for request in requests {
        let Some(path) = inside_root(&canonical_root, &request.location.under(root)).await? else {
            continue;
        };
        let Ok(metadata) = tokio::fs::symlink_metadata(&path).await else {
            continue;
        };
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            let symlink = OutputSymlink {
                path: request.requested.clone(),
                target: read_target(&path).await?,
                node_properties: None,
            };
            match request.kind {
                OutputKind::File => collected.file_symlinks.push(symlink.clone()),
                OutputKind::Directory => collected.directory_symlinks.push(symlink.clone()),
                OutputKind::Any => {}
            }
            collected.symlinks.push(symlink);
        } else if file_type.is_file() {
            if request.kind == OutputKind::Directory {
                return Err(wrong_type(&request.requested, "directory", "file"));
            }
            let digest = collector.ingest(&path, metadata.len()).await?;
            collected.files.push(OutputFile {
                path: request.requested.clone(),
                digest: Some(digest.to_proto()),
                is_executable: is_executable(&metadata),
                ..Default::default()
            });
        } else if file_type.is_dir() {
            if request.kind == OutputKind::File {
                return Err(wrong_type(&request.requested, "file", "directory"));
            }
            collected.directories.push(
                collector
                    .output_directory(&request.requested, &path)
                    .await?,
            );
        }
        // Sockets, FIFOs and devices cannot be outputs; they are left out like missing ones.
    }
    Ok(collected)
}

/// The output's path with its parents resolved, if they stay inside the root; `None`
/// when a parent is missing. A parent leading outside the root is the action's fault.
async fn inside_root(
    canonical_root: &Path,
    path: &Path,
) -> Result<Option<PathBuf>, ExecutionError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let Ok(parent) = tokio::fs::canonicalize(parent).await else {
        return Ok(None);
    };
    if !parent.starts_with(canonical_root) {
        return Err(ExecutionError::FailedPrecondition(format!(
            "a parent directory of output {} is a symlink leading outside the input root",
            path.display()
        )));
    }
    Ok(Some(parent.join(name)))
}

async fn read_target(path: &Path) -> Result<String, ExecutionError> {
    let target = tokio::fs::read_link(path)
        .await
        .map_err(ExecutionError::io(format!(
            "reading symlink {}",
            path.display()
        )))?;
    target.into_os_string().into_string().map_err(|target| {
        ExecutionError::FailedPrecondition(format!(
            "symlink {} has a target that is not UTF-8: {target:?}",
            path.display()
        ))
    })
}

fn is_executable(metadata: &std::fs::Metadata) -> bool {
    metadata.permissions().mode() & 0o100 != 0
}

fn wrong_type(path: &str, asked: &str, found: &str) -> ExecutionError {
    ExecutionError::FailedPrecondition(format!(
        "output {path:?} was requested as a {asked} but the action left a {found}"
    ))
}

struct Collector<'a> {
    cas: &'a Cas,
    staging: &'a Path,
    next_staged: AtomicU64,
    entries: AtomicU64,
    /// What is left of the byte bound; charged before each file is ingested.
    remaining_bytes: AtomicU64,
    max_bytes: u64,
}

type WalkFuture<'a> = Pin<Box<dyn Future<Output = Result<Directory, ExecutionError>> + Send + 'a>>;

impl Collector<'_> {
    /// Charges `len` bytes to the bound, then hard-links (or, across filesystems,
    /// copies) the file into staging and ingests the link, leaving the original in
    /// place.
    async fn ingest(&self, path: &Path, len: u64) -> Result<BlobDigest, ExecutionError> {
        let charged =
            self.remaining_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |remaining| {
                    remaining.checked_sub(len)
                });
        if charged.is_err() {
            return Err(ExecutionError::TooLarge(format!(
                "the action's outputs, stdout and stderr exceed max_output_bytes ({} bytes); nothing was cached",
                self.max_bytes
            )));
        }
        let staged = self
            .staging
            .join(self.next_staged.fetch_add(1, Ordering::Relaxed).to_string());
        if tokio::fs::hard_link(path, &staged).await.is_err() {
            tokio::fs::copy(path, &staged)
                .await
                .map_err(ExecutionError::io(format!(
                    "staging output {}",
                    path.display()
                )))?;
        }
        Ok(self.cas.ingest_file(&staged).await?)
    }

    /// Stores the directory at `path` as a Tree (and each Directory in it, so
    /// `root_directory_digest` resolves too).
    async fn output_directory(
        &self,
        requested: &str,
        path: &Path,
    ) -> Result<OutputDirectory, ExecutionError> {
        let mut children = HashMap::new();
        let root = self.walk(path, 0, &mut children).await?;
        let root_digest = self.store(&root).await?;
        let mut children: Vec<(BlobDigest, Directory)> = children.into_iter().collect();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, child) in &children {
            self.store(child).await?;
        }
        let tree = Tree {
            root: Some(root),
            children: children.into_iter().map(|(_, child)| child).collect(),
        };
        let tree_digest = self.store(&tree).await?;
        Ok(OutputDirectory {
            path: requested.to_owned(),
            tree_digest: Some(tree_digest.to_proto()),
            is_topologically_sorted: false,
            root_directory_digest: Some(root_digest.to_proto()),
        })
    }

    async fn store<M: Message>(&self, message: &M) -> Result<BlobDigest, ExecutionError> {
        let bytes = Bytes::from(message.encode_to_vec());
        let digest = BlobDigest::of_bytes(&bytes);
        self.cas.write_bytes(&digest, bytes).await?;
        Ok(digest)
    }

    /// Builds the Directory for `path`, adding every descendant Directory to `children`.
    fn walk<'a>(
        &'a self,
        path: &'a Path,
        depth: usize,
        children: &'a mut HashMap<BlobDigest, Directory>,
    ) -> WalkFuture<'a> {
        Box::pin(async move {
            if depth > MAX_TREE_DEPTH {
                return Err(ExecutionError::FailedPrecondition(format!(
                    "output directory {} is nested deeper than {MAX_TREE_DEPTH} levels",
                    path.display()
                )));
            }
            let mut names = Vec::new();
            let mut entries = tokio::fs::read_dir(path)
                .await
                .map_err(ExecutionError::io(format!("reading {}", path.display())))?;
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(ExecutionError::io(format!("reading {}", path.display())))?
            {
                if self.entries.fetch_add(1, Ordering::Relaxed) >= MAX_OUTPUT_ENTRIES {
                    return Err(ExecutionError::TooLarge(format!(
                        "output directories hold more than {MAX_OUTPUT_ENTRIES} entries"
                    )));
                }
                let name = entry.file_name().into_string().map_err(|name| {
                    ExecutionError::FailedPrecondition(format!(
                        "output {} holds a name that is not UTF-8: {name:?}",
                        path.display()
                    ))
                })?;
                names.push(name);
            }
            // REAPI wants each list sorted by name; sorting all names sorts each list.
            names.sort();
            let mut directory = Directory::default();
            for name in names {
                let child = path.join(&name);
                let Ok(metadata) = tokio::fs::symlink_metadata(&child).await else {
                    continue;
                };
                let file_type = metadata.file_type();
                if file_type.is_symlink() {
                    directory.symlinks.push(SymlinkNode {
                        name,
                        target: read_target(&child).await?,
                        node_properties: None,
                    });
                } else if file_type.is_file() {
                    let digest = self.ingest(&child, metadata.len()).await?;
                    directory.files.push(FileNode {
                        name,
                        digest: Some(digest.to_proto()),
                        is_executable: is_executable(&metadata),
                        node_properties: None,
                    });
                } else if file_type.is_dir() {
                    let subdirectory = self.walk(&child, depth + 1, children).await?;
                    let digest = BlobDigest::of_message(&subdirectory);
                    children.insert(digest.clone(), subdirectory);
                    directory.directories.push(DirectoryNode {
                        name,
                        digest: Some(digest.to_proto()),
                    });
                }
            }
            Ok(directory)
        })
    }
}
