//! Where things are: the workspace, the build output, the `remesh-executor` binary under
//! test and the team's `shared/` directory (Bazel workspaces, BuildGrid config).
//!
//! Cargo only sets `CARGO_BIN_EXE_*` for binaries of the crate under test, and
//! `cargo test` does not link another package's binary unless that package has
//! integration tests of its own. So the harness asks cargo itself, once per process, to
//! bring the binary up to date in the profile this test was built with: a no-op when
//! it is fresh, and never a stale executor silently under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// The team's shared directory: `REMESH_SHARED_DIR`, else `shared/` beside the
/// repository (CI clones the repository next to a copy of it).
pub fn shared_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("REMESH_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared"),
    };
    if !dir.join("bazel").is_dir() {
        bail!(
            "the shared directory {} has no bazel/ workspaces; set REMESH_SHARED_DIR to the \
             directory holding bazel/ and buildgrid/",
            dir.display()
        );
    }
    Ok(dir.canonicalize()?)
}

/// `target/<profile>` of the running test or benchmark: test executables live in
/// `target/<profile>/deps/`, binaries in `target/<profile>/`.
pub fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let parent = exe.parent().context("executable has no parent directory")?;
    let dir = if parent.file_name().is_some_and(|name| name == "deps") {
        parent.parent().context("deps/ has no parent directory")?
    } else {
        parent
    };
    Ok(dir.to_path_buf())
}

/// The `remesh-executor` binary, built and fresh. `REMESH_EXECUTOR_BIN` overrides the
/// lookup (and skips the build), for running the tests against an installed binary.
pub fn executor_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("REMESH_EXECUTOR_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("REMESH_EXECUTOR_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_workspace_binaries().map_err(|error| format!("{error:#}")))
        .clone()
        .map(|dir| dir.join("remesh-executor"))
        .map_err(anyhow::Error::msg)
}

/// Runs `cargo build` for every workspace binary in the profile of the running
/// executable. Test builds add `--tests` so that cargo unifies features exactly as
/// `cargo test --workspace` did and reuses its artifacts instead of compiling a second
/// variant of every dependency.
fn build_workspace_binaries() -> anyhow::Result<PathBuf> {
    let profile_dir = profile_dir()?;
    let target_dir = profile_dir
        .parent()
        .context("the profile directory has no parent")?;
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => bail!("cannot tell the build profile of {}", profile_dir.display()),
    };
    let is_test = std::env::current_exe()?
        .parent()
        .is_some_and(|dir| dir.ends_with("deps"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--quiet")
        .arg("--workspace")
        .arg("--bins")
        .args(["--profile", profile])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if is_test {
        command.arg("--tests");
    }
    // Cargo gives a test process the package's own variables (CARGO_PKG_NAME, …). Build
    // scripts such as ring's rerun when those change, which would make this build and
    // the surrounding `cargo test` rebuild each other's dependencies every time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = ["CARGO_PKG_", "CARGO_BIN_", "CARGO_MANIFEST_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_for_tests {
            command.env_remove(name.as_ref());
        }
    }
    let output = command
        .output()
        .context("running cargo to build remesh-executor (is cargo on PATH?)")?;
    if !output.status.success() {
        bail!(
            "building the workspace binaries failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = profile_dir.join("remesh-executor");
    if !binary.is_file() {
        bail!(
            "cargo built the workspace but {} is missing",
            binary.display()
        );
    }
    Ok(profile_dir)
}
