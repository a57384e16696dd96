//! Replays every committed input of the proxy's fuzz targets (`fuzz/seeds/<target>/`
//! and the minimized `fuzz/corpus/<target>/`) through the entry points the targets call
//! (`remesh_proxy::fuzzing`), so a regression on an input the fuzzer once found
//! interesting fails plain `cargo test`, without a fuzzer or a nightly compiler.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of the target's seed and corpus directories, sorted for stable output.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for kind in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
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
fn operation_name_corpus() {
    replay("operation_name", remesh_proxy::fuzzing::operation_name);
}

#[test]
fn gossip_open_corpus() {
    replay("gossip_open", remesh_proxy::fuzzing::gossip_open);
}

#[test]
fn wire_rewrite_corpus() {
    replay("wire_rewrite", remesh_proxy::fuzzing::wire_rewrite);
}

/// The seeds the hostile-input suite also sends must keep their verdicts.
#[test]
fn names_carrying_addresses_never_parse() {
    use remesh_proxy::operation_name::OperationName;
    for name in [
        "remesh/127.0.0.1:8980/x",
        "remesh/evil.example:443/x",
        "remesh/[::1]:1/x",
        "http://127.0.0.1:1/x",
    ] {
        assert!(OperationName::parse(name).is_err(), "{name:?}");
    }
}
