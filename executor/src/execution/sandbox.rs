//! The bubblewrap sandbox: the `bwrap` command line that wraps one action, and the
//! start-up probe that proves this host can build such a sandbox at all.
//!
//! Inside the sandbox an action sees its input root at [`SANDBOX_ROOT`] (read-write:
//! it is the work directory, and the declared outputs live inside it), the host's
//! system directories read-only (`/usr`, the `/bin` and `/lib*` links or directories,
//! a few files of `/etc`), a fresh `/tmp`, `/dev` and `/proc`, and nothing else: no
//! network, no capabilities (even when the executor runs as root), its own PID, IPC
//! and UTS namespaces, a new session (no terminal to inject keystrokes into), exactly
//! the Command's environment. The data directory, and with
//! it the CAS and every other action's work directory, is not mounted.
//!
//! Mounting the input root at a fixed path rather than its host path keeps the host
//! layout private and makes absolute paths an action sees identical on every node.
//!
//! Killing: bwrap runs as the leader of its own process group, which the caller kills
//! on timeout. The sandboxed processes are in another session, so that kill reaches
//! only bwrap; `--die-with-parent` makes the sandbox's PID 1 die with it, and the
//! kernel then kills everything else in the PID namespace. The kernel ties
//! `--die-with-parent` to the *thread* that spawned bwrap: runners spawn from the
//! runtime's worker threads, which live as long as the executor (nothing here uses
//! `block_in_place`, which could retire one early).
//!
//! This module only builds argv and runs the probe; `process` spawns actions.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Where the action's input root is mounted inside the sandbox.
pub const SANDBOX_ROOT: &str = "/execroot";

/// The host name an action sees.
pub const SANDBOX_HOSTNAME: &str = "remesh-sandbox";

/// Top-level system paths made visible read-only when the host has them. On merged-/usr
/// systems most of them are symlinks into `/usr`; those are recreated as symlinks.
const SYSTEM_PATHS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The few files of `/etc` that programs need to start and to name users: the dynamic
/// linker's cache, Debian's alternatives (many `/usr/bin` links point there), users
/// and groups, and the time zone. Missing ones are skipped (`--ro-bind-try`). The rest
/// of `/etc` (keys, credentials, service configuration) stays out of reach.
const ETC_PATHS: &[&str] = &[
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/localtime",
];

/// How long the start-up probe may take; it runs `/bin/true`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How one system path appears on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemPath {
    /// A directory, bound read-only at the same path.
    Directory(PathBuf),
    /// A symlink (`/bin -> usr/bin`), recreated with the same target.
    Symlink { path: PathBuf, target: PathBuf },
}

/// The sandbox could not be used; start-up stops with this.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: required but {} cannot start ({reason})", bwrap.display())]
    Unusable { bwrap: PathBuf, reason: String },
}

/// A bubblewrap sandbox configuration, shared by every run.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    system: Vec<SystemPath>,
}

impl Sandbox {
    /// A sandbox using the `bwrap` binary at `bwrap` and this host's system layout.
    pub fn new(bwrap: PathBuf) -> Self {
        Self::with_layout(bwrap, host_layout())
    }

    /// A sandbox with a given system layout (tests build argv for a fixed one).
    pub fn with_layout(bwrap: PathBuf, system: Vec<SystemPath>) -> Self {
        Self { bwrap, system }
    }

    pub fn bwrap(&self) -> &Path {
        &self.bwrap
    }

    /// The arguments after the `bwrap` program that run `argv` with `input_root` (a
    /// host directory) as [`SANDBOX_ROOT`] and `working_directory` (relative to the
    /// input root, already checked to stay inside it) as the current directory.
    ///
    /// The environment is not in argv: the caller starts bwrap with exactly the
    /// Command's environment, and bwrap hands its environment on unchanged.
    pub fn args(
        &self,
        input_root: &Path,
        working_directory: &Path,
        argv: &[String],
    ) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::with_capacity(64 + argv.len());
        let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            args.extend(items.iter().map(|item| item.as_ref().to_os_string()));
        };
        push(&[
            // Run as root, bwrap would otherwise leave the action every capability:
            // enough to remount the read-only binds writable or create device nodes.
            &"--cap-drop",
            &"ALL",
            &"--unshare-net",
            &"--unshare-pid",
            &"--unshare-ipc",
            &"--unshare-uts",
            &"--unshare-cgroup-try",
            &"--hostname",
            &SANDBOX_HOSTNAME,
            &"--die-with-parent",
            &"--new-session",
        ]);
        for path in &self.system {
            match path {
                SystemPath::Directory(dir) => push(&[&"--ro-bind", dir, dir]),
                SystemPath::Symlink { path, target } => push(&[&"--symlink", target, path]),
            }
        }
        for path in ETC_PATHS {
            push(&[&"--ro-bind-try", path, path]);
        }
        push(&[
            &"--proc",
            &"/proc",
            &"--dev",
            &"/dev",
            &"--tmpfs",
            &"/tmp",
            &"--bind",
            &input_root,
            &SANDBOX_ROOT,
        ]);
        // `join("")` would add a trailing slash; the root itself reads better in errors.
        let inside = if working_directory.as_os_str().is_empty() {
            PathBuf::from(SANDBOX_ROOT)
        } else {
            Path::new(SANDBOX_ROOT).join(working_directory)
        };
        push(&[&"--chdir", &inside, &"--"]);
        args.extend(argv.iter().map(OsString::from));
        args
    }

    /// Runs `/bin/true` in a sandbox exactly like an action's, over an empty input
    /// root created (and removed again) under `scratch`. Fails with bwrap's own words
    /// when the binary is missing or the host refuses namespaces.
    pub async fn probe(&self, scratch: &Path) -> Result<(), SandboxError> {
        let unusable = |reason: String| SandboxError::Unusable {
            bwrap: self.bwrap.clone(),
            reason,
        };
        let root = scratch.join(format!("sandbox-probe-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|error| unusable(format!("creating {}: {error}", root.display())))?;
        let argv = ["/bin/true".to_owned()];
        let run = tokio::process::Command::new(&self.bwrap)
            .args(self.args(&root, Path::new(""), &argv))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let result = tokio::time::timeout(PROBE_TIMEOUT, run).await;
        let _ = tokio::fs::remove_dir_all(&root).await;
        match result {
            Err(_) => Err(unusable(format!(
                "the probe did not finish within {PROBE_TIMEOUT:?}"
            ))),
            Ok(Err(error)) => Err(unusable(error.to_string())),
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                Err(unusable(format!(
                    "running /bin/true in it: {}: {}",
                    output.status,
                    stderr.trim()
                )))
            }
        }
    }
}

/// The system paths this host has, as directories or symlinks.
fn host_layout() -> Vec<SystemPath> {
    SYSTEM_PATHS
        .iter()
        .filter_map(|path| {
            let path = PathBuf::from(path);
            let metadata = std::fs::symlink_metadata(&path).ok()?;
            if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(SystemPath::Symlink { path, target })
            } else if metadata.is_dir() {
                Some(SystemPath::Directory(path))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
