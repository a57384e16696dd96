//! Entry points of the fuzz targets (`fuzz/`), shared with the test that replays the
//! committed corpora (`tests/fuzz_corpus.rs`) so that a regression shows up in plain
//! `cargo test` without a fuzzer.
//!
//! Each takes arbitrary bytes, feeds them to one parser or validator as the network
//! would, and panics only when an invariant the rest of the executor relies on is
//! broken: a panic here is a finding, never a way of refusing input. Owns no state and
//! touches no storage.

use prost::Message as _;
use remesh_proto::reapi::{Directory, Tree};

use crate::digest::BlobDigest;
use crate::execution::ExecutionError;
use crate::execution::input_tree::{InputTree, MAX_INPUT_ENTRIES, MAX_TREE_DEPTH};
use crate::resource_name::{ReadResource, WriteResource};

/// Longest error message a hostile name may produce: messages travel back to the
/// client and into logs, so they quote names shortened. The worst case is the quoted
/// name (≤ 200 escaped bytes), a quoted digest part (≤ 80 characters of up to 10
/// escaped bytes each) and the fixed text.
const MAX_ERROR_MESSAGE_BYTES: usize = 1280;

/// ByteStream resource names, read and write forms. A name that parses must print as
/// a name that parses to the same resource; a refused one must give a short
/// INVALID_ARGUMENT.
pub fn resource_name(data: &[u8]) {
    // gRPC string fields are UTF-8 (prost refuses anything else), so only UTF-8 names
    // ever reach the parser.
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    match ReadResource::parse(name) {
        Ok(resource) => {
            let printed = resource.to_string();
            let again = ReadResource::parse(&printed)
                .unwrap_or_else(|error| panic!("{name:?} printed as {printed:?}: {error}"));
            assert_eq!(again, resource, "{name:?} printed as {printed:?}");
        }
        Err(error) => check_refusal(tonic::Status::from(error)),
    }
    match WriteResource::parse(name) {
        Ok(resource) => {
            let printed = resource.to_string();
            let again = WriteResource::parse(&printed)
                .unwrap_or_else(|error| panic!("{name:?} printed as {printed:?}: {error}"));
            assert_eq!(again, resource, "{name:?} printed as {printed:?}");
        }
        Err(error) => check_refusal(tonic::Status::from(error)),
    }
}

fn check_refusal(status: tonic::Status) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().len() <= MAX_ERROR_MESSAGE_BYTES,
        "error message of {} bytes",
        status.message().len()
    );
}

/// REAPI input trees, given as an encoded `Tree` (the root and the directories below
/// it): decoded as a server would, then checked like an input root before it is
/// materialised. Whatever the bytes, the outcome is acceptance or a refusal that
/// blames the client (INVALID_ARGUMENT, FAILED_PRECONDITION for a missing directory,
/// RESOURCE_EXHAUSTED for a tree too large), never an internal error.
///
/// Each input is checked twice: as sent, and with its directories linked (see
/// `link_forward`), where an accepted tree must also be within the depth and size
/// bounds as computed here independently.
pub fn directory_tree(data: &[u8]) {
    let Ok(tree) = Tree::decode(data) else {
        return;
    };
    let root = tree.root.clone().unwrap_or_default();
    if let Err(error) = InputTree::check_in_memory(&root, &tree.children) {
        check_tree_refusal(&error);
    }

    let linked = link_forward(tree);
    let (root, children) = linked.directories.split_first().expect("root is first");
    match InputTree::check_in_memory(root, children) {
        Ok(()) => {
            let (height, entries) = linked.shape();
            assert!(height <= MAX_TREE_DEPTH, "accepted a tree {height} deep");
            assert!(
                entries <= u128::from(MAX_INPUT_ENTRIES),
                "accepted a tree of {entries} entries"
            );
        }
        Err(error) => check_tree_refusal(&error),
    }
}

/// A tree whose directories name each other by real digests.
struct LinkedTree {
    /// The root first, then the children, as in the `Tree`.
    directories: Vec<Directory>,
    /// For each directory, the indices its DirectoryNodes were linked to (`None` for
    /// a node left with the digest it was sent with).
    links: Vec<Vec<Option<usize>>>,
}

/// Random bytes almost never name a child by its SHA-256, so on their own they stop at
/// the first missing directory. Here every DirectoryNode is pointed at a later
/// directory of the list (chosen by its size field) and given that directory's real
/// digest, so the whole-tree checks see deep, wide and shared trees. Links only go
/// forward: like real digests, they cannot form a cycle.
fn link_forward(tree: Tree) -> LinkedTree {
    let mut directories: Vec<Directory> = std::iter::once(tree.root.unwrap_or_default())
        .chain(tree.children)
        .collect();
    let count = directories.len();
    let mut digests = vec![None; count];
    let mut links = vec![Vec::new(); count];
    for index in (0..count).rev() {
        let later = count - index - 1;
        for node in &mut directories[index].directories {
            let target = (later > 0).then(|| {
                let choice = node
                    .digest
                    .as_ref()
                    .map_or(0, |d| d.size_bytes.unsigned_abs());
                index + 1 + (choice % later as u64) as usize
            });
            if let Some(target) = target {
                node.digest = digests[target].clone();
            }
            links[index].push(target);
        }
        digests[index] = Some(BlobDigest::of_message(&directories[index]).to_proto());
    }
    LinkedTree { directories, links }
}

impl LinkedTree {
    /// The root's height (directory levels below it) and the entries of the expanded
    /// tree, computed by index without the executor's code.
    fn shape(&self) -> (usize, u128) {
        let count = self.directories.len();
        let mut height = vec![0usize; count];
        let mut entries = vec![0u128; count];
        for index in (0..count).rev() {
            let directory = &self.directories[index];
            let mut total = (directory.files.len() + directory.symlinks.len()) as u128;
            for target in self.links[index].iter().flatten() {
                height[index] = height[index].max(height[*target] + 1);
                total = total.saturating_add(1 + entries[*target]);
            }
            entries[index] = total;
        }
        (height[0], entries[0])
    }
}

fn check_tree_refusal(error: &ExecutionError) {
    let code = error.code();
    assert!(
        matches!(
            code,
            tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::ResourceExhausted
        ),
        "{code:?}: {error}"
    );
    let status = error.to_rpc_status();
    assert_eq!(status.code, code as i32);
}

#[cfg(test)]
mod tests {
    use remesh_proto::reapi::{DirectoryNode, FileNode};

    use super::*;

    fn linking(names: &[&str]) -> Directory {
        Directory {
            directories: names
                .iter()
                .map(|name| DirectoryNode {
                    name: (*name).to_owned(),
                    digest: None,
                })
                .collect(),
            ..Directory::default()
        }
    }

    fn leaf() -> Directory {
        Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: Some(BlobDigest::of_bytes(b"f").to_proto()),
                ..FileNode::default()
            }],
            ..Directory::default()
        }
    }

    /// `levels` directories linking to the next, then a leaf.
    fn chain(levels: usize, names: &[&str]) -> (LinkedTree, Result<(), ExecutionError>) {
        let mut children = vec![linking(names); levels - 1];
        children.push(leaf());
        let linked = link_forward(Tree {
            root: Some(linking(names)),
            children,
        });
        let (root, children) = linked.directories.split_first().unwrap();
        let result = InputTree::check_in_memory(root, children);
        (linked, result)
    }

    #[test]
    fn forward_links_make_deep_and_wide_trees_the_checks_see() {
        let (linked, result) = chain(MAX_TREE_DEPTH, &["d"]);
        // Every level is one directory entry, and the leaf holds one file.
        assert_eq!(linked.shape(), (MAX_TREE_DEPTH, MAX_TREE_DEPTH as u128 + 1));
        result.unwrap();

        let (linked, result) = chain(MAX_TREE_DEPTH + 1, &["d"]);
        assert_eq!(linked.shape().0, MAX_TREE_DEPTH + 1);
        assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);

        // Two links per level double the expanded tree at each of 21 levels.
        let (linked, result) = chain(21, &["a", "b"]);
        assert!(linked.shape().1 > u128::from(MAX_INPUT_ENTRIES));
        assert_eq!(result.unwrap_err().code(), tonic::Code::ResourceExhausted);
    }
}
