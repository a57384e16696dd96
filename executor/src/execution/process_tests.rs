//! Tests of the process runner against real `/bin/sh` processes.

use std::time::Instant;

use super::*;

fn spec(dir: &Path, script: &str, timeout: Duration) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_directory: dir.to_path_buf(),
        stdout: dir.join("stdout"),
        stderr: dir.join("stderr"),
        timeout,
        max_output_bytes: 1 << 20,
        sandbox: None,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Alive means present in /proc and not a zombie waiting for a reaper.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

async fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} survived its group's kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exit_code_and_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        dir.path(),
        "echo out; echo err >&2; exit 3",
        Duration::from_secs(30),
    );
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(3));
    assert_eq!(read(&spec.stdout), "out\n");
    assert_eq!(read(&spec.stderr), "err\n");
}

#[tokio::test]
async fn killed_by_a_signal_reads_like_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "kill -TERM $$", Duration::from_secs(30));
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(128 + 15));
}

#[tokio::test]
async fn environment_is_exactly_the_given_one() {
    let dir = tempfile::tempdir().unwrap();
    // The test process has HOME, CARGO_* and more; none of it may leak.
    let mut spec = spec(dir.path(), "env", Duration::from_secs(30));
    spec.environment = vec![
        ("PATH".into(), "/bin".into()),
        ("ONLY_THIS".into(), "a b=c".into()),
    ];
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(0));
    let mut lines: Vec<String> = read(&spec.stdout)
        .lines()
        // dash and bash add PWD (and bash SHLVL/_) themselves; they are not inherited.
        .filter(|line| {
            !["PWD=", "SHLVL=", "_=", "OLDPWD="]
                .iter()
                .any(|p| line.starts_with(p))
        })
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(lines, vec!["ONLY_THIS=a b=c", "PATH=/bin"]);
}

#[tokio::test]
async fn runs_in_the_working_directory_and_finds_relative_programs() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("bin")).unwrap();
    let tool = work.join("bin/tool");
    std::fs::write(&tool, "#!/bin/sh\npwd\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = spec(dir.path(), "", Duration::from_secs(30));
    spec.argv = vec!["bin/tool".into()];
    spec.working_directory = work.clone();
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(0));
    assert_eq!(read(&spec.stdout).trim(), work.to_str().unwrap());
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), "", Duration::from_secs(30));
    spec.argv = vec!["/nonexistent/program".into()];
    let error = run_process(&spec, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ProcessError::Spawn { .. }), "{error}");
}

#[tokio::test]
async fn timeout_kills_the_whole_group_including_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    // The shell starts a grandchild `sleep`, records its pid, prints, and waits.
    let script = format!(
        "sleep 1000 & echo $! > {}; echo started; wait",
        pid_file.display()
    );
    let spec = spec(dir.path(), &script, Duration::from_millis(500));
    let started = Instant::now();
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(read(&spec.stdout), "started\n", "partial output is kept");
    let grandchild: i32 = read(&pid_file).trim().parse().unwrap();
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 1000 & echo $! > {}; wait", pid_file.display());
    let spec = spec(dir.path(), &script, Duration::from_secs(600));
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (spec, cancel) = (spec.clone(), cancel.clone());
        async move { run_process(&spec, &cancel).await }
    });
    let grandchild: i32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
    assert!(is_alive(grandchild));
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("cancel must end the run promptly")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, ProcessOutcome::Cancelled);
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn stragglers_are_killed_when_the_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("straggler.pid");
    // The leader exits at once, leaving a background sleep in its group.
    let script = format!("sleep 1000 & echo $! > {}", pid_file.display());
    let spec = spec(dir.path(), &script, Duration::from_secs(30));
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(0));
    let straggler: i32 = read(&pid_file).trim().parse().unwrap();
    wait_dead(straggler).await;
}

#[tokio::test]
async fn printing_past_the_output_bound_kills_and_keeps_exactly_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    // Endless output on both streams: only the bound can end it before the timeout.
    let mut spec = spec(
        dir.path(),
        "yes out & yes err >&2; wait",
        Duration::from_secs(120),
    );
    spec.max_output_bytes = 100_000;
    let started = Instant::now();
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::OutputLimitExceeded);
    assert!(started.elapsed() < Duration::from_secs(60));
    let total = std::fs::metadata(&spec.stdout).unwrap().len()
        + std::fs::metadata(&spec.stderr).unwrap().len();
    assert_eq!(total, 100_000, "the files hold exactly the bound");
}

#[tokio::test]
async fn output_up_to_the_bound_is_a_normal_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(
        dir.path(),
        "printf 12345; printf 678 >&2",
        Duration::from_secs(30),
    );
    spec.max_output_bytes = 8;
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(outcome, ProcessOutcome::Exited(0));
    assert_eq!(read(&spec.stdout), "12345");
    assert_eq!(read(&spec.stderr), "678");
}

#[tokio::test]
async fn a_process_escaping_the_group_cannot_hold_the_run_open() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("escaped.pid");
    // A new session leaves the group the kill reaches, keeping stdout open.
    // The leader waits until the escape happened, or the kill could come first.
    let script = format!(
        "setsid sh -c 'echo $$ > {0}.tmp; mv {0}.tmp {0}; exec sleep 1000' & \
         while [ ! -s {0} ]; do sleep 0.01; done; echo started",
        pid_file.display()
    );
    let spec = spec(dir.path(), &script, Duration::from_secs(30));
    let started = Instant::now();
    let outcome = run_process(&spec, &CancellationToken::new()).await.unwrap();
    let escaped: i32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
    // This test started it, so this test ends it.
    let _ = nix::sys::signal::kill(Pid::from_raw(escaped), Signal::SIGKILL);
    assert_eq!(outcome, ProcessOutcome::Exited(0));
    assert!(
        started.elapsed() < CAPTURE_DRAIN_TIMEOUT + Duration::from_secs(20),
        "the run waited {:?}",
        started.elapsed()
    );
    assert_eq!(read(&spec.stdout), "started\n");
    wait_dead(escaped).await;
}
