//! The real `remesh-executor` with `--sandbox required` (bubblewrap): an action cannot
//! reach the network, see the data directory, or write outside its work directory; it
//! lives in its own PID namespace; its timeout kills everything it started; and an
//! executor that cannot sandbox refuses to start. Each isolation check runs the same
//! action unsandboxed too, so the test proves the sandbox made the difference.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use remesh_proto::reapi::ExecuteResponse;
use remesh_tests::reapi_client::{ActionSpec, Clients};
use remesh_tests::{ExecutorOptions, ExecutorProcess, blob_digest};
use tonic::Code;

const BWRAP: &str = "/usr/bin/bwrap";
const EXECUTE_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sandbox tests need the real bwrap: without it they fail, saying so.
fn require_bwrap() {
    assert!(
        Path::new(BWRAP).is_file(),
        "{BWRAP} is missing: install Debian's bubblewrap package to run the sandbox tests"
    );
}

fn sandboxed_executor() -> anyhow::Result<ExecutorProcess> {
    require_bwrap();
    ExecutorOptions::new()
        .arg("--sandbox")
        .arg("required")
        .spawn()
}

/// What one bash script did: exit code, stdout and stderr.
struct Ran {
    exit_code: i32,
    stdout: String,
    stderr: String,
}

async fn blob_text(
    clients: &Clients,
    digest: Option<&remesh_proto::reapi::Digest>,
) -> anyhow::Result<String> {
    let digest = digest.cloned().unwrap_or_else(|| blob_digest(b""));
    Ok(String::from_utf8(clients.download(&digest).await?)?)
}

async fn execute(clients: &Clients, spec: &ActionSpec) -> anyhow::Result<ExecuteResponse> {
    let action = clients.upload_action(spec).await?;
    tokio::time::timeout(EXECUTE_TIMEOUT, clients.execute(&action, true))
        .await
        .map_err(|_| anyhow::anyhow!("Execute of {:?} took too long", spec.argv))?
}

async fn bash(executor: &ExecutorProcess, script: &str) -> anyhow::Result<Ran> {
    let clients = executor.clients("main").await?;
    let response = execute(&clients, &ActionSpec::new(&["/bin/bash", "-c", script])).await?;
    let status = response.status.unwrap_or_default();
    anyhow::ensure!(status.code == Code::Ok as i32, "{script}: {status:?}");
    let result = response.result.expect("an ActionResult");
    Ok(Ran {
        exit_code: result.exit_code,
        stdout: blob_text(&clients, result.stdout_digest.as_ref()).await?,
        stderr: blob_text(&clients, result.stderr_digest.as_ref()).await?,
    })
}

#[tokio::test]
async fn a_sandboxed_action_cannot_reach_a_loopback_listener_an_unsandboxed_one_can()
-> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let script = format!("echo hello > /dev/tcp/127.0.0.1/{port}");

    let plain = ExecutorProcess::spawn()?;
    let ran = bash(&plain, &script).await?;
    assert_eq!(
        ran.exit_code, 0,
        "unsandboxed connect failed: {}",
        ran.stderr
    );
    // The handshake completed before the action exited, so the kernel queued it.
    assert!(
        listener.accept().is_ok(),
        "the unsandboxed action connected"
    );

    let sandboxed = sandboxed_executor()?;
    let ran = bash(&sandboxed, &script).await?;
    assert_ne!(ran.exit_code, 0, "the sandboxed action reached the network");
    assert!(
        listener.accept().is_err(),
        "no connection from inside the sandbox"
    );
    Ok(())
}

#[tokio::test]
async fn a_sandboxed_action_cannot_see_the_data_directory() -> anyhow::Result<()> {
    let sandboxed = sandboxed_executor()?;
    let script = format!("ls {}", sandboxed.data_dir().display());
    let ran = bash(&sandboxed, &script).await?;
    assert_ne!(
        ran.exit_code, 0,
        "the data directory is visible inside: {}",
        ran.stdout
    );

    let plain = ExecutorProcess::spawn()?;
    let script = format!("ls {}", plain.data_dir().display());
    let ran = bash(&plain, &script).await?;
    assert_eq!(
        ran.exit_code, 0,
        "unsandboxed, it is visible: {}",
        ran.stderr
    );
    Ok(())
}

#[tokio::test]
async fn a_sandboxed_action_has_its_own_pid_namespace() -> anyhow::Result<()> {
    let sandboxed = sandboxed_executor()?;
    let ran = bash(&sandboxed, "echo $$; tr '\\0' ' ' < /proc/1/cmdline").await?;
    assert_eq!(ran.exit_code, 0, "{}", ran.stderr);
    let mut lines = ran.stdout.lines();
    let pid: u32 = lines.next().unwrap_or_default().parse()?;
    assert!(pid < 10, "the shell should be a low pid, is {pid}");
    let init = lines.next().unwrap_or_default();
    assert!(
        init.starts_with("bwrap") || init.starts_with(BWRAP),
        "pid 1 should be bwrap's init: {init:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_sandboxed_action_cannot_write_outside_its_work_directory() -> anyhow::Result<()> {
    let host_dir = tempfile::tempdir()?;
    let marker = format!("remesh-sandbox-{}", uuid::Uuid::new_v4().simple());
    let host_file = host_dir.path().join(&marker);
    let usr_file = Path::new("/usr").join(&marker);
    let sandboxed = sandboxed_executor()?;
    for target in [&host_file, &usr_file] {
        let script = format!("touch {} && echo written", target.display());
        let ran = bash(&sandboxed, &script).await?;
        assert_ne!(ran.exit_code, 0, "touch {} succeeded", target.display());
        assert!(
            !target.exists(),
            "{} appeared on the host",
            target.display()
        );
    }
    // Not even as root: the sandbox leaves no capability to remount or make devices.
    let script = format!(
        "mount -o remount,rw /usr; mknod /dev/remesh-disk b 8 0; touch {}",
        usr_file.display()
    );
    let ran = bash(&sandboxed, &script).await?;
    assert_ne!(ran.exit_code, 0, "remounting /usr writable worked");
    assert!(ran.stderr.contains("mknod"), "{}", ran.stderr);
    assert!(
        !usr_file.exists(),
        "{} appeared on the host",
        usr_file.display()
    );
    // Inside its work directory the action writes freely.
    let ran = bash(&sandboxed, "touch here && ls here").await?;
    assert_eq!(ran.exit_code, 0, "{}", ran.stderr);

    // Unsandboxed the host path is writable: the sandbox made the difference.
    let plain = ExecutorProcess::spawn()?;
    let ran = bash(&plain, &format!("touch {}", host_file.display())).await?;
    assert_eq!(ran.exit_code, 0, "{}", ran.stderr);
    assert!(host_file.exists());
    Ok(())
}

/// Host pids of live processes whose argv[0] is `marker`.
fn pids_named(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat.rsplit(')').next()?.trim_start();
            if state.starts_with('Z') || state.starts_with('X') {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let argv0 = cmdline.split(|byte| *byte == 0).next()?;
            (argv0 == marker.as_bytes()).then_some(pid)
        })
        .collect()
}

#[tokio::test]
async fn the_timeout_kills_every_process_in_the_sandbox() -> anyhow::Result<()> {
    let sandboxed = sandboxed_executor()?;
    let clients = sandboxed.clients("main").await?;
    let marker = format!("remesh-sleeper-{}", uuid::Uuid::new_v4().simple());
    let script = format!("(exec -a {marker} sleep 1000) & (exec -a {marker} sleep 1000) & wait");
    let mut spec = ActionSpec::new(&["/bin/bash", "-c", &script]);
    spec.timeout = Some(Duration::from_secs(3));
    let run = tokio::spawn({
        let clients = clients.clone();
        async move { execute(&clients, &spec).await }
    });
    let sleepers = remesh_tests::polling::poll_until(
        "the sandboxed sleeps to start",
        Duration::from_secs(30),
        || {
            let found = pids_named(&marker);
            async move { (found.len() == 2).then_some(found) }
        },
    )
    .await?;
    let response = run.await??;
    let status = response.status.unwrap_or_default();
    assert_eq!(status.code, Code::DeadlineExceeded as i32, "{status:?}");
    remesh_tests::polling::poll_until(
        "the sandboxed sleeps to be gone",
        Duration::from_secs(10),
        || {
            let left = pids_named(&marker);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}: {sleepers:?} survived the timeout"))?;
    Ok(())
}

#[tokio::test]
async fn printing_past_max_output_bytes_is_resource_exhausted() -> anyhow::Result<()> {
    require_bwrap();
    let executor = ExecutorOptions::new()
        .arg("--sandbox")
        .arg("required")
        .arg("--max-output-bytes")
        .arg("4096")
        .spawn()?;
    let clients = executor.clients("main").await?;
    let spec = ActionSpec::new(&["/bin/bash", "-c", "head -c 5000 /dev/zero"]);
    let response = execute(&clients, &spec).await?;
    let status = response.status.unwrap_or_default();
    assert_eq!(status.code, Code::ResourceExhausted as i32, "{status:?}");
    let stdout = response
        .result
        .and_then(|result| result.stdout_digest)
        .unwrap_or_default();
    assert!(stdout.size_bytes <= 4096, "stdout is bounded: {stdout:?}");
    Ok(())
}

#[test]
fn required_with_a_bogus_bwrap_path_refuses_to_start_and_says_why() -> anyhow::Result<()> {
    let report = ExecutorOptions::new()
        .arg("--sandbox")
        .arg("required")
        .arg("--bwrap-path")
        .arg("/nonexistent/bwrap")
        .run_to_exit(EXIT_TIMEOUT)?;
    assert!(!report.status.success(), "it started: {}", report.stderr);
    assert!(
        report
            .stderr
            .contains("sandbox: required but /nonexistent/bwrap cannot start"),
        "{}",
        report.stderr
    );
    assert!(
        !report.stdout.contains("\"ready\""),
        "no ready line: {}",
        report.stdout
    );
    Ok(())
}
