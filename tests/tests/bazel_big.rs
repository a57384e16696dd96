//! A 50 MiB action output and an action consuming it: the blob crosses ByteStream and
//! the executor's CAS in both directions with its digest intact.

use remesh_tests::{BazelWorkspace, ExecutorProcess};
use sha2::{Digest, Sha256};

const BIG_BYTES: usize = 52_428_800;

/// `yes 'reapi-big-blob-0123456789abcdef' | head -c 52428800`.
fn expected_big_bin() -> Vec<u8> {
    b"reapi-big-blob-0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(BIG_BYTES)
        .collect()
}

#[test]
fn a_50_mib_output_travels_both_ways_intact() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let workspace = BazelWorkspace::shared("big")?;
    workspace
        .build_remote(&executor.grpc_url(), &["//..."])?
        .expect_success("build of big")?;

    let expected = expected_big_bin();
    let expected_hash = hex::encode(Sha256::digest(&expected));
    // Computed by the consuming action on the executor.
    let sum = String::from_utf8(workspace.read_output("big.sum")?)?;
    assert_eq!(sum, format!("{expected_hash}\n{BIG_BYTES}\n"));
    // Downloaded by Bazel from the executor.
    let big = workspace.read_output("big.bin")?;
    assert_eq!(big.len(), BIG_BYTES);
    assert!(
        big == expected,
        "big.bin downloaded from the executor differs"
    );
    Ok(())
}
