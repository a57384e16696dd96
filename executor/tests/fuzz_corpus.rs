//! Replays every committed fuzz input (`fuzz/seeds/<target>/` and the minimized
//! `fuzz/corpus/<target>/`) through the same entry points the fuzz targets call, so a
//! regression on an input the fuzzer once found interesting fails plain `cargo test`.
//! The hand-made input trees are also checked for the verdict their names promise.

use std::path::{Path, PathBuf};

use prost::Message as _;
use remesh_executor::execution::input_tree::InputTree;
use remesh_proto::reapi::Tree;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of the target's seed and corpus directories, sorted for stable output.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for kind in ["seeds", "corpus"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("reading a corpus directory").path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("reading a corpus file");
                found.push((path, data));
            }
        }
    }
    found.sort();
    found
}

fn replay(target: &str, entry: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= 10,
        "only {} inputs for {target}: is fuzz/ missing?",
        inputs.len()
    );
    for (path, data) in &inputs {
        // Name the input that fails: it is then also the file to give the fuzz target.
        let outcome = std::panic::catch_unwind(|| entry(data));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
}

#[test]
fn resource_name_corpus_replays() {
    replay("resource_name", remesh_executor::fuzzing::resource_name);
}

#[test]
fn directory_tree_corpus_replays() {
    replay("directory_tree", remesh_executor::fuzzing::directory_tree);
}

/// The seeds are made by `fuzz/seeds/make_seeds.py` with a hand-written protobuf
/// encoder: this checks that encoder agrees with prost (the digests link up), so the
/// seeds reach the checks they are named after.
#[test]
fn directory_tree_seeds_get_the_verdicts_their_names_promise() {
    use tonic::Code;
    let expected = [
        ("seed-files_only", None),
        ("seed-nested_dag", None),
        ("seed-deep_chain", None),
        ("seed-empty", None),
        ("seed-missing_child", Some(Code::FailedPrecondition)),
        ("seed-escaping_symlink", Some(Code::InvalidArgument)),
        ("seed-absolute_symlink", Some(Code::InvalidArgument)),
        ("seed-unsorted", Some(Code::InvalidArgument)),
        ("seed-duplicate_across_kinds", Some(Code::InvalidArgument)),
        ("seed-dot_names", Some(Code::InvalidArgument)),
        ("seed-empty_name", Some(Code::InvalidArgument)),
        ("seed-bad_hash", Some(Code::InvalidArgument)),
        ("seed-negative_size", Some(Code::InvalidArgument)),
        ("seed-no_digest", Some(Code::InvalidArgument)),
        ("seed-nul_target", Some(Code::InvalidArgument)),
    ];
    let dir = fuzz_dir().join("seeds/directory_tree");
    for (name, want) in expected {
        let data = std::fs::read(dir.join(name)).expect(name);
        let tree = Tree::decode(data.as_slice()).expect(name);
        let root = tree.root.unwrap_or_default();
        let got = InputTree::check_in_memory(&root, &tree.children)
            .err()
            .map(|error| error.code());
        assert_eq!(got, want, "{name}");
    }
}
