//! Spawning one action's process: the only place a child process is started, so a
//! sandbox wrapper (bubblewrap) slots in here later.
//!
//! The child gets exactly the given environment, its own process group (so a timeout or
//! cancel kills every descendant, not just the shell), no stdin, and stdout/stderr
//! written straight to files: output size is bounded by disk, never by memory. After the
//! child exits, the group is killed too, so no straggler keeps writing while outputs
//! are collected.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

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
}

/// Runs the process to its end, its timeout, or `cancel`.
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
    let mut command = tokio::process::Command::new(program_path(program, &spec.working_directory));
    command
        .args(args)
        .env_clear()
        .envs(spec.environment.iter().map(|(name, value)| (name, value)))
        .current_dir(&spec.working_directory)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    // With process_group(0) the group id is the child's pid.
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);

    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status.map_err(ProcessError::Wait);
            kill_group(group);
            return status.map(|status| ProcessOutcome::Exited(exit_code(status)));
        }
        () = tokio::time::sleep(spec.timeout) => ProcessOutcome::TimedOut,
        () = cancel.cancelled() => ProcessOutcome::Cancelled,
    };
    kill_group(group);
    // The leader is dead (or dies now); reap it so no zombie is left.
    child.wait().await.map_err(ProcessError::Wait)?;
    Ok(outcome)
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
