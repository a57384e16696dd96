//! Execute against one real executor, the way a REAPI client sees it: outputs, stdout
//! and stderr come back through the CAS, exit codes are reported, successful results are
//! cached, failed ones are not, and an action past its timeout is killed.

use std::time::Duration;

use remesh_proto::reapi::ExecuteResponse;
use remesh_tests::reapi_client::{ActionSpec, Clients};
use remesh_tests::{ExecutorProcess, blob_digest};
use tonic::Code;

/// No Execute in these tests should take long; a hang fails instead of blocking CI.
const EXECUTE_TIMEOUT: Duration = Duration::from_secs(60);

async fn execute(
    clients: &Clients,
    spec: &ActionSpec,
    skip_cache_lookup: bool,
) -> anyhow::Result<ExecuteResponse> {
    let action = clients.upload_action(spec).await?;
    tokio::time::timeout(EXECUTE_TIMEOUT, clients.execute(&action, skip_cache_lookup))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "Execute of {:?} did not finish in {EXECUTE_TIMEOUT:?}",
                spec.argv
            )
        })?
}

async fn blob_text(
    clients: &Clients,
    digest: Option<&remesh_proto::reapi::Digest>,
) -> anyhow::Result<String> {
    let digest = digest.cloned().unwrap_or_else(|| blob_digest(b""));
    Ok(String::from_utf8(clients.download(&digest).await?)?)
}

#[tokio::test]
async fn an_action_runs_and_its_output_stdout_and_stderr_come_back() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    let mut spec = ActionSpec::new(&[
        "/bin/sh",
        "-c",
        "echo hello > out/greeting.txt && echo to-stdout && echo to-stderr >&2",
    ]);
    spec.output_paths = vec!["out/greeting.txt".into()];

    let response = execute(&clients, &spec, false).await?;
    let status = response.status.clone().unwrap_or_default();
    assert_eq!(status.code, Code::Ok as i32, "{status:?}");
    assert!(!response.cached_result);
    let result = response.result.expect("an ActionResult");
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.output_files.len(), 1, "{:?}", result.output_files);
    assert_eq!(result.output_files[0].path, "out/greeting.txt");
    assert_eq!(
        blob_text(&clients, result.output_files[0].digest.as_ref()).await?,
        "hello\n"
    );
    assert_eq!(
        blob_text(&clients, result.stdout_digest.as_ref()).await?,
        "to-stdout\n"
    );
    assert_eq!(
        blob_text(&clients, result.stderr_digest.as_ref()).await?,
        "to-stderr\n"
    );

    let again = execute(&clients, &spec, false).await?;
    assert!(
        again.cached_result,
        "a successful action must be served from the cache"
    );
    assert_eq!(
        again.result.map(|result| result.output_files),
        Some(result.output_files)
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_action_reports_its_exit_code_and_stderr_and_is_not_cached() -> anyhow::Result<()>
{
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    let spec = ActionSpec::new(&[
        "/bin/bash",
        "-c",
        "echo about to fail && echo deliberate failure on stderr >&2 && exit 3",
    ]);
    let response = execute(&clients, &spec, false).await?;
    let status = response.status.clone().unwrap_or_default();
    assert_eq!(
        status.code,
        Code::Ok as i32,
        "a non-zero exit is not an RPC error: {status:?}"
    );
    let result = response.result.expect("an ActionResult");
    assert_eq!(result.exit_code, 3);
    assert_eq!(
        blob_text(&clients, result.stdout_digest.as_ref()).await?,
        "about to fail\n"
    );
    assert_eq!(
        blob_text(&clients, result.stderr_digest.as_ref()).await?,
        "deliberate failure on stderr\n"
    );
    let again = execute(&clients, &spec, false).await?;
    assert!(!again.cached_result, "a failed action must not be cached");
    Ok(())
}

#[tokio::test]
async fn an_action_past_its_timeout_is_killed_and_reported_deadline_exceeded() -> anyhow::Result<()>
{
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    let mut spec = ActionSpec::new(&["/bin/sh", "-c", "sleep 120"]);
    spec.timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let response = execute(&clients, &spec, true).await?;
    let status = response.status.unwrap_or_default();
    assert_eq!(status.code, Code::DeadlineExceeded as i32, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the action was not killed at its timeout: {:?}",
        started.elapsed()
    );
    Ok(())
}
