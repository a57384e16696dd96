//! Bazel 4.2.3 builds the `hello` workspace with every action executed by one real
//! remesh-executor, and gets the output back.

use remesh_tests::{BazelWorkspace, ExecutorProcess};
use sha2::{Digest, Sha256};

#[test]
fn bazel_builds_hello_remotely_and_fetches_the_output() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let workspace = BazelWorkspace::shared("hello")?;
    let outcome = workspace.build_remote(&executor.grpc_url(), &["//..."])?;
    outcome.expect_success("bazel build //... of hello")?;
    assert!(
        outcome.output.contains("1 remote"),
        "the action did not run remotely:\n{}",
        outcome.output
    );

    // `echo hello from $(uname -n)`, `WORLD`, then sha256sum of those two lines.
    let text = String::from_utf8(workspace.read_output("hello.txt")?)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(lines[0].starts_with("hello from "), "{text:?}");
    assert_eq!(lines[1], "WORLD");
    let first_two = format!("{}\n{}\n", lines[0], lines[1]);
    let expected_hash = hex::encode(Sha256::digest(first_two.as_bytes()));
    assert!(
        lines[2].starts_with(&expected_hash),
        "line 3 is not the sha256 of lines 1-2 ({expected_hash}): {text:?}"
    );
    Ok(())
}
