//! A control for the Bazel and BuildGrid harnesses themselves: Bazel with BuildGrid as
//! its remote cache (actions run locally). When this fails the environment is broken,
//! not remesh.

use remesh_tests::{BazelWorkspace, BuildGridServer};

#[test]
fn bazel_with_buildgrid_as_remote_cache_hits_after_clean() -> anyhow::Result<()> {
    let buildgrid = BuildGridServer::start()?;
    let workspace = BazelWorkspace::shared("fan")?;
    let cache = format!("--remote_cache={}", buildgrid.grpc_url());
    let args = ["build", "--config=rcache", cache.as_str(), "//..."];

    workspace
        .run(&args)?
        .expect_success("first build with the cache")?;
    workspace.run(&["clean"])?.expect_success("bazel clean")?;
    let second = workspace.run(&args)?;
    second.expect_success("build after clean")?;
    assert!(
        second.output.contains("51 remote cache hit"),
        "{}",
        second.output
    );
    Ok(())
}
