//! The membership task's UDP socket, with every datagram sealed and opened by
//! `gossip_seal` (or passed through in the explicit plaintext mode).
//!
//! Owns the socket, the `GossipSeal` and following keyring reloads. It never
//! decodes a packet: foca gets exactly the bytes a peer's foca sent, or nothing.
//! Refused datagrams are counted by `SealStats` (outcome `forged`, `stale`,
//! `replayed`, `truncated`, `bad_version`), which `/metrics` reports.
//!
//! # Keyring reload
//! The keyring file is polled (metadata, every [`KEYRING_RELOAD_INTERVAL`]) rather
//! than reloaded on SIGHUP: a Kubernetes Secret volume changes under a running pod
//! without anyone to send a signal. A file that fails to parse is logged and the
//! previous ring stays in use.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::gossip_seal::{GossipSeal, Keyring, OpenError, SEAL_OVERHEAD};

/// How often the keyring file's metadata is checked for a change.
pub const KEYRING_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The membership socket, sealed or explicitly plaintext.
pub struct GossipSocket {
    socket: UdpSocket,
    seal: Option<Sealing>,
}

struct Sealing {
    seal: GossipSeal,
    updates: watch::Receiver<Arc<Keyring>>,
}

impl GossipSocket {
    /// Plaintext gossip: only with `insecure_plaintext_gossip`.
    pub fn plaintext(socket: UdpSocket) -> Self {
        Self { socket, seal: None }
    }

    /// Sealed gossip; `updates` carries reloaded keyrings (see [`watch_keyring`]).
    pub fn sealed(
        socket: UdpSocket,
        seal: GossipSeal,
        updates: watch::Receiver<Arc<Keyring>>,
    ) -> Self {
        Self {
            socket,
            seal: Some(Sealing { seal, updates }),
        }
    }

    /// The largest packet foca may produce so that a datagram on the wire stays
    /// within `wire_limit`.
    pub fn max_foca_packet(&self, wire_limit: usize) -> usize {
        match self.seal {
            Some(_) => wire_limit.saturating_sub(SEAL_OVERHEAD),
            None => wire_limit,
        }
    }

    /// Receives one datagram, raw. Cancel-safe (only `recv_from` is awaited).
    pub async fn recv_from(&self, buffer: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buffer).await
    }

    /// What foca should see of a received datagram, or why it is dropped.
    pub fn open<'a>(&mut self, datagram: &'a [u8]) -> Result<Cow<'a, [u8]>, OpenError> {
        match &mut self.seal {
            None => Ok(Cow::Borrowed(datagram)),
            Some(sealing) => {
                sealing.follow_reloads();
                sealing
                    .seal
                    .open(datagram, SystemTime::now())
                    .map(Cow::Owned)
            }
        }
    }

    /// Seals (when sealing) and sends one foca packet; returns the bytes sent.
    pub async fn send_to(&mut self, packet: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        match &mut self.seal {
            None => self.socket.send_to(packet, to).await,
            Some(sealing) => {
                sealing.follow_reloads();
                let datagram = sealing
                    .seal
                    .seal(packet, SystemTime::now())
                    .map_err(std::io::Error::other)?;
                self.socket.send_to(&datagram, to).await
            }
        }
    }
}

impl Sealing {
    fn follow_reloads(&mut self) {
        // A closed sender (watcher stopped at shutdown) keeps the current ring.
        if self.updates.has_changed().unwrap_or(false) {
            let keyring = self.updates.borrow_and_update().clone();
            tracing::info!(primary = %keyring.primary_id(), keys = keyring.len(), "gossip keyring reloaded");
            self.seal.set_keyring(keyring);
        }
    }
}

/// What identifies one version of the keyring file (followed through symlinks,
/// as Kubernetes swaps a `..data` link).
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Polls `path` every `interval` until `shutdown`, sending each keyring that
/// loads after a change. `initial` is the ring already loaded from it.
pub fn watch_keyring(
    path: PathBuf,
    initial: Arc<Keyring>,
    interval: Duration,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<Keyring>> {
    let (sender, receiver) = watch::channel(initial);
    tokio::spawn(async move {
        let mut seen = stamp(&path);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            let file = path.clone();
            match tokio::task::spawn_blocking(move || Keyring::load(&file)).await {
                Ok(Ok(keyring)) => {
                    let _ = sender.send(Arc::new(keyring));
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "gossip keyring reload failed; keeping the previous keys");
                }
                Err(error) => tracing::error!(%error, "gossip keyring reload task failed"),
            }
        }
    });
    receiver
}
