//! Spawning one action's process: the only place an action's process is started,
//! directly or wrapped in the bubblewrap sandbox (`sandbox` builds that command line).
//!
//! The child gets exactly the given environment, its own process group (so a timeout or
//! cancel kills every descendant, not just the shell), no stdin, and stdout/stderr
//! through pipes copied into files under the `max_output_bytes` budget (`capture`):
//! bounded on disk, never held in memory. After the child exits, the group is killed
//! too, so no straggler keeps writing while outputs are collected.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::execution::capture::{CaptureBudget, CaptureError, spawn_copy};
use crate::execution::sandbox::Sandbox;

/// After the group is killed, how long the capture of stdout and stderr may take to
/// reach the end of its pipes. Only a process that left the group (a daemon that called
/// setsid) can hold a pipe open that long; its remaining output is dropped.
const CAPTURE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Running inside the bubblewrap sandbox.
#[derive(Debug, Clone)]
pub struct SandboxRun {
    pub sandbox: Arc<Sandbox>,
    /// The host directory mounted as the sandbox's input root; `working_directory`
    /// must lie inside it.
    pub input_root: PathBuf,
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// argv; `argv[0]` is looked up in the given PATH when it has no '/', and is taken
    /// relative to `working_directory` when it is relative with a '/'.
    pub argv: Vec<String>,
    /// The complete environment; nothing is inherited from the executor.
    pub environment: Vec<(String, String)>,
    pub working_directory: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub timeout: Duration,
    /// Bytes stdout and stderr may hold together; past it the action is killed.
    pub max_output_bytes: u64,
    /// `None` runs the process directly on the host.
    pub sandbox: Option<SandboxRun>,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// It exited by itself; killed by a signal reads as 128 + the signal number, the
    /// way shells report it.
    Exited(i32),
    /// The timeout fired and the group was killed.
    TimedOut,
    /// The cancellation token fired and the group was killed.
    Cancelled,
    /// stdout and stderr together exceeded `max_output_bytes`; the group was killed
    /// and the files hold the output up to that bound.
    OutputLimitExceeded,
}

/// The process could not be started or waited for; nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot open {path} for the action's output: {source}")]
    OutputFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("waiting for the action's process: {0}")]
    Wait(std::io::Error),
    #[error("{0}")]
    Capture(#[from] CaptureError),
    /// The sandboxed working directory is not inside the input root (a caller bug).
    #[error("working directory {working_directory} is not inside the sandbox root {input_root}")]
    OutsideSandboxRoot {
        working_directory: PathBuf,
        input_root: PathBuf,
    },
}

/// Runs the process to its end, its timeout, its output bound, or `cancel`.
pub async fn run_process(
    spec: &ProcessSpec,
    cancel: &CancellationToken,
) -> Result<ProcessOutcome, ProcessError> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(ProcessError::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "argv is empty"),
        });
    };
    let stdout = create_output(&spec.stdout)?;
    let stderr = create_output(&spec.stderr)?;
    let mut command = build_command(spec, program, args)?;
    command
        .env_clear()
        .envs(spec.environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: spawned_program(spec, program),
        source,
    })?;
    // With process_group(0) the group id is the child's pid.
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    let budget = CaptureBudget::new(spec.max_output_bytes);
    let stop_captures = CancellationToken::new();
    let mut captures = Vec::with_capacity(2);
    if let Some(pipe) = child.stdout.take() {
        let stop = stop_captures.clone();
        captures.push(spawn_copy(pipe, stdout, &spec.stdout, budget.clone(), stop));
    }
    if let Some(pipe) = child.stderr.take() {
        let stop = stop_captures.clone();
        captures.push(spawn_copy(pipe, stderr, &spec.stderr, budget.clone(), stop));
    }

    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ok(ProcessOutcome::Exited(exit_code(status))),
            Err(error) => Err(ProcessError::Wait(error)),
        },
        () = tokio::time::sleep(spec.timeout) => Ok(ProcessOutcome::TimedOut),
        () = cancel.cancelled() => Ok(ProcessOutcome::Cancelled),
        () = budget.exceeded().cancelled() => Ok(ProcessOutcome::OutputLimitExceeded),
    };
    kill_group(group);
    // The leader is dead (or dies now); reap it so no zombie is left. After a normal
    // exit this returns the status already collected.
    let reaped = child.wait().await.map_err(ProcessError::Wait);
    finish_captures(captures, &stop_captures).await?;
    let outcome = outcome?;
    reaped?;
    // Output past the bound may have been printed just before a normal exit.
    if matches!(outcome, ProcessOutcome::Exited(_)) && budget.exceeded().is_cancelled() {
        return Ok(ProcessOutcome::OutputLimitExceeded);
    }
    Ok(outcome)
}

/// The command to spawn: the action's program itself, or bwrap wrapping it.
fn build_command(
    spec: &ProcessSpec,
    program: &str,
    args: &[String],
) -> Result<tokio::process::Command, ProcessError> {
    let Some(run) = &spec.sandbox else {
        let mut command =
            tokio::process::Command::new(program_path(program, &spec.working_directory));
        command.args(args).current_dir(&spec.working_directory);
        return Ok(command);
    };
    let relative = spec
        .working_directory
        .strip_prefix(&run.input_root)
        .map_err(|_| ProcessError::OutsideSandboxRoot {
            working_directory: spec.working_directory.clone(),
            input_root: run.input_root.clone(),
        })?;
    let mut command = tokio::process::Command::new(run.sandbox.bwrap());
    // bwrap changes into the working directory inside the sandbox (`--chdir`) and
    // resolves the program there; on the host side it only needs a directory that
    // does not depend on the executor's own.
    command
        .args(run.sandbox.args(&run.input_root, relative, &spec.argv))
        .current_dir(&run.input_root);
    Ok(command)
}

/// Names what failed to start: bwrap itself when sandboxed (the action's own program
/// failing inside the sandbox is a normal non-zero exit reported by bwrap).
fn spawned_program(spec: &ProcessSpec, program: &str) -> String {
    match &spec.sandbox {
        Some(run) => run.sandbox.bwrap().display().to_string(),
        None => program.to_owned(),
    }
}

/// Waits for both copies to reach the end of their pipes. A pipe that a process
/// outside the killed group still holds is given up after `CAPTURE_DRAIN_TIMEOUT`:
/// the copies stop between writes, so the files are final when this returns.
async fn finish_captures(
    captures: Vec<JoinHandle<Result<(), CaptureError>>>,
    stop: &CancellationToken,
) -> Result<(), ProcessError> {
    let all = futures::future::join_all(captures);
    tokio::pin!(all);
    let results = match tokio::time::timeout(CAPTURE_DRAIN_TIMEOUT, &mut all).await {
        Ok(results) => results,
        Err(_) => {
            tracing::warn!("an action's output pipe stayed open after its group was killed");
            stop.cancel();
            all.await
        }
    };
    for result in results {
        match result {
            Ok(result) => result?,
            Err(join_error) => {
                tracing::warn!(%join_error, "capturing an action's output failed");
            }
        }
    }
    Ok(())
}

fn create_output(path: &Path) -> Result<std::fs::File, ProcessError> {
    std::fs::File::create(path).map_err(|source| ProcessError::OutputFile {
        path: path.to_path_buf(),
        source,
    })
}

/// `./tool` and `bin/tool` are relative to the action's working directory; the
/// executor's own working directory must never matter.
fn program_path(program: &str, working_directory: &Path) -> PathBuf {
    if program.contains('/') && !program.starts_with('/') {
        working_directory.join(program)
    } else {
        PathBuf::from(program)
    }
}

/// SIGKILL to the whole group; an already empty group (ESRCH) is fine. After a normal
/// exit the leader is reaped first, so in theory its id could be reused by then; a new
/// group with that id would need a new session leader of the same pid in that instant,
/// which is the accepted residue of not having pidfd-based group kills.
fn kill_group(group: Option<Pid>) {
    if let Some(group) = group
        && let Err(error) = killpg(group, Signal::SIGKILL)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(%error, group = group.as_raw(), "killing an action's process group failed");
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
