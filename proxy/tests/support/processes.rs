//! Real processes: the `remesh-executor` binary (brought up to date by cargo, once per
//! test process) and a whole cluster started with `remesh-proxy up`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::real::KillOnDrop;

/// This package's `remesh-proxy` binary.
pub fn proxy_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_remesh-proxy"))
}

/// `remesh-executor`, next to `remesh-proxy` (where `up` looks for it), built by cargo
/// in this test's profile. Cargo only builds another package's binary for tests of
/// that package, so the test asks for it; when it is already fresh this is a no-op.
pub fn executor_binary() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_executor)
        .clone()
        .unwrap_or_else(|error| panic!("remesh-executor is required: {error}"))
}

fn build_executor() -> Result<PathBuf, String> {
    let binary = proxy_binary().with_file_name("remesh-executor");
    let profile_dir = binary.parent().ok_or("no profile directory")?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => return Err("cannot tell the build profile".into()),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    command
        .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
        .args(["--profile", &profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    // The variables cargo sets for this test process would make build scripts see a
    // changed environment and rebuild, here and again in the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_str())
        {
            command.env_remove(&name);
        }
    }
    let output = command
        .output()
        .map_err(|error| format!("running cargo: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    if !binary.is_file() {
        return Err(format!("{} is missing after the build", binary.display()));
    }
    Ok(binary)
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecutorAddrs {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub load: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpNode {
    pub node_id: String,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub gossip: SocketAddr,
    /// The peer port, with `--mesh-tls` or `--tls`.
    #[serde(default)]
    pub peer: Option<SocketAddr>,
    pub proxy_pid: u32,
    pub executor: ExecutorAddrs,
    pub executor_pid: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UpReady {
    pub ready: String,
    pub nodes: Vec<UpNode>,
    pub bazel_flags: Vec<String>,
}

/// A cluster run by `remesh-proxy up`; every process is SIGKILLed if the test ends
/// without `stop`.
pub struct UpCluster {
    pub ready: UpReady,
    child: tokio::process::Child,
    guard: KillOnDrop,
}

impl UpCluster {
    pub async fn start(nodes: usize, runners: &str, data_dir: &Path) -> Self {
        Self::start_with(nodes, runners, data_dir, &[]).await
    }

    /// `start` with more `up` flags (e.g. `--tls`).
    pub async fn start_with(nodes: usize, runners: &str, data_dir: &Path, extra: &[&str]) -> Self {
        executor_binary();
        let mut child = tokio::process::Command::new(proxy_binary())
            .args(["up", "--nodes", &nodes.to_string(), "--runners", runners])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting remesh-proxy up");
        let mut guard = KillOnDrop::default();
        guard.pids.push(child.id().expect("pid of up"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("up printed no ready line within 120 s")
            .unwrap()
            .unwrap_or_else(|| panic!("up exited before ready; logs in {}", data_dir.display()));
        let ready: UpReady = serde_json::from_str(&line).expect("up's ready line");
        for node in &ready.nodes {
            guard.pids.extend([node.proxy_pid, node.executor_pid]);
        }
        Self {
            ready,
            child,
            guard,
        }
    }

    pub fn node(&self, index: usize) -> &UpNode {
        &self.ready.nodes[index]
    }

    /// SIGTERM to `up`, which stops every node; returns `up`'s exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("up is running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("up did not stop within 60 s")
            .unwrap();
        // Everything is down: nothing left for the guard.
        self.guard.pids.clear();
        status
    }
}

/// The executor's count of actions it ran to a successful end (not cache hits or
/// merged duplicates), for `metric`.
pub const EXECUTIONS: &str = "remesh_executor_executions_total{outcome=\"success\"}";

/// A counter or gauge from a Prometheus text page: `name` alone sums every label set,
/// `name{label="value"}` picks one.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = super::http_get(addr, "/metrics").await.unwrap_or_default();
    body.lines()
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with(' ') || (!name.ends_with('}') && rest.starts_with('{'))
            })
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether a process still exists.
pub fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}
