//! Spawning the real `remesh-proxy serve` and stopping it again.
//!
//! Every socket binds port 0 on loopback; the proxy announces its addresses in one
//! JSON ready line on stdout, read here with a deadline. Its log goes to a file in a
//! temporary directory, printed when the handle drops. The process gets SIGTERM (a
//! graceful leave) and then SIGKILL, by pid, when the handle drops.
//!
//! The hostile suites start one proxy in front of one executor (`spawn_for`); the
//! benchmarks also join proxies into a cluster, run a baseline build and read the admin
//! port (`ProxyOptions`, `admin_get`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use tempfile::TempDir;

use crate::executor_process::ExecutorProcess;
use crate::locations::executor_binary;
use crate::polling::poll_until_blocking;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a dropped proxy gets to leave after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The ready line of `remesh-proxy serve`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyReadyLine {
    pub ready: String,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub gossip: SocketAddr,
    pub node_id: String,
}

/// How one proxy is started.
pub struct ProxyOptions {
    pub node_id: String,
    /// The executor's REAPI address.
    pub backend: SocketAddr,
    /// Where the executor's Load service is.
    pub backend_load: SocketAddr,
    /// Gossip address of a member to join.
    pub join: Option<SocketAddr>,
    /// More `serve` flags.
    pub extra_args: Vec<String>,
    /// Another `remesh-proxy` build to run instead of the workspace's (a baseline
    /// for side-by-side comparison).
    pub binary: Option<PathBuf>,
    /// `RUST_LOG` for the proxy; `None` passes on the caller's.
    pub log_filter: Option<String>,
}

impl ProxyOptions {
    /// A single-node proxy named `node_id` in front of `executor` (its REAPI and Load
    /// ports), with no extra flags.
    pub fn for_executor(executor: &ExecutorProcess, node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            backend: executor.grpc_addr(),
            backend_load: executor.ready_line().load,
            join: None,
            extra_args: Vec::new(),
            binary: None,
            log_filter: None,
        }
    }
}

/// A running `remesh-proxy serve`; stopped (SIGTERM, then SIGKILL, by pid) when dropped.
pub struct ProxyProcess {
    child: Child,
    ready: ProxyReadyLine,
    log: PathBuf,
    _log_dir: TempDir,
}

/// `remesh-proxy`, built beside `remesh-executor` (the harness builds every workspace
/// binary at once).
fn proxy_binary() -> anyhow::Result<PathBuf> {
    let path = executor_binary()?.with_file_name("remesh-proxy");
    if !path.is_file() {
        bail!("{} is missing", path.display());
    }
    Ok(path)
}

impl ProxyProcess {
    /// Starts a single-node proxy named `node_id` in front of `executor`, with `extra`
    /// flags appended.
    pub fn spawn_for(
        executor: &ExecutorProcess,
        node_id: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn(&ProxyOptions {
            extra_args: extra.iter().map(|arg| arg.to_string()).collect(),
            ..ProxyOptions::for_executor(executor, node_id)
        })
    }

    pub fn spawn(options: &ProxyOptions) -> anyhow::Result<Self> {
        let log_dir = tempfile::Builder::new().prefix("remesh-proxy-").tempdir()?;
        let log = log_dir.path().join("proxy.stderr");
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => proxy_binary()?,
        };
        let mut command = Command::new(binary);
        // The caller's environment must not reconfigure the proxy under test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REMESH_PROXY_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .args(["--node-id", &options.node_id])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--gossip-listen", "127.0.0.1:0"])
            // Loopback only, and the gossip port is nobody else's: no keyring needed.
            .arg("--insecure-plaintext-gossip")
            .args(["--backend", &format!("grpc://{}", options.backend)])
            .args(["--backend-mode", "executor"])
            .args([
                "--backend-load",
                &format!("grpc://{}", options.backend_load),
            ]);
        if let Some(join) = options.join {
            command.args(["--join", &join.to_string()]);
        }
        command.args(&options.extra_args);
        if let Some(filter) = &options.log_filter {
            command.env("RUST_LOG", filter);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
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
        let ready = ready_rx
            .recv_timeout(READY_TIMEOUT)
            .map_err(|_| {
                anyhow::anyhow!(
                    "remesh-proxy gave no ready line; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .and_then(|line| {
                serde_json::from_str(&line)
                    .with_context(|| format!("remesh-proxy ready line {line:?}"))
            });
        let ready = match ready {
            Ok(ready) => ready,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        Ok(Self {
            child,
            ready,
            log,
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

    /// Plain HTTP/1.0 GET on the admin port; returns the body.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.ready.admin)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        match response.split_once("\r\n\r\n") {
            Some((_, body)) => Ok(body.to_owned()),
            None => bail!("malformed admin response to {path}"),
        }
    }

    /// The sum of one Prometheus counter family's samples whose labels contain
    /// `label_filter` (e.g. `outcome="accepted"`).
    pub fn counter_sum(&self, family: &str, label_filter: &str) -> anyhow::Result<f64> {
        let text = self.admin_get("/metrics")?;
        Ok(text
            .lines()
            .filter(|line| line.starts_with(family) && line.contains(label_filter))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until this node sees `peers` other alive members that report capacity.
    pub fn wait_for_peers(&self, peers: usize, timeout: Duration) -> anyhow::Result<()> {
        poll_until_blocking("the proxy to see its peers", timeout, || {
            let Ok(body) = self.admin_get("/cluster") else {
                return Ok(None);
            };
            let report: serde_json::Value = serde_json::from_str(&body)?;
            let ready = report["members"].as_array().map_or(0, |members| {
                members
                    .iter()
                    .filter(|m| m["local"] == false && m["state"] == "alive")
                    .filter(|m| m["load"]["max_concurrency"].as_u64().unwrap_or(0) > 0)
                    .count()
            });
            Ok((ready >= peers).then_some(()))
        })
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(pid, Signal::SIGTERM);
            let child = &mut self.child;
            let exited = poll_until_blocking("remesh-proxy to exit", STOP_TIMEOUT, || {
                Ok(child.try_wait()?)
            });
            if exited.is_err() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !log.trim().is_empty() {
            eprintln!("--- remesh-proxy (pid {}) log ---\n{log}", self.child.id());
        }
    }
}
