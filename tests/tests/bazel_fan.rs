//! Bazel runs 50 independent actions and a fan-in remotely; after `bazel clean` the
//! whole build is served from the executor's action cache.

use remesh_tests::{BazelWorkspace, ExecutorProcess};
use sha2::{Digest, Sha256};

/// What the `all` genrule must produce: every part in `srcs` order, then the sha256 of
/// that concatenation.
fn expected_all_txt() -> String {
    let mut parts = String::new();
    for i in 0..50 {
        let line = format!("part {i}\n");
        parts.push_str(&line.to_uppercase());
        parts.push_str(&format!(
            "{}  -\n",
            hex::encode(Sha256::digest(line.as_bytes()))
        ));
    }
    let hash = hex::encode(Sha256::digest(parts.as_bytes()));
    format!("{parts}{hash}\n")
}

#[test]
fn bazel_fans_out_remotely_then_hits_the_action_cache_after_clean() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let workspace = BazelWorkspace::shared("fan")?;

    let first = workspace.build_remote(&executor.grpc_url(), &["//..."])?;
    first.expect_success("first build of fan")?;
    assert!(
        first.output.contains("51 remote"),
        "expected 51 remotely executed actions:\n{}",
        first.output
    );
    assert_eq!(
        String::from_utf8(workspace.read_output("all.txt")?)?,
        expected_all_txt()
    );

    workspace.run(&["clean"])?.expect_success("bazel clean")?;
    let second = workspace.build_remote(&executor.grpc_url(), &["//..."])?;
    second.expect_success("build of fan after clean")?;
    assert!(
        second.output.contains("51 remote cache hit"),
        "expected every action from the action cache:\n{}",
        second.output
    );
    assert_eq!(
        String::from_utf8(workspace.read_output("all.txt")?)?,
        expected_all_txt()
    );
    Ok(())
}
