//! The input root: fetching its Directory messages from the CAS, checking them, and
//! materialising the tree into a work directory.
//!
//! Everything here treats the tree as hostile: names are checked before they become
//! paths, symlink targets may not leave the root, and depth, expanded size and bytes
//! read are bounded so a small DAG cannot expand into an unbounded materialisation.
//! Every missing blob (directories and files) is reported at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use remesh_proto::reapi::Directory;

use crate::digest::BlobDigest;
use crate::execution::action::{ActionLimits, read_message};
use crate::execution::error::ExecutionError;
use crate::storage::Cas;

/// Deepest directory nesting accepted below the input root.
pub const MAX_TREE_DEPTH: usize = 256;
/// Most entries (files, directories, symlinks) the expanded tree may hold.
pub const MAX_INPUT_ENTRIES: u64 = 1_000_000;
/// Most bytes of Directory messages read for one input root.
pub const MAX_TREE_BYTES: u64 = 64 << 20;
/// Blobs fetched or copied at once.
const CONCURRENCY: usize = 16;

/// A fetched and checked input tree.
#[derive(Debug)]
pub struct InputTree {
    root: BlobDigest,
    directories: HashMap<BlobDigest, Directory>,
}

impl InputTree {
    /// Fetches every Directory below `root`, checks each and the whole, and checks that
    /// every file blob is present. Missing blobs are reported together.
    pub async fn fetch(
        cas: &Cas,
        root: &BlobDigest,
        limits: &ActionLimits,
    ) -> Result<Self, ExecutionError> {
        let mut directories = HashMap::new();
        let mut missing = Vec::new();
        let mut bytes_read = 0u64;
        let mut level = vec![root.clone()];
        let mut depth = 0;
        while !level.is_empty() {
            if depth > MAX_TREE_DEPTH {
                return Err(ExecutionError::InvalidArgument(format!(
                    "input tree is deeper than {MAX_TREE_DEPTH} directories"
                )));
            }
            bytes_read += level.iter().map(BlobDigest::size).sum::<u64>();
            if bytes_read > MAX_TREE_BYTES || directories.len() as u64 > MAX_INPUT_ENTRIES {
                return Err(ExecutionError::TooLarge(format!(
                    "input tree exceeds {MAX_TREE_BYTES} bytes or {MAX_INPUT_ENTRIES} directories"
                )));
            }
            let fetched: Vec<(BlobDigest, Result<Directory, ExecutionError>)> =
                futures::stream::iter(level)
                    .map(|digest| async move {
                        let result = read_message(cas, &digest, "Directory", limits).await;
                        (digest, result)
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            let mut next = HashSet::new();
            for (digest, result) in fetched {
                let directory = match result {
                    Ok(directory) => directory,
                    Err(ExecutionError::MissingBlobs(blobs)) => {
                        missing.extend(blobs);
                        continue;
                    }
                    Err(other) => return Err(other),
                };
                validate_directory(&directory).map_err(|reason| {
                    ExecutionError::InvalidArgument(format!("Directory {digest}: {reason}"))
                })?;
                for child in &directory.directories {
                    let child = child_digest(child.digest.as_ref())?;
                    if !directories.contains_key(&child) {
                        next.insert(child);
                    }
                }
                directories.insert(digest, directory);
            }
            level = next
                .into_iter()
                .filter(|digest| !directories.contains_key(digest))
                .collect();
            depth += 1;
        }
        let tree = Self {
            root: root.clone(),
            directories,
        };
        if missing.is_empty() {
            tree.check()?;
        }
        missing.extend(cas.find_missing(&tree.file_digests()?).await?);
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(ExecutionError::MissingBlobs(missing));
        }
        Ok(tree)
    }

    /// Every distinct non-empty file blob of the tree.
    fn file_digests(&self) -> Result<Vec<BlobDigest>, ExecutionError> {
        let mut digests = HashSet::new();
        for directory in self.directories.values() {
            for file in &directory.files {
                let digest = child_digest(file.digest.as_ref())?;
                if !digest.is_empty_blob() {
                    digests.insert(digest);
                }
            }
        }
        let mut digests: Vec<_> = digests.into_iter().collect();
        digests.sort();
        Ok(digests)
    }

    /// Whole-tree checks: no cycle, bounded depth and expanded size, no symlink
    /// climbing above the root.
    pub fn check(&self) -> Result<(), ExecutionError> {
        let mut walk = TreeWalk {
            directories: &self.directories,
            summaries: HashMap::new(),
            visiting: HashSet::new(),
        };
        let summary = walk.summarise(&self.root, 0)?;
        if summary.entries > MAX_INPUT_ENTRIES {
            return Err(ExecutionError::TooLarge(format!(
                "input tree expands to more than {MAX_INPUT_ENTRIES} entries"
            )));
        }
        if let Some((climb, culprit)) = summary.escape
            && climb > 0
        {
            return Err(ExecutionError::InvalidArgument(format!(
                "symlink {culprit:?} points outside the input root"
            )));
        }
        Ok(())
    }

    /// Creates the tree under `dest` (an existing empty directory): directories,
    /// symlinks, and files copied from the CAS with their executable bits.
    pub async fn materialize(&self, cas: &Cas, dest: &Path) -> Result<(), ExecutionError> {
        let mut files = Vec::new();
        let mut pending = vec![(self.root.clone(), dest.to_path_buf())];
        while let Some((digest, path)) = pending.pop() {
            let directory = self
                .directories
                .get(&digest)
                .ok_or_else(|| ExecutionError::MissingBlobs(vec![digest.clone()]))?;
            for child in &directory.directories {
                let child_path = path.join(&child.name);
                tokio::fs::create_dir(&child_path)
                    .await
                    .map_err(ExecutionError::io(format!(
                        "creating {}",
                        child_path.display()
                    )))?;
                pending.push((child_digest(child.digest.as_ref())?, child_path));
            }
            for symlink in &directory.symlinks {
                let link = path.join(&symlink.name);
                tokio::fs::symlink(&symlink.target, &link)
                    .await
                    .map_err(ExecutionError::io(format!(
                        "creating symlink {}",
                        link.display()
                    )))?;
            }
            for file in &directory.files {
                let digest = child_digest(file.digest.as_ref())?;
                files.push((digest, path.join(&file.name), file.is_executable));
            }
        }
        futures::stream::iter(files)
            .map(|(digest, path, executable)| materialize_file(cas, digest, path, executable))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
    }
}

async fn materialize_file(
    cas: &Cas,
    digest: BlobDigest,
    path: PathBuf,
    executable: bool,
) -> Result<(), ExecutionError> {
    Ok(cas.materialize(&digest, &path, executable).await?)
}

fn child_digest(
    digest: Option<&remesh_proto::reapi::Digest>,
) -> Result<BlobDigest, ExecutionError> {
    BlobDigest::from_field(digest)
        .map_err(|e| ExecutionError::InvalidArgument(format!("input tree: {e}")))
}

/// Checks one Directory on its own: names, order, uniqueness, digests, symlink targets
/// that are absolute.
pub fn validate_directory(directory: &Directory) -> Result<(), String> {
    let mut names = HashSet::new();
    let lists: [(&str, Vec<&str>); 3] = [
        (
            "file",
            directory.files.iter().map(|f| f.name.as_str()).collect(),
        ),
        (
            "directory",
            directory
                .directories
                .iter()
                .map(|d| d.name.as_str())
                .collect(),
        ),
        (
            "symlink",
            directory.symlinks.iter().map(|s| s.name.as_str()).collect(),
        ),
    ];
    for (kind, list) in &lists {
        for (index, name) in list.iter().enumerate() {
            check_name(name).map_err(|reason| format!("{kind} name {name:?} {reason}"))?;
            if index > 0 && list[index - 1] >= *name {
                return Err(format!("{kind} names are not sorted or repeat at {name:?}"));
            }
            if !names.insert(*name) {
                return Err(format!("name {name:?} appears twice"));
            }
        }
    }
    for file in &directory.files {
        BlobDigest::from_field(file.digest.as_ref())
            .map_err(|e| format!("file {:?}: {e}", file.name))?;
    }
    for child in &directory.directories {
        BlobDigest::from_field(child.digest.as_ref())
            .map_err(|e| format!("directory {:?}: {e}", child.name))?;
    }
    for symlink in &directory.symlinks {
        let target = &symlink.target;
        if target.is_empty() || target.contains('\0') {
            return Err(format!(
                "symlink {:?} has an empty or NUL target",
                symlink.name
            ));
        }
        if target.starts_with('/') {
            return Err(format!(
                "symlink {:?} has an absolute target, which points outside the input root",
                symlink.name
            ));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), &'static str> {
    match name {
        "" => Err("is empty"),
        "." | ".." => Err("is a path component, not a name"),
        _ if name.contains('/') => Err("contains '/'"),
        _ if name.contains('\0') => Err("contains NUL"),
        _ => Ok(()),
    }
}

/// How many directory levels above its own directory a relative symlink target
/// reaches (0 when it stays at or below it).
fn target_climb(target: &str) -> i64 {
    let mut level = 0i64;
    let mut lowest = 0i64;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                level -= 1;
                lowest = lowest.min(level);
            }
            _ => level += 1,
        }
    }
    -lowest
}

/// What the whole-tree check needs to know about a directory and everything below it.
#[derive(Clone)]
struct Summary {
    /// Entries in the expanded subtree.
    entries: u64,
    /// Levels below it (0 for a leaf directory).
    height: usize,
    /// The farthest climb above this directory by any symlink in the subtree, and that
    /// symlink's path relative to this directory.
    escape: Option<(i64, String)>,
}

struct TreeWalk<'a> {
    directories: &'a HashMap<BlobDigest, Directory>,
    summaries: HashMap<BlobDigest, Summary>,
    visiting: HashSet<BlobDigest>,
}

impl TreeWalk<'_> {
    /// Memoised depth-first walk; recursion is bounded by MAX_TREE_DEPTH.
    fn summarise(&mut self, digest: &BlobDigest, depth: usize) -> Result<Summary, ExecutionError> {
        if let Some(summary) = self.summaries.get(digest) {
            return self.within_depth(summary.clone(), depth);
        }
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep());
        }
        if !self.visiting.insert(digest.clone()) {
            return Err(ExecutionError::InvalidArgument(format!(
                "input tree has a cycle through Directory {digest}"
            )));
        }
        let directory = self
            .directories
            .get(digest)
            .ok_or_else(|| ExecutionError::MissingBlobs(vec![digest.clone()]))?;
        let mut summary = Summary {
            entries: (directory.files.len() + directory.symlinks.len()) as u64,
            height: 0,
            escape: None,
        };
        for symlink in &directory.symlinks {
            raise(
                &mut summary.escape,
                target_climb(&symlink.target),
                &symlink.name,
            );
        }
        for child in &directory.directories {
            let child_summary = self.summarise(&child_digest(child.digest.as_ref())?, depth + 1)?;
            summary.entries = summary.entries.saturating_add(1 + child_summary.entries);
            summary.height = summary.height.max(child_summary.height + 1);
            if let Some((climb, path)) = child_summary.escape {
                raise(
                    &mut summary.escape,
                    climb - 1,
                    &format!("{}/{path}", child.name),
                );
            }
            if summary.entries > MAX_INPUT_ENTRIES {
                break;
            }
        }
        self.visiting.remove(digest);
        self.summaries.insert(digest.clone(), summary.clone());
        self.within_depth(summary, depth)
    }

    fn within_depth(&self, summary: Summary, depth: usize) -> Result<Summary, ExecutionError> {
        if depth + summary.height > MAX_TREE_DEPTH {
            return Err(too_deep());
        }
        Ok(summary)
    }
}

fn raise(escape: &mut Option<(i64, String)>, climb: i64, path: &str) {
    if climb > 0 && escape.as_ref().is_none_or(|(current, _)| climb > *current) {
        *escape = Some((climb, path.to_owned()));
    }
}

fn too_deep() -> ExecutionError {
    ExecutionError::InvalidArgument(format!(
        "input tree is deeper than {MAX_TREE_DEPTH} directories"
    ))
}

#[cfg(test)]
#[path = "input_tree_tests.rs"]
mod tests;
