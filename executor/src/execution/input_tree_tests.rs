//! Tests of input tree checks: every hostile Directory shape is INVALID_ARGUMENT.

use super::*;
use remesh_proto::reapi::{DirectoryNode, FileNode, SymlinkNode};

fn file(name: &str) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(BlobDigest::of_bytes(name.as_bytes()).to_proto()),
        ..Default::default()
    }
}

fn dir_node(name: &str, digest: &BlobDigest) -> DirectoryNode {
    DirectoryNode {
        name: name.into(),
        digest: Some(digest.to_proto()),
    }
}

fn symlink(name: &str, target: &str) -> SymlinkNode {
    SymlinkNode {
        name: name.into(),
        target: target.into(),
        ..Default::default()
    }
}

fn files(names: &[&str]) -> Directory {
    Directory {
        files: names.iter().map(|name| file(name)).collect(),
        ..Default::default()
    }
}

#[test]
fn well_formed_directory_passes() {
    let child = BlobDigest::of_bytes(b"child");
    let directory = Directory {
        files: vec![file("a"), file("b.txt")],
        directories: vec![dir_node("c", &child)],
        symlinks: vec![symlink("d", "a"), symlink("e", "c/../b.txt")],
        ..Default::default()
    };
    validate_directory(&directory).unwrap();
}

#[test]
fn hostile_names_are_refused() {
    for name in ["", ".", "..", "a/b", "/", "nul\0byte"] {
        let error = validate_directory(&files(&[name])).unwrap_err();
        assert!(error.contains("name"), "{name:?}: {error}");
    }
}

#[test]
fn unsorted_and_duplicate_names_are_refused() {
    assert!(validate_directory(&files(&["b", "a"])).is_err());
    assert!(validate_directory(&files(&["a", "a"])).is_err());
    let child = BlobDigest::of_bytes(b"child");
    let across = Directory {
        files: vec![file("x")],
        directories: vec![dir_node("x", &child)],
        ..Default::default()
    };
    assert!(validate_directory(&across).unwrap_err().contains("twice"));
    let file_and_symlink = Directory {
        files: vec![file("x")],
        symlinks: vec![symlink("x", "y")],
        ..Default::default()
    };
    assert!(validate_directory(&file_and_symlink).is_err());
}

#[test]
fn bad_digests_and_targets_are_refused() {
    let mut bad_digest = files(&["a"]);
    bad_digest.files[0].digest = None;
    assert!(validate_directory(&bad_digest).is_err());
    for target in ["/etc/passwd", "", "a\0b"] {
        let directory = Directory {
            symlinks: vec![symlink("l", target)],
            ..Default::default()
        };
        assert!(
            validate_directory(&directory).is_err(),
            "{target:?} accepted"
        );
    }
}

/// A tree whose directories are stored under their real digests.
struct TreeBuilder {
    directories: HashMap<BlobDigest, Directory>,
}

impl TreeBuilder {
    fn new() -> Self {
        Self {
            directories: HashMap::new(),
        }
    }

    fn add(&mut self, directory: Directory) -> BlobDigest {
        let digest = BlobDigest::of_message(&directory);
        self.directories.insert(digest.clone(), directory);
        digest
    }

    fn tree(self, root: BlobDigest) -> InputTree {
        InputTree {
            root,
            directories: self.directories,
        }
    }
}

fn check_code(tree: &InputTree) -> Option<tonic::Code> {
    tree.check().err().map(|error| error.code())
}

#[test]
fn symlinks_may_not_climb_above_the_root() {
    assert_eq!(target_climb("a/b"), 0);
    assert_eq!(target_climb("../a"), 1);
    assert_eq!(target_climb("a/../../b"), 1);
    assert_eq!(target_climb("./x/./../.."), 1);

    // sub/inner -> ../x stays inside: fine.
    let mut builder = TreeBuilder::new();
    let sub = builder.add(Directory {
        symlinks: vec![symlink("inner", "../x")],
        ..Default::default()
    });
    let root = builder.add(Directory {
        files: vec![file("x")],
        directories: vec![dir_node("sub", &sub)],
        ..Default::default()
    });
    assert_eq!(check_code(&builder.tree(root)), None);

    // sub/deeper/evil -> ../../../etc climbs one level above the root.
    let mut builder = TreeBuilder::new();
    let deeper = builder.add(Directory {
        symlinks: vec![symlink("evil", "../../../etc")],
        ..Default::default()
    });
    let sub = builder.add(Directory {
        directories: vec![dir_node("deeper", &deeper)],
        ..Default::default()
    });
    let root = builder.add(Directory {
        directories: vec![dir_node("sub", &sub)],
        ..Default::default()
    });
    let error = builder.tree(root).check().unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.to_string().contains("sub/deeper/evil"), "{error}");

    // At the root, even one `..` escapes.
    let mut builder = TreeBuilder::new();
    let root = builder.add(Directory {
        symlinks: vec![symlink("up", "..")],
        ..Default::default()
    });
    assert_eq!(
        check_code(&builder.tree(root)),
        Some(tonic::Code::InvalidArgument)
    );
}

#[test]
fn the_same_directory_is_judged_at_its_shallowest_use() {
    // `shared` holds `l -> ../../x`: fine two levels down, an escape one level down.
    // Used at both depths, the tree must be refused.
    let mut builder = TreeBuilder::new();
    let shared = builder.add(Directory {
        symlinks: vec![symlink("l", "../../x")],
        ..Default::default()
    });
    let sub = builder.add(Directory {
        directories: vec![dir_node("shared", &shared)],
        ..Default::default()
    });
    let root = builder.add(Directory {
        directories: vec![dir_node("a", &sub), dir_node("b", &shared)],
        ..Default::default()
    });
    assert_eq!(
        check_code(&builder.tree(root)),
        Some(tonic::Code::InvalidArgument)
    );
}

#[test]
fn cycles_are_refused() {
    // Unconstructible with real hashes, so forge the keys: a -> b -> a.
    let a = BlobDigest::of_bytes(b"a");
    let b = BlobDigest::of_bytes(b"b");
    let mut directories = HashMap::new();
    directories.insert(
        a.clone(),
        Directory {
            directories: vec![dir_node("b", &b)],
            ..Default::default()
        },
    );
    directories.insert(
        b.clone(),
        Directory {
            directories: vec![dir_node("a", &a)],
            ..Default::default()
        },
    );
    let error = InputTree {
        root: a,
        directories,
    }
    .check()
    .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.to_string().contains("cycle"), "{error}");
}

#[test]
fn too_deep_trees_are_refused() {
    let build = |depth: usize| {
        let mut builder = TreeBuilder::new();
        let mut current = builder.add(Directory::default());
        for _ in 0..depth {
            current = builder.add(Directory {
                directories: vec![dir_node("d", &current)],
                ..Default::default()
            });
        }
        builder.tree(current)
    };
    assert_eq!(check_code(&build(MAX_TREE_DEPTH)), None);
    assert_eq!(
        check_code(&build(MAX_TREE_DEPTH + 1)),
        Some(tonic::Code::InvalidArgument)
    );
}

#[test]
fn small_dags_that_expand_hugely_are_refused() {
    // Each level holds the one below twice: 40 levels expand to 2^40 entries.
    let mut builder = TreeBuilder::new();
    let mut current = builder.add(files(&["f"]));
    for _ in 0..40 {
        current = builder.add(Directory {
            directories: vec![dir_node("a", &current), dir_node("b", &current)],
            ..Default::default()
        });
    }
    assert_eq!(
        check_code(&builder.tree(current)),
        Some(tonic::Code::ResourceExhausted)
    );
}
