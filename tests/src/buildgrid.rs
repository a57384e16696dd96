//! A cache-only BuildGrid server: an independent REAPI implementation (CAS, ByteStream
//! and ActionCache for instance `main`) that remesh must interoperate with, used as the
//! executors' backing cache.
//!
//! BuildGrid cannot bind port 0 and report it, so the harness picks a free loopback port,
//! fills in `shared/buildgrid/cache-only.yml.in` and polls until the port accepts. The
//! server runs in its own process group, which is signalled (and only it) on drop.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::locations::shared_dir;
use crate::polling::{free_loopback_port, poll_until_blocking};
use crate::reapi_client::Clients;

/// The only instance name the shared configuration defines.
pub const BUILDGRID_INSTANCE: &str = "main";

/// BuildGrid imports a lot of Python before it listens: 3–15 s here, more on a busy
/// machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where BuildGrid's `bgd` is: `REMESH_BGD`, else the venv `scripts/test` creates for CI
/// machines without the pre-installed one.
pub fn bgd_path() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("REMESH_BGD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/remesh-buildgrid/venv/bin/bgd"));
    if !path.is_file() {
        bail!(
            "BuildGrid's bgd was not found at {}: run scripts/test (it installs BuildGrid \
             0.9.1 into a venv) or set REMESH_BGD to an installed bgd",
            path.display()
        );
    }
    Ok(path)
}

/// A running BuildGrid; its process group is stopped when this drops.
pub struct BuildGridServer {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    _dir: TempDir,
}

impl BuildGridServer {
    /// Starts BuildGrid on a free loopback port with an empty disk CAS and waits until it
    /// accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let bgd = bgd_path()?;
        let template_path = shared_dir()?.join("buildgrid/cache-only.yml.in");
        let template = std::fs::read_to_string(&template_path)
            .with_context(|| format!("reading {}", template_path.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("remesh-buildgrid-")
            .tempdir()?;
        let cas_dir = dir.path().join("cas");
        std::fs::create_dir(&cas_dir)?;
        let port = free_loopback_port()?;
        let config = template
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &cas_dir.to_string_lossy());
        let config_path = dir.path().join("buildgrid.yml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("bgd.log");
        let log = File::create(&log_path)?;
        let child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group, so that stopping it also stops any helper process it forks,
            // and nothing else.
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {}", bgd.display()))?;
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_path,
            _dir: dir,
        };
        server.wait_until_listening()?;
        Ok(server)
    }

    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let addr = self.addr;
        let child = &mut self.child;
        let waited = poll_until_blocking("BuildGrid to accept connections", START_TIMEOUT, || {
            if let Some(status) = child.try_wait()? {
                bail!("BuildGrid exited ({status}) before it listened");
            }
            Ok(
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(drop),
            )
        });
        waited.with_context(|| format!("BuildGrid log:\n{}", self.log()))
    }

    /// The gRPC address (plain HTTP/2).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `grpc://127.0.0.1:PORT`, for Bazel's `--remote_cache`.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// Clients for instance `main`.
    pub async fn clients(&self) -> anyhow::Result<Clients> {
        Clients::connect(self.addr, BUILDGRID_INSTANCE).await
    }

    /// What BuildGrid logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for BuildGridServer {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        let child = &mut self.child;
        let stopped = poll_until_blocking("BuildGrid to stop", Duration::from_secs(10), || {
            Ok(child.try_wait()?)
        });
        if stopped.is_err() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = self.child.wait();
        }
        // Shown by libtest for failed tests only.
        let log = self.log();
        let start = (log.len().saturating_sub(8 << 10)..log.len())
            .find(|&index| log.is_char_boundary(index))
            .unwrap_or(log.len());
        let tail = &log[start..];
        eprintln!("--- BuildGrid log, last lines ---\n{tail}");
    }
}
