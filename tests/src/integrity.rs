//! After-the-fact checks of a hostile-input run: nothing was written outside the
//! executor's data directory, and every blob in its CAS still hashes to its name.
//!
//! The data dir lives inside a temporary directory of its own ([`Sandbox`]), next to a
//! sentinel file; a write that escaped the data dir through `..`, an absolute path or a
//! symlink would land there (or change the sentinel), and shows up in the comparison of
//! the snapshots taken before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// What the sentinel holds: also a blob a leaking action could try to upload.
pub const SENTINEL_CONTENT: &[u8] = b"sentinel outside the data dir: must never change\n";

/// A temporary directory holding `data/` (the executor's data dir) and `sentinel`.
pub struct Sandbox {
    root: TempDir,
}

/// Every path under the sandbox outside `data/`, with its size and content hash.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, String>);

impl Sandbox {
    pub fn new() -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("remesh-hostile-")
            .tempdir()?;
        std::fs::create_dir(root.path().join("data"))?;
        std::fs::write(root.path().join("sentinel"), SENTINEL_CONTENT)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn sentinel(&self) -> PathBuf {
        self.root.path().join("sentinel")
    }

    /// The sandbox outside `data/`: the sentinel and anything that appeared next to it.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut entries = BTreeMap::new();
        let data = self.data_dir();
        walk(self.root(), &mut |path, meta| {
            if path.starts_with(&data) {
                return Ok(false);
            }
            let what = if meta.is_file() {
                format!("file {}", hex::encode(Sha256::digest(std::fs::read(path)?)))
            } else if meta.is_symlink() {
                format!("symlink {:?}", std::fs::read_link(path)?)
            } else {
                "dir".to_owned()
            };
            entries.insert(path.to_path_buf(), what);
            Ok(true)
        })?;
        Ok(Snapshot(entries))
    }
}

/// Visits every entry under `dir` (not following symlinks); `visit` returns whether to
/// descend into a directory.
fn walk(
    dir: &Path,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if visit(&path, &meta)? && meta.is_dir() {
            walk(&path, visit)?;
        }
    }
    Ok(())
}

/// Walks `<data_dir>/cas/`: every blob is a regular file at `cas/<2 hex>/<sha256>` whose
/// content hashes to that name. Returns how many blobs were checked.
pub fn check_cas(data_dir: &Path) -> anyhow::Result<usize> {
    let cas = data_dir.join("cas");
    let mut checked = 0;
    let mut problems = Vec::new();
    walk(&cas, &mut |path, meta| {
        let relative = path.strip_prefix(&cas)?;
        let depth = relative.components().count();
        if meta.is_dir() {
            if depth != 1 {
                problems.push(format!("unexpected directory {}", relative.display()));
            }
            return Ok(true);
        }
        if !meta.is_file() {
            problems.push(format!("not a regular file: {}", relative.display()));
            return Ok(false);
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let shard = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy());
        let hash = hex::encode(Sha256::digest(std::fs::read(path)?));
        if depth != 2 || shard.as_deref() != name.get(..2) || hash != name {
            problems.push(format!("{} hashes to {hash}", relative.display()));
        }
        checked += 1;
        Ok(false)
    })?;
    if !problems.is_empty() {
        bail!("CAS damaged:\n{}", problems.join("\n"));
    }
    Ok(checked)
}
