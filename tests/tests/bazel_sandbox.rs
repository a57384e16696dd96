//! Bazel 4.2.3 builds the shared workspaces against an executor that runs every action
//! under bubblewrap (`--sandbox required`): real genrules (bash, coreutils, Bazel's
//! genrule-setup.sh) work with read-only system directories, no network and the input
//! root alone writable, and a 50 MiB output still travels intact.

use std::path::Path;

use remesh_tests::{BazelWorkspace, ExecutorOptions, ExecutorProcess};
use sha2::{Digest, Sha256};

const BWRAP: &str = "/usr/bin/bwrap";
const BIG_BYTES: usize = 52_428_800;

fn sandboxed_executor() -> anyhow::Result<ExecutorProcess> {
    assert!(
        Path::new(BWRAP).is_file(),
        "{BWRAP} is missing: install Debian's bubblewrap package to run the sandbox tests"
    );
    ExecutorOptions::new()
        .arg("--sandbox")
        .arg("required")
        .spawn()
}

#[test]
fn bazel_builds_hello_in_the_sandbox() -> anyhow::Result<()> {
    let executor = sandboxed_executor()?;
    let workspace = BazelWorkspace::shared("hello")?;
    let outcome = workspace.build_remote(&executor.grpc_url(), &["//..."])?;
    outcome.expect_success("sandboxed build of hello")?;
    assert!(outcome.output.contains("1 remote"), "{}", outcome.output);
    let text = String::from_utf8(workspace.read_output("hello.txt")?)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    // `uname -n` inside the sandbox names the sandbox's own UTS namespace.
    assert_eq!(lines[0], "hello from remesh-sandbox", "{text:?}");
    assert_eq!(lines[1], "WORLD");
    let first_two = format!("{}\n{}\n", lines[0], lines[1]);
    let expected_hash = hex::encode(Sha256::digest(first_two.as_bytes()));
    assert!(lines[2].starts_with(&expected_hash), "{text:?}");
    Ok(())
}

/// What fan's `all` genrule must produce: every part in `srcs` order, then the sha256
/// of that concatenation.
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
fn bazel_fans_out_51_sandboxed_actions() -> anyhow::Result<()> {
    let executor = sandboxed_executor()?;
    let workspace = BazelWorkspace::shared("fan")?;
    let outcome = workspace.build_remote(&executor.grpc_url(), &["//..."])?;
    outcome.expect_success("sandboxed build of fan")?;
    assert!(
        outcome.output.contains("51 remote"),
        "expected 51 remotely executed actions:\n{}",
        outcome.output
    );
    assert_eq!(
        String::from_utf8(workspace.read_output("all.txt")?)?,
        expected_all_txt()
    );
    Ok(())
}

#[test]
fn bazel_moves_a_50_mib_output_through_the_sandbox() -> anyhow::Result<()> {
    let executor = sandboxed_executor()?;
    let workspace = BazelWorkspace::shared("big")?;
    workspace
        .build_remote(&executor.grpc_url(), &["//..."])?
        .expect_success("sandboxed build of big")?;
    let expected: Vec<u8> = b"reapi-big-blob-0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take(BIG_BYTES)
        .collect();
    let expected_hash = hex::encode(Sha256::digest(&expected));
    let sum = String::from_utf8(workspace.read_output("big.sum")?)?;
    assert_eq!(sum, format!("{expected_hash}\n{BIG_BYTES}\n"));
    let big = workspace.read_output("big.bin")?;
    assert_eq!(big.len(), BIG_BYTES);
    assert!(
        big == expected,
        "big.bin downloaded from the executor differs"
    );
    Ok(())
}
