//! Spawning the real `remesh-proxy serve` in front of one executor, and stopping it.
//!
//! The proxy binds port 0 on loopback for gRPC, admin and gossip and announces the
//! addresses in one JSON line on stdout, read here with a deadline. Its log goes to a
//! file printed when the handle drops; the process is killed by pid then.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tempfile::TempDir;

use crate::executor_process::ExecutorProcess;
use crate::locations::{executor_binary, profile_dir};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The ready line of `remesh-proxy serve`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyReadyLine {
    pub ready: String,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub gossip: SocketAddr,
    pub node_id: String,
}

/// A running `remesh-proxy serve`; killed (SIGKILL, by pid) when dropped.
pub struct ProxyProcess {
    child: Child,
    ready: ProxyReadyLine,
    stderr_path: PathBuf,
    _log_dir: TempDir,
}

impl ProxyProcess {
    /// Starts a single-node proxy named `node_id` in front of `executor` (backend mode
    /// `executor`, load from the executor's Load port), with `extra` flags appended.
    pub fn spawn_for(
        executor: &ExecutorProcess,
        node_id: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        // Building the executor builds every workspace binary, the proxy included.
        executor_binary()?;
        let binary = profile_dir()?.join("remesh-proxy");
        let log_dir = tempfile::Builder::new()
            .prefix("remesh-proxy-log-")
            .tempdir()?;
        let stderr_path = log_dir.path().join("proxy.stderr");
        let mut command = Command::new(binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REMESH_PROXY_") {
                command.env_remove(name);
            }
        }
        let ready_line = executor.ready_line();
        let mut child = command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--gossip-listen", "127.0.0.1:0"])
            // Loopback only, and the gossip port is nobody else's: no keyring needed.
            .arg("--insecure-plaintext-gossip")
            .args(["--node-id", node_id])
            .args(["--backend", &format!("grpc://{}", ready_line.grpc)])
            .args(["--backend-load", &format!("grpc://{}", ready_line.load)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("spawning remesh-proxy")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = ready_tx.send(line);
            }
            for _ in lines.by_ref() {}
        });
        let line = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "remesh-proxy printed no ready line; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                )
            }
        };
        let ready: ProxyReadyLine = match serde_json::from_str(&line) {
            Ok(ready) => ready,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("not a ready line: {line:?}: {error}")
            }
        };
        Ok(Self {
            child,
            ready,
            stderr_path,
            _log_dir: log_dir,
        })
    }

    pub fn ready_line(&self) -> &ProxyReadyLine {
        &self.ready
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.ready.grpc
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not crashed or exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        eprintln!(
            "--- remesh-proxy (pid {}) stderr ---\n{}",
            self.child.id(),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        );
    }
}
