//! Loading an Action and its Command from the CAS and checking everything in them that
//! can be checked before a runner is spent: digests, sizes, argv and environment,
//! timeout, and every path (working directory, outputs) the executor will touch.
//!
//! Paths are resolved lexically against the input root into `RootPath`s (plain
//! components, no `.`/`..`), so that later code joins only names that were checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use remesh_proto::reapi::{Action, Command};

use crate::digest::BlobDigest;
use crate::execution::error::ExecutionError;
use crate::storage::Cas;

/// A path inside the input root as checked components (never empty for outputs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootPath(Vec<String>);

impl RootPath {
    pub fn components(&self) -> &[String] {
        &self.0
    }

    pub fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.0);
        path
    }

    /// The path minus its last component (the root itself for a top-level name).
    pub fn parent(&self) -> RootPath {
        RootPath(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }
}

/// What kind of output a path was requested as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `output_files` (REAPI v2.0): a file or a symlink.
    File,
    /// `output_directories` (REAPI v2.0): a directory or a symlink.
    Directory,
    /// `output_paths` (REAPI v2.1): whatever is there.
    Any,
}

/// One requested output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRequest {
    /// The path as the client wrote it (relative to the working directory); results
    /// report it verbatim.
    pub requested: String,
    pub location: RootPath,
    pub kind: OutputKind,
}

/// An Action and its Command, loaded and checked.
#[derive(Debug, Clone)]
pub struct LoadedAction {
    pub digest: BlobDigest,
    pub action: Action,
    pub command: Command,
    pub input_root: BlobDigest,
    pub timeout: Duration,
    pub working_directory: RootPath,
    pub outputs: Vec<OutputRequest>,
    pub environment: Vec<(String, String)>,
}

/// Bounds the loader enforces.
#[derive(Debug, Clone, Copy)]
pub struct ActionLimits {
    /// Largest Action, Command or Directory blob read into memory.
    pub max_message_bytes: u64,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
}

/// Reads and checks the Action `digest` and its Command. Missing blobs come back as
/// `MissingBlobs`, malformed ones as `InvalidArgument`.
pub async fn load_action(
    cas: &Cas,
    digest: &BlobDigest,
    limits: &ActionLimits,
) -> Result<LoadedAction, ExecutionError> {
    let action: Action = read_message(cas, digest, "Action", limits).await?;
    let command_digest = BlobDigest::from_field(action.command_digest.as_ref())
        .map_err(|e| invalid(format!("Action.command_digest: {e}")))?;
    let input_root = BlobDigest::from_field(action.input_root_digest.as_ref())
        .map_err(|e| invalid(format!("Action.input_root_digest: {e}")))?;
    let command: Command = read_message(cas, &command_digest, "Command", limits).await?;
    let timeout = action_timeout(&action, limits)?;
    check_command(&command)?;
    let working_directory = resolve(&[], &command.working_directory).map_err(|reason| {
        invalid(format!(
            "working_directory {:?}: {reason}",
            command.working_directory
        ))
    })?;
    let outputs = output_requests(&command, &working_directory)?;
    let environment = command
        .environment_variables
        .iter()
        .map(|variable| (variable.name.clone(), variable.value.clone()))
        .collect();
    Ok(LoadedAction {
        digest: digest.clone(),
        action,
        command,
        input_root,
        timeout,
        working_directory,
        outputs,
        environment,
    })
}

/// Reads a small protobuf blob, bounded by `max_message_bytes`.
pub async fn read_message<M: Message + Default>(
    cas: &Cas,
    digest: &BlobDigest,
    what: &str,
    limits: &ActionLimits,
) -> Result<M, ExecutionError> {
    if digest.size() > limits.max_message_bytes {
        return Err(invalid(format!(
            "{what} {digest} is larger than the {} bytes allowed",
            limits.max_message_bytes
        )));
    }
    let bytes = cas
        .read_bytes(digest)
        .await?
        .ok_or_else(|| ExecutionError::MissingBlobs(vec![digest.clone()]))?;
    M::decode(bytes).map_err(|e| invalid(format!("{what} {digest} is not a valid message: {e}")))
}

fn action_timeout(action: &Action, limits: &ActionLimits) -> Result<Duration, ExecutionError> {
    let Some(timeout) = &action.timeout else {
        return Ok(limits.default_timeout);
    };
    if timeout.seconds < 0 || timeout.nanos < 0 || timeout.nanos >= 1_000_000_000 {
        return Err(invalid(format!(
            "Action.timeout {}s {}ns is not a valid non-negative duration",
            timeout.seconds, timeout.nanos
        )));
    }
    let asked = Duration::new(timeout.seconds as u64, timeout.nanos as u32);
    if asked.is_zero() {
        return Ok(limits.default_timeout);
    }
    Ok(asked.min(limits.max_timeout))
}

fn check_command(command: &Command) -> Result<(), ExecutionError> {
    if command.arguments.is_empty() || command.arguments[0].is_empty() {
        return Err(invalid("Command.arguments must name a program".to_owned()));
    }
    if command
        .arguments
        .iter()
        .any(|argument| argument.contains('\0'))
    {
        return Err(invalid("Command.arguments must not contain NUL".to_owned()));
    }
    for variable in &command.environment_variables {
        let name_ok = !variable.name.is_empty()
            && !variable.name.contains('=')
            && !variable.name.contains('\0');
        if !name_ok || variable.value.contains('\0') {
            return Err(invalid(format!(
                "environment variable {:?}: names must be non-empty without '=' or NUL, values without NUL",
                variable.name
            )));
        }
    }
    Ok(())
}

#[allow(deprecated)] // output_files / output_directories: what REAPI v2.0 clients (Bazel 4) send
fn output_requests(
    command: &Command,
    working_directory: &RootPath,
) -> Result<Vec<OutputRequest>, ExecutionError> {
    // v2.1 servers use output_paths when given and ignore the v2.0 fields.
    let requested: Vec<(&String, OutputKind)> = if command.output_paths.is_empty() {
        command
            .output_files
            .iter()
            .map(|path| (path, OutputKind::File))
            .chain(
                command
                    .output_directories
                    .iter()
                    .map(|path| (path, OutputKind::Directory)),
            )
            .collect()
    } else {
        command
            .output_paths
            .iter()
            .map(|path| (path, OutputKind::Any))
            .collect()
    };
    let mut outputs: Vec<OutputRequest> = Vec::with_capacity(requested.len());
    for (path, kind) in requested {
        let location = resolve(working_directory.components(), path)
            .map_err(|reason| invalid(format!("output path {path:?}: {reason}")))?;
        if location.components().is_empty() {
            return Err(invalid(format!(
                "output path {path:?} names the input root itself"
            )));
        }
        if outputs.iter().any(|output| output.requested == *path) {
            continue;
        }
        outputs.push(OutputRequest {
            requested: path.clone(),
            location,
            kind,
        });
    }
    Ok(outputs)
}

/// Resolves the relative `path` against `base` (components below the input root):
/// refuses absolute paths, NUL, empty components, and `..` climbing above the root.
pub fn resolve(base: &[String], path: &str) -> Result<RootPath, &'static str> {
    if path.starts_with('/') {
        return Err("must be relative, not absolute");
    }
    if path.contains('\0') {
        return Err("must not contain NUL");
    }
    let mut components = base.to_vec();
    if path.is_empty() {
        return Ok(RootPath(components));
    }
    for component in path.split('/') {
        match component {
            "" => return Err("must not contain empty components (\"//\" or a trailing '/')"),
            "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err("must not climb above the input root");
                }
            }
            name => components.push(name.to_owned()),
        }
    }
    Ok(RootPath(components))
}

fn invalid(message: String) -> ExecutionError {
    ExecutionError::InvalidArgument(message)
}

#[cfg(test)]
#[path = "action_tests.rs"]
mod tests;
