//! Spawning the real `remesh-executor` binary and stopping it again.
//!
//! The executor binds port 0 on loopback for all three of its sockets and announces the
//! addresses in one JSON line on stdout; the harness reads that line with a deadline.
//! Its stderr (the log) goes to a file that is printed when a test fails, so a failure
//! shows what the executor said. The process is killed by pid when the handle drops.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use tempfile::TempDir;

use crate::locations::executor_binary;
use crate::polling::poll_until_blocking;
use crate::reapi_client::Clients;

/// How long a starting executor may take to print its ready line. Opening storage
/// indexes the CAS, which is quick for test-sized data dirs; a debug build on a busy
/// 2-core machine is the slow part.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The ready line `remesh-executor` prints on stdout once it serves.
#[derive(Debug, Clone, Deserialize)]
pub struct ReadyLine {
    pub ready: String,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub load: SocketAddr,
}

/// How to start an executor. Defaults: every socket on `127.0.0.1:0`, a fresh
/// temporary data dir, no environment variables of the caller's `REMESH_EXECUTOR_*`.
#[derive(Debug, Default, Clone)]
pub struct ExecutorOptions {
    data_dir: Option<PathBuf>,
    args: Vec<OsString>,
}

/// What a run that was expected to end (a bad configuration) left behind.
#[derive(Debug)]
pub struct ExitReport {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ExecutorOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `dir` as the data dir (the caller owns it: it outlives the process, which
    /// is what a restart test needs).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Adds a command-line argument after the harness's own.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// `--backing-cache grpc://ADDR --backing-instance-name INSTANCE`.
    pub fn backing_cache(self, addr: SocketAddr, instance_name: &str) -> Self {
        self.arg("--backing-cache")
            .arg(format!("grpc://{addr}"))
            .arg("--backing-instance-name")
            .arg(instance_name)
    }

    /// Starts the executor and waits for its ready line.
    pub fn spawn(self) -> anyhow::Result<ExecutorProcess> {
        let (mut command, data_dir, owned_data_dir, log_dir) = self.command()?;
        let stderr_path = log_dir.path().join("executor.stderr");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("spawning remesh-executor")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        // The executor may print more later; keep draining so that it never blocks on
        // a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = ready_tx.send(line);
            }
            for _ in lines.by_ref() {}
        });
        let mut process = ExecutorProcess {
            child,
            ready: None,
            data_dir,
            _owned_data_dir: owned_data_dir,
            stderr_path,
            _log_dir: log_dir,
        };
        let line = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "remesh-executor printed no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                process.stderr_tail()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed: it is exiting; bounded anyway, like every wait here.
                let child = &mut process.child;
                let status = poll_until_blocking("remesh-executor to exit", READY_TIMEOUT, || {
                    Ok(child.try_wait()?)
                })?;
                bail!(
                    "remesh-executor exited ({status}) before its ready line; stderr:\n{}",
                    process.stderr_tail()
                )
            }
        };
        let ready: ReadyLine = serde_json::from_str(&line)
            .with_context(|| format!("the first stdout line is not a ready line: {line:?}"))?;
        if ready.ready != "remesh-executor" {
            bail!("unexpected ready line {line:?}");
        }
        process.ready = Some(ready);
        Ok(process)
    }

    /// Runs an executor that is expected to stop on its own (refusing its configuration)
    /// and returns how it ended; kills it and fails if it is still running after
    /// `timeout`.
    pub fn run_to_exit(self, timeout: Duration) -> anyhow::Result<ExitReport> {
        let (mut command, _data_dir, _owned, log_dir) = self.command()?;
        let stdout_path = log_dir.path().join("stdout");
        let stderr_path = log_dir.path().join("stderr");
        let mut child = command
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("spawning remesh-executor")?;
        let waited =
            poll_until_blocking("remesh-executor to exit", timeout, || Ok(child.try_wait()?));
        let status = match waited {
            Ok(status) => status,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        Ok(ExitReport {
            status,
            stdout: std::fs::read_to_string(&stdout_path)?,
            stderr: std::fs::read_to_string(&stderr_path)?,
        })
    }

    fn command(self) -> anyhow::Result<(Command, PathBuf, Option<TempDir>, TempDir)> {
        let binary = executor_binary()?;
        let (data_dir, owned) = match self.data_dir {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::Builder::new().prefix("remesh-data-").tempdir()?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let log_dir = tempfile::Builder::new().prefix("remesh-log-").tempdir()?;
        let mut command = Command::new(binary);
        // The caller's environment must not reconfigure the executor under test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REMESH_EXECUTOR_") {
                command.env_remove(name);
            }
        }
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--load-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&self.args)
            .stdin(Stdio::null());
        Ok((command, data_dir, owned, log_dir))
    }
}

/// A running `remesh-executor`; killed (SIGKILL, by pid) when dropped, after which the
/// end of its log is printed (libtest shows it for failed tests only).
pub struct ExecutorProcess {
    child: Child,
    ready: Option<ReadyLine>,
    data_dir: PathBuf,
    _owned_data_dir: Option<TempDir>,
    stderr_path: PathBuf,
    _log_dir: TempDir,
}

impl ExecutorProcess {
    /// Starts an executor with the default options.
    pub fn spawn() -> anyhow::Result<Self> {
        ExecutorOptions::new().spawn()
    }

    pub fn ready_line(&self) -> &ReadyLine {
        self.ready
            .as_ref()
            .expect("set before the process is handed out")
    }

    /// The REAPI gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.ready_line().grpc
    }

    /// `grpc://127.0.0.1:PORT`, the form Bazel's `--remote_executor` takes.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.grpc_addr())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Typed clients for instance `instance_name`.
    pub async fn clients(&self, instance_name: &str) -> anyhow::Result<Clients> {
        Clients::connect(self.grpc_addr(), instance_name).await
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        kill(pid, Signal::SIGTERM).context("sending SIGTERM")?;
        let child = &mut self.child;
        poll_until_blocking("remesh-executor to exit after SIGTERM", timeout, || {
            Ok(child.try_wait()?)
        })
        .with_context(|| format!("stderr:\n{}", self.stderr_tail()))
    }

    /// The end of the executor's log, for failure messages.
    pub fn stderr_tail(&self) -> String {
        const TAIL: u64 = 8 << 10;
        let mut bytes = Vec::new();
        if let Ok(mut file) = File::open(&self.stderr_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
            let _ = file.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for ExecutorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // libtest shows a test's output only when it fails (or with --nocapture), and a
        // test returning Err is not panicking: print unconditionally.
        eprintln!(
            "--- remesh-executor (pid {}) stderr, last lines ---\n{}",
            self.child.id(),
            self.stderr_tail()
        );
    }
}
