//! The processes `remesh-proxy up` starts: each spawned with its log file, its JSON
//! ready line read with a deadline, its exit reported on a channel, and all of them
//! stopped by pid (SIGTERM, then SIGKILL after a grace period). Nothing here kills a
//! process it did not start.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// How long a child may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long children get to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A child's pid and how it exited.
pub type Exit = (u32, std::process::ExitStatus);

/// The children, by pid, and a channel on which each reports its exit.
pub struct Children {
    /// Name by pid of every child not yet seen to exit.
    pub running: HashMap<u32, String>,
    exits: mpsc::UnboundedSender<Exit>,
}

impl Children {
    /// No children yet, and the receiver on which their exits will arrive.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Exit>) {
        let (exits, receiver) = mpsc::unbounded_channel();
        let children = Self {
            running: HashMap::new(),
            exits,
        };
        (children, receiver)
    }

    /// Spawns `command`, reads its first stdout line as JSON, keeps draining stdout.
    pub async fn spawn_ready<T: for<'de> Deserialize<'de>>(
        &mut self,
        name: String,
        command: &mut Command,
        log: &Path,
    ) -> anyhow::Result<(u32, T)> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("child has no pid")?;
        let stdout = child.stdout.take().context("child stdout")?;
        self.running.insert(pid, name.clone());
        let exits = self.exits.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = exits.send((pid, status));
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .with_context(|| {
                format!(
                    "{name} printed no ready line within {READY_TIMEOUT:?}; see {}",
                    log.display()
                )
            })??
            .with_context(|| format!("{name} exited before it was ready; see {}", log.display()))?;
        let ready =
            serde_json::from_str(&line).with_context(|| format!("{name} ready line {line:?}"))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((pid, ready))
    }

    /// SIGTERM to every child still running, then SIGKILL to those that outlive the
    /// grace period.
    pub async fn stop_all(&mut self, exits: &mut mpsc::UnboundedReceiver<Exit>) {
        for pid in self.running.keys() {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, exits.recv()).await {
                Ok(Some((pid, _))) => {
                    self.running.remove(&pid);
                }
                Ok(None) => break,
                Err(_) => {
                    for (pid, name) in &self.running {
                        eprintln!("{name} (pid {pid}) ignored SIGTERM; killing it");
                        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                    }
                    break;
                }
            }
        }
    }
}
