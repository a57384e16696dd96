//! Debian's nginx as a gRPC reverse proxy (`grpc_pass`), the yardstick the remesh proxy
//! is compared with.
//!
//! The configuration, pid file, logs and temporary paths all live in a fresh temporary
//! directory. nginx runs in the foreground (`daemon off`) so the harness owns the
//! master's pid; it is stopped with SIGTERM (fast shutdown: the master takes its
//! workers down), and SIGKILL only if it ignores that.

use std::fmt::Write as _;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::polling::{free_loopback_port, poll_until_blocking};

/// Where Debian installs nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// How nginx is set up in front of one gRPC backend.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    pub backend: SocketAddr,
    /// `worker_processes`.
    pub workers: usize,
    /// Idle upstream connections each worker keeps (`keepalive` in the upstream
    /// block). Without it nginx dials the backend afresh for every call.
    pub upstream_keepalive: usize,
}

/// A running nginx in front of `backend`, listening on h2c.
pub struct NginxGrpcProxy {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl NginxOptions {
    pub fn new(backend: SocketAddr) -> Self {
        Self {
            backend,
            workers: 2,
            upstream_keepalive: 64,
        }
    }

    /// The whole configuration file for a proxy listening on `port` under `dir`.
    pub fn config(&self, port: u16, dir: &Path) -> String {
        let dir = dir.display();
        let mut text = String::new();
        let _ = write!(
            text,
            "\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # One ByteStream Write is a single 256 MiB request body; nothing else is bounded.
    client_max_body_size 0;
    client_body_buffer_size 1m;
    grpc_buffer_size 1m;
    http2_max_concurrent_streams 1000;
    # A client connection carries many thousand calls in one benchmark round.
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_timeout 300s;
    send_timeout 300s;
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
    upstream executor {{
        server {backend};
        keepalive {keepalive};
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            grpc_pass grpc://executor;
        }}
    }}
}}
",
            workers = self.workers,
            backend = self.backend,
            keepalive = self.upstream_keepalive,
        );
        text
    }

    /// Writes the configuration, starts nginx and waits until it accepts connections.
    pub fn spawn(&self) -> anyhow::Result<NginxGrpcProxy> {
        if !Path::new(NGINX).is_file() {
            bail!("{NGINX} is not installed");
        }
        let dir = tempfile::Builder::new().prefix("remesh-nginx-").tempdir()?;
        // Workers run as an unprivileged user when started by root: they must be able
        // to reach their temporary paths.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let port = free_loopback_port()?;
        let config: PathBuf = dir.path().join("nginx.conf");
        std::fs::write(&config, self.config(port, dir.path()))?;
        let prefix = format!("{}/", dir.path().display());
        let early_log = dir.path().join("early.log");
        let mut child = Command::new(NGINX)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(&early_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("stderr"))?)
            .spawn()
            .context("starting nginx")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let waited = poll_until_blocking("nginx to listen", Duration::from_secs(20), || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
                );
            }
            Ok(std::net::TcpStream::connect(addr).ok().map(|_| ()))
        });
        let proxy = NginxGrpcProxy { child, addr, dir };
        waited?;
        Ok(proxy)
    }
}

impl NginxGrpcProxy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of nginx's error log, for reports.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxGrpcProxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let child = &mut self.child;
            let exited = poll_until_blocking("nginx to exit", Duration::from_secs(10), || {
                Ok(child.try_wait()?)
            });
            if exited.is_err() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_keeps_everything_in_its_directory() {
        let options = NginxOptions::new(SocketAddr::from(([127, 0, 0, 1], 8980)));
        let text = options.config(9000, Path::new("/tmp/x"));
        assert!(text.contains("listen 127.0.0.1:9000 http2;"), "{text}");
        assert!(text.contains("server 127.0.0.1:8980;"), "{text}");
        assert!(text.contains("grpc_pass grpc://executor;"), "{text}");
        assert!(text.contains("daemon off;"), "{text}");
        for line in text
            .lines()
            .filter(|line| line.contains("_path ") || line.starts_with("pid"))
        {
            assert!(line.contains("/tmp/x/"), "{line}");
        }
    }
}
