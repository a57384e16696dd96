//! A failing action: its exit code fails the build, its stdout and stderr reach the
//! user, and a healthy target of the same workspace still builds afterwards.

use remesh_tests::{BazelWorkspace, ExecutorProcess};

#[test]
fn a_failing_remote_action_reports_its_output_and_ok_still_builds() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let workspace = BazelWorkspace::shared("fail")?;

    let failed = workspace.build_remote(&executor.grpc_url(), &["//:fail"])?;
    assert_eq!(
        failed.exit_code,
        Some(1),
        "a failing action must fail the build with exit code 1:\n{}",
        failed.output
    );
    assert!(
        failed.output.contains("deliberate failure on stderr"),
        "the action's stderr did not reach the user:\n{}",
        failed.output
    );
    assert!(
        failed.output.contains("about to fail"),
        "the action's stdout did not reach the user:\n{}",
        failed.output
    );

    let ok = workspace.build_remote(&executor.grpc_url(), &["//:ok"])?;
    ok.expect_success("build of //:ok after the failure")?;
    assert_eq!(workspace.read_output("ok.txt")?, b"ok\n");
    Ok(())
}
