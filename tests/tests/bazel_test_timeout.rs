//! `bazel test` with remote execution: a passing test is PASSED, and a test that sleeps
//! past `--test_timeout=3` is killed by the executor and reported as TIMEOUT.
//!
//! Bazel 4.2.3 offline cannot use `sh_test` (its launcher needs `@rules_cc`, which it
//! would download) and every test rule depends on `@remote_coverage_tools`. So the
//! workspace defines its tests with a tiny Starlark rule and points
//! `remote_coverage_tools` at a local stub repository: nothing is downloaded.

use remesh_tests::{BazelWorkspace, ExecutorProcess};

const SCRIPT_TEST_BZL: &str = r##"
def _script_test_impl(ctx):
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(script, "#!/bin/bash\n" + ctx.attr.body + "\n", is_executable = True)
    return [DefaultInfo(executable = script)]

script_test = rule(
    implementation = _script_test_impl,
    attrs = {"body": attr.string(mandatory = True)},
    test = True,
)
"##;

const BUILD: &str = r#"
load(":script_test.bzl", "script_test")

script_test(name = "passes", body = "echo all good; exit 0")

# Far past --test_timeout=3: only a killed process can end it that early.
script_test(name = "sleeps", body = "sleep 120")
"#;

const COVERAGE_STUB_BZL: &str = r##"
def _noop_tool_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.write(out, "#!/bin/bash\nexit 0\n", is_executable = True)
    return [DefaultInfo(executable = out)]

noop_tool = rule(implementation = _noop_tool_impl, executable = True)
"##;

const COVERAGE_STUB_BUILD: &str = r#"
load(":tool.bzl", "noop_tool")

noop_tool(name = "coverage_report_generator", visibility = ["//visibility:public"])

noop_tool(name = "lcov_merger", visibility = ["//visibility:public"])
"#;

/// The summary line Bazel prints for `label`, e.g. `//:passes   PASSED in 0.4s`.
fn summary_line<'a>(output: &'a str, label: &str) -> Option<&'a str> {
    output
        .lines()
        .find(|line| line.split_whitespace().next() == Some(label))
}

#[test]
fn bazel_test_reports_passed_and_timeout_with_remote_execution() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let workspace = BazelWorkspace::new_beside_shared(
        "tests",
        &[
            ("script_test.bzl", SCRIPT_TEST_BZL),
            ("BUILD", BUILD),
            ("coverage_stub/WORKSPACE", ""),
            ("coverage_stub/tool.bzl", COVERAGE_STUB_BZL),
            ("coverage_stub/BUILD", COVERAGE_STUB_BUILD),
        ],
    )?;
    let stub = format!(
        "--override_repository=remote_coverage_tools={}",
        workspace.path().join("coverage_stub").display()
    );
    let executor_flag = format!("--remote_executor={}", executor.grpc_url());
    let outcome = workspace.run(&[
        "test",
        "--config=rexec",
        &executor_flag,
        &stub,
        "--test_timeout=3",
        "//:passes",
        "//:sleeps",
    ])?;
    // 3: the build succeeded and some tests failed.
    assert_eq!(outcome.exit_code, Some(3), "{}", outcome.output);
    let passes = summary_line(&outcome.output, "//:passes");
    assert!(
        passes.is_some_and(|line| line.contains("PASSED")),
        "//:passes is not PASSED ({passes:?}):\n{}",
        outcome.output
    );
    let sleeps = summary_line(&outcome.output, "//:sleeps");
    assert!(
        sleeps.is_some_and(|line| line.contains("TIMEOUT")),
        "//:sleeps is not TIMEOUT ({sleeps:?}):\n{}",
        outcome.output
    );
    assert!(
        outcome.output.contains("remote"),
        "the tests did not run remotely:\n{}",
        outcome.output
    );
    Ok(())
}
