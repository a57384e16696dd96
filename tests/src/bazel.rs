//! Running the real Bazel client against a server.
//!
//! Each `BazelWorkspace` is a private copy of `shared/bazel/` (Bazel writes `bazel-*`
//! links into the workspace, and the shared folder is read-only) with its own
//! `--output_user_root`, and shuts its Bazel server down when dropped: an idle Bazel
//! keeps a ~250 MiB JVM alive otherwise.
//!
//! Only one Bazel runs at a time on the machine: a build wants every core, and the
//! machine has two. A file lock (not an in-process mutex) enforces that across test
//! binaries and across concurrent `cargo test` runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::locations::shared_dir;
use crate::polling::poll_until_blocking;

/// Every Bazel command is wrapped in `timeout`: Bazel does not time out a stuck Execute
/// stream itself.
const COMMAND_TIMEOUT_SECS: u64 = 300;

/// How long a test waits for another test's Bazel to finish.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How one Bazel command ended.
#[derive(Debug)]
pub struct BazelOutcome {
    /// `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// stderr and stdout interleaved, as a user would see them.
    pub output: String,
}

impl BazelOutcome {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Fails with Bazel's whole output unless the command exited 0.
    pub fn expect_success(&self, what: &str) -> anyhow::Result<()> {
        if !self.succeeded() {
            bail!(
                "{what}: bazel exited {:?}:\n{}",
                self.exit_code,
                self.output
            );
        }
        Ok(())
    }
}

/// The `bazel` client: `REMESH_BAZEL`, else `bazel` on PATH.
pub fn bazel_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("REMESH_BAZEL") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("bazel"))
        .find(|candidate| candidate.is_file())
        .context(
            "bazel is not on PATH: install Debian's bazel-bootstrap (scripts/test does when \
             run as root) or set REMESH_BAZEL",
        )
}

/// A private copy of the shared Bazel workspaces, one of which commands run in.
pub struct BazelWorkspace {
    bazel: PathBuf,
    workspace: PathBuf,
    output_user_root: PathBuf,
    dir: TempDir,
    _machine_lock: File,
}

impl BazelWorkspace {
    /// Copies `shared/bazel/` and selects its workspace `name` (hello, fan, fail, big).
    pub fn shared(name: &str) -> anyhow::Result<Self> {
        let workspace = Self::copy_of_shared(name)?;
        if !workspace.workspace.join("WORKSPACE").is_file() {
            bail!("the shared Bazel folder has no workspace {name}");
        }
        Ok(workspace)
    }

    /// A new workspace `name` beside the shared ones (so it can import
    /// `common.bazelrc` like they do), holding `files` (path, content).
    pub fn new_beside_shared(name: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let workspace = Self::copy_of_shared(name)?;
        let root = &workspace.workspace;
        std::fs::create_dir_all(root)?;
        std::fs::write(
            root.join(".bazelrc"),
            "import %workspace%/../common.bazelrc\n",
        )?;
        std::fs::write(root.join("WORKSPACE"), "")?;
        for (path, content) in files {
            let path = root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
        }
        Ok(workspace)
    }

    /// Takes the machine lock, then copies `shared/bazel/` into a fresh temporary
    /// directory; the workspace is `<copy>/name`.
    fn copy_of_shared(name: &str) -> anyhow::Result<Self> {
        let bazel = bazel_path()?;
        let source = shared_dir()?.join("bazel");
        let machine_lock = lock_machine()?;
        let dir = tempfile::Builder::new().prefix("remesh-bazel-").tempdir()?;
        copy_tree(&source, &dir.path().join("src"))?;
        Ok(Self {
            bazel,
            workspace: dir.path().join("src").join(name),
            output_user_root: dir.path().join("out"),
            dir,
            _machine_lock: machine_lock,
        })
    }

    /// The workspace directory (`bazel-bin` links live here after a build).
    pub fn path(&self) -> &Path {
        &self.workspace
    }

    /// Runs `bazel --output_user_root=… ARGS` in the workspace under `timeout`.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<BazelOutcome> {
        let log_path = self.dir.path().join("bazel-command.log");
        let log = File::create(&log_path)?;
        let status = Command::new("timeout")
            .arg(COMMAND_TIMEOUT_SECS.to_string())
            .arg(&self.bazel)
            .arg(format!(
                "--output_user_root={}",
                self.output_user_root.display()
            ))
            .args(args)
            .current_dir(&self.workspace)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("running timeout(1) with bazel")?;
        let output = std::fs::read_to_string(&log_path)?;
        if status.code() == Some(124) {
            bail!("bazel {args:?} ran past {COMMAND_TIMEOUT_SECS} s and was stopped:\n{output}");
        }
        Ok(BazelOutcome {
            exit_code: status.code(),
            output,
        })
    }

    /// `bazel build --config=rexec --remote_executor=URL TARGETS…`: every action runs
    /// on the server at `url`.
    pub fn build_remote(&self, url: &str, targets: &[&str]) -> anyhow::Result<BazelOutcome> {
        let executor = format!("--remote_executor={url}");
        let mut args = vec!["build", "--config=rexec", executor.as_str()];
        args.extend_from_slice(targets);
        self.run(&args)
    }

    /// The content of an output under `bazel-bin/`.
    pub fn read_output(&self, relative: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.workspace.join("bazel-bin").join(relative);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }
}

impl Drop for BazelWorkspace {
    fn drop(&mut self) {
        // The server is a daemon of this output root; `shutdown` is the way to stop
        // exactly it. Without a server running this returns at once.
        let _ = Command::new("timeout")
            .arg("60")
            .arg(&self.bazel)
            .arg(format!(
                "--output_user_root={}",
                self.output_user_root.display()
            ))
            .arg("shutdown")
            .current_dir(&self.workspace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Bazel makes its output tree read-only; let the TempDir delete it.
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.output_user_root)
            .status();
    }
}

/// Takes the machine-wide Bazel lock, waiting for another holder to finish.
fn lock_machine() -> anyhow::Result<File> {
    let path = std::env::temp_dir().join("remesh-bazel.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    poll_until_blocking("the machine-wide Bazel lock", LOCK_TIMEOUT, || {
        match file.try_lock() {
            Ok(()) => Ok(Some(())),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(error)) => Err(error.into()),
        }
    })?;
    Ok(file)
}

/// Copies a directory tree, giving the copies owner-writable permissions (the source
/// may be read-only) while keeping the executable bit.
fn copy_tree(source: &Path, dest: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let target = dest.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            let executable = entry.metadata()?.permissions().mode() & 0o111 != 0;
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}
