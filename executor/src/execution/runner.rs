//! Running one accepted action from start to end on a runner: a fresh work directory
//! under the CAS scratch dir, inputs fetched and materialised, output parents created,
//! the process run, stdout/stderr and outputs stored, the ActionResult written to the
//! action cache when it may be, and the work directory deleted, always.
//!
//! Whatever happens comes back as an `ExecuteResponse` (failures in its `status`) and
//! an outcome label for the metrics; nothing here panics on what the action did.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use remesh_proto::reapi::{ActionResult, ExecuteResponse, ExecutedActionMetadata};
use remesh_proto::{protobuf, rpc};

use crate::execution::action::{ActionLimits, LoadedAction, RootPath};
use crate::execution::error::ExecutionError;
use crate::execution::input_tree::InputTree;
use crate::execution::operations::{CancelReason, Operation};
use crate::execution::outputs::collect_outputs;
use crate::execution::process::{ProcessOutcome, ProcessSpec, SandboxRun, run_process};
use crate::execution::sandbox::Sandbox;
use crate::storage::{ActionCache, Cas};

/// Runs actions; shared by every runner task.
pub struct ActionRunner {
    pub cas: Cas,
    pub action_cache: ActionCache,
    pub limits: ActionLimits,
    /// `ExecutedActionMetadata.worker`: the host name, or "remesh-executor".
    pub worker: String,
    /// Names this process's work directories: `WORK_DIR_PREFIX` + a per-process id, so
    /// leftovers of an earlier process can be told apart and removed.
    pub work_dir_prefix: String,
    /// Every action runs in this sandbox when set (`sandbox = "required"`).
    pub sandbox: Option<Arc<Sandbox>>,
    /// `max_output_bytes`: output files, stdout and stderr of one action together.
    pub max_output_bytes: u64,
}

/// Every work directory's name starts with this.
pub const WORK_DIR_PREFIX: &str = "exec-";

/// How a run ended, for `executions_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    NonzeroExit,
    Timeout,
    Cancelled,
    Error,
}

impl RunOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::NonzeroExit => "nonzero_exit",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }
}

/// Sets a timestamp of `ExecutedActionMetadata` to now.
fn stamp(field: &mut Option<protobuf::Timestamp>) {
    *field = Some(timestamp(SystemTime::now()));
}

pub fn timestamp(time: SystemTime) -> protobuf::Timestamp {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    protobuf::Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    }
}

/// The paths of one run's work directory.
struct WorkDir {
    base: PathBuf,
    root: PathBuf,
    staging: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl WorkDir {
    async fn create(scratch: &Path, prefix: &str) -> Result<Self, ExecutionError> {
        let base = scratch.join(format!("{prefix}{}", uuid::Uuid::new_v4().simple()));
        let work = Self {
            root: base.join("root"),
            staging: base.join("staging"),
            stdout: base.join("stdout"),
            stderr: base.join("stderr"),
            base,
        };
        for dir in [&work.root, &work.staging] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(ExecutionError::io(format!("creating {}", dir.display())))?;
        }
        Ok(work)
    }
}

impl ActionRunner {
    /// Runs `action` for `operation` and says how it went.
    pub async fn run(
        &self,
        action: &LoadedAction,
        operation: &Operation,
        queued_at: SystemTime,
    ) -> (ExecuteResponse, RunOutcome) {
        let mut metadata = ExecutedActionMetadata {
            worker: self.worker.clone(),
            queued_timestamp: Some(timestamp(queued_at)),
            ..Default::default()
        };
        stamp(&mut metadata.worker_start_timestamp);
        let work = match WorkDir::create(&self.cas.scratch_dir(), &self.work_dir_prefix).await {
            Ok(work) => work,
            Err(error) => return (error_response(&error, None), RunOutcome::Error),
        };
        let result = self.run_in(action, operation, &work, &mut metadata).await;
        remove_work_dir(&work.base).await;
        match result {
            Ok(done) => done,
            Err(error) => {
                let outcome = match error {
                    ExecutionError::Cancelled(_) => RunOutcome::Cancelled,
                    _ => RunOutcome::Error,
                };
                (error_response(&error, None), outcome)
            }
        }
    }

    async fn run_in(
        &self,
        action: &LoadedAction,
        operation: &Operation,
        work: &WorkDir,
        metadata: &mut ExecutedActionMetadata,
    ) -> Result<(ExecuteResponse, RunOutcome), ExecutionError> {
        stamp(&mut metadata.input_fetch_start_timestamp);
        let prepare = async {
            let inputs = InputTree::fetch(&self.cas, &action.input_root, &self.limits).await?;
            inputs.materialize(&self.cas, &work.root).await?;
            let working_directory = create_real_dirs(&work.root, &action.working_directory).await?;
            for output in &action.outputs {
                create_real_dirs(&work.root, &output.location.parent()).await?;
            }
            Ok::<_, ExecutionError>(working_directory)
        };
        // A large input tree can take long; a cancel should not wait for it. Copies
        // already handed to blocking threads may finish later into the work directory;
        // its removal retries and tolerates that.
        let working_directory = tokio::select! {
            prepared = prepare => prepared?,
            () = operation.cancel_token().cancelled() => return Err(cancelled(operation)),
        };
        stamp(&mut metadata.input_fetch_completed_timestamp);

        let spec = ProcessSpec {
            argv: action.command.arguments.clone(),
            environment: action.environment.clone(),
            working_directory,
            stdout: work.stdout.clone(),
            stderr: work.stderr.clone(),
            timeout: action.timeout,
            max_output_bytes: self.max_output_bytes,
            sandbox: self.sandbox.as_ref().map(|sandbox| SandboxRun {
                sandbox: sandbox.clone(),
                input_root: work.root.clone(),
            }),
        };
        stamp(&mut metadata.execution_start_timestamp);
        let outcome = run_process(&spec, operation.cancel_token()).await?;
        stamp(&mut metadata.execution_completed_timestamp);

        stamp(&mut metadata.output_upload_start_timestamp);
        let stdout = self.cas.ingest_file(&work.stdout).await?;
        let stderr = self.cas.ingest_file(&work.stderr).await?;
        let printed = stdout.size().saturating_add(stderr.size());
        let mut result = ActionResult {
            stdout_digest: Some(stdout.to_proto()),
            stderr_digest: Some(stderr.to_proto()),
            ..Default::default()
        };
        // A killed action's result keeps the partial stdout/stderr: Bazel shows them.
        let killed = |code: tonic::Code, message: String, outcome: RunOutcome| {
            let mut result = result.clone();
            result.exit_code = 128 + nix::sys::signal::Signal::SIGKILL as i32;
            let mut metadata = metadata.clone();
            stamp(&mut metadata.output_upload_completed_timestamp);
            stamp(&mut metadata.worker_completed_timestamp);
            result.execution_metadata = Some(metadata);
            let status = rpc::Status {
                code: code as i32,
                message,
                details: Vec::new(),
            };
            (respond(result, Some(status)), outcome)
        };
        let exit_code = match outcome {
            ProcessOutcome::Exited(code) => code,
            ProcessOutcome::Cancelled => return Err(cancelled(operation)),
            // Bazel reports a test TIMEOUT from this status.
            ProcessOutcome::TimedOut => {
                return Ok(killed(
                    tonic::Code::DeadlineExceeded,
                    format!("action timed out after {:?}", action.timeout),
                    RunOutcome::Timeout,
                ));
            }
            ProcessOutcome::OutputLimitExceeded => {
                return Ok(killed(
                    tonic::Code::ResourceExhausted,
                    format!(
                        "the action printed more than max_output_bytes ({} bytes) to stdout and stderr and was killed",
                        self.max_output_bytes
                    ),
                    RunOutcome::Error,
                ));
            }
        };
        result.exit_code = exit_code;
        let budget = self.max_output_bytes.saturating_sub(printed);
        let collected = collect_outputs(
            &self.cas,
            &work.root,
            &work.staging,
            &action.outputs,
            budget,
        )
        .await;
        let outputs = match collected {
            Ok(outputs) => outputs,
            // Keep exit code, stdout and stderr: they usually explain the bad output.
            Err(error) => {
                result.execution_metadata = Some(metadata.clone());
                return Ok((error_response(&error, Some(result)), RunOutcome::Error));
            }
        };
        result.output_files = outputs.files;
        result.output_directories = outputs.directories;
        result.output_symlinks = outputs.symlinks;
        #[allow(deprecated)] // v2.0 clients (Bazel 4) read these
        {
            result.output_file_symlinks = outputs.file_symlinks;
            result.output_directory_symlinks = outputs.directory_symlinks;
        }
        stamp(&mut metadata.output_upload_completed_timestamp);
        stamp(&mut metadata.worker_completed_timestamp);
        result.execution_metadata = Some(metadata.clone());

        if exit_code != 0 {
            return Ok((respond(result, None), RunOutcome::NonzeroExit));
        }
        if !action.action.do_not_cache
            && let Err(error) = self.action_cache.put(&action.digest, &result).await
        {
            // The result is still right; only later cache hits are lost.
            tracing::warn!(%error, action = %action.digest, "writing the action cache failed");
        }
        Ok((respond(result, None), RunOutcome::Success))
    }
}

fn respond(result: ActionResult, status: Option<rpc::Status>) -> ExecuteResponse {
    ExecuteResponse {
        result: Some(result),
        status,
        ..Default::default()
    }
}

/// The response for a failure: the status (with details), and a result if one exists.
pub fn error_response(error: &ExecutionError, result: Option<ActionResult>) -> ExecuteResponse {
    ExecuteResponse {
        result,
        status: Some(error.to_rpc_status()),
        message: error.to_string(),
        ..Default::default()
    }
}

fn cancelled(operation: &Operation) -> ExecutionError {
    match operation.cancel_reason() {
        Some(CancelReason::Shutdown) => ExecutionError::ShuttingDown,
        _ => ExecutionError::Cancelled("the operation was cancelled".to_owned()),
    }
}

/// Creates `path` below `root` directory by directory. Existing components must be real
/// directories: a file or a symlink there (from the input tree) is refused rather than
/// followed, so nothing is ever created outside the root.
async fn create_real_dirs(root: &Path, path: &RootPath) -> Result<PathBuf, ExecutionError> {
    let mut current = root.to_path_buf();
    for component in path.components() {
        current.push(component);
        match tokio::fs::symlink_metadata(&current).await {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(ExecutionError::InvalidArgument(format!(
                    "{} must be a directory (an output parent or the working directory) but the input tree has a file or symlink there",
                    path.components().join("/")
                )));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tokio::fs::create_dir(&current)
                    .await
                    .map_err(ExecutionError::io(format!(
                        "creating {}",
                        current.display()
                    )))?;
            }
            Err(error) => {
                return Err(ExecutionError::io(format!(
                    "inspecting {}",
                    current.display()
                ))(error));
            }
        }
    }
    Ok(current)
}

/// Deletes a work directory even when the action left read-only directories in it.
pub async fn remove_work_dir(path: &Path) {
    if tokio::fs::remove_dir_all(path).await.is_ok() {
        return;
    }
    let path_owned = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        make_writable(&path_owned);
        std::fs::remove_dir_all(&path_owned)
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, path = %path.display(), "deleting a work directory failed");
        }
        Err(error) => tracing::warn!(%error, "deleting a work directory panicked"),
    }
}

/// Gives the owner rwx on every directory below `path` (symlinks are not followed).
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !metadata.is_dir() {
            continue;
        }
        let mode = metadata.permissions().mode() | 0o700;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
}

/// `ExecutedActionMetadata.worker` for this host.
pub fn worker_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "remesh-executor".to_owned())
}

#[cfg(test)]
#[path = "runner_limit_tests.rs"]
mod limit_tests;
