//! Sealed gossip: authenticated encryption of every SWIM packet between proxies.
//!
//! foca has no authentication of its own, so anyone who can reach the gossip
//! port could otherwise join the mesh, declare members dead or inject load
//! records. This module owns the wrapping of foca's packets: the membership task
//! calls [`GossipSeal::seal`] before `send_to` and [`GossipSeal::open`] after
//! `recv_from`. It must never do I/O or read a clock itself (callers pass `now`),
//! never decode what it carries, and never let key material reach a log.
//!
//! # Packet format (version 1)
//!
//! ```text
//! offset  size  field
//!      0     1  magic 0xE5
//!      1     1  version 0x01
//!      2     4  key id: first 4 bytes of SHA-256 of the sealing key
//!      6     8  timestamp: sender's wall clock, ms since the Unix epoch, big-endian
//!     14    24  nonce: random, fresh for every packet
//!     38     n  ciphertext (XChaCha20 of foca's packet, n = plaintext length)
//!   38+n    16  Poly1305 tag
//! ```
//!
//! The AEAD is XChaCha20-Poly1305 with bytes 0..14 (magic to timestamp) as
//! associated data, so the version, key id and timestamp are authenticated too;
//! the nonce is bound by the construction itself. [`SEAL_OVERHEAD`] is 54 bytes:
//! give foca `max_packet_size = 1400 - SEAL_OVERHEAD` to stay within 1,400 bytes
//! on the wire.
//!
//! The key id only says which key to try first; every key of the ring is tried
//! before a packet is declared forged, so a colliding or lying id costs time, not
//! correctness.
//!
//! # Checks on receipt, in order
//!
//! 1. framing: too short → [`OpenError::Truncated`]; wrong magic or version →
//!    [`OpenError::BadVersion`];
//! 2. authentication with each key → [`OpenError::Forged`] if none fits;
//! 3. timestamp within ± [`OpenerConfig::window`] (default 30 s) of `now` →
//!    else [`OpenError::Stale`];
//! 4. nonce not seen before → else [`OpenError::Replayed`] (the replay cache is
//!    bounded; see [`replay`] for what happens at capacity).
//!
//! Freshness depends on the nodes' wall clocks agreeing to well within the window:
//! run NTP (any Kubernetes node does).
//!
//! # Keys and rotation
//!
//! See [`keyring`] for the file format. The first key seals, every key opens. To
//! rotate: add the new key second on every node; then move it first on every
//! node; then, once [`SealStatsSnapshot::opened_by_secondary`] stays flat, remove
//! the old key. A node whose ring shares no key with the others has every packet
//! refused as forged, so it never joins.
//!
//! # Plaintext mode
//!
//! Whether to seal is the caller's decision. The intended shape is a config field
//! `gossip_keyring: Option<PathBuf>` and, in the membership task, an
//! `Option<GossipSeal>`: `Some` seals and opens every packet, `None` passes foca's
//! bytes through untouched. `None` should need an explicit opt-in
//! (e.g. `insecure_plaintext_gossip = true`) and be used only in tests or on a
//! network that is already encrypted and private. Sealed and plaintext nodes
//! cannot talk to each other: the sealed side drops plaintext packets as
//! `BadVersion` and foca rejects sealed ones as undecodable.
//!
//! # Use
//!
//! ```
//! use std::sync::Arc;
//! use std::time::SystemTime;
//! use remesh_proxy::gossip_seal::{GossipSeal, Keyring, OpenError, OpenerConfig};
//!
//! // In production: Keyring::load(path)?, shared by every node.
//! let keyring = Arc::new(Keyring::generate());
//! let alice = GossipSeal::new(keyring.clone(), OpenerConfig::default());
//! let mut bob = GossipSeal::new(keyring, OpenerConfig::default());
//!
//! let foca_packet = b"bytes foca asked to send";
//! let now = SystemTime::now();
//! let datagram = alice.seal(foca_packet, now)?; // then socket.send_to(&datagram, peer)
//!
//! // After recv_from: hand Ok bytes to foca, drop the datagram on Err.
//! assert_eq!(bob.open(&datagram, now)?, foca_packet);
//! assert_eq!(bob.open(&datagram, now), Err(OpenError::Replayed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`keyring`] — the keys, their file format, ids.
//! - [`packet`] — the byte layout and its constants.
//! - [`seal`] — [`Sealer`].
//! - [`open`] — [`Opener`], [`OpenError`], [`OpenerConfig`].
//! - [`replay`] — the bounded nonce cache.
//! - [`stats`] — [`SealStats`] counters.
//! - [`fuzzing`] — setup-free entry points for fuzz targets.

pub mod fuzzing;
pub mod keyring;
pub mod open;
pub mod packet;
pub mod replay;
pub mod seal;
pub mod stats;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

pub use fuzzing::{open_for_fuzzing, parse_keyring_for_fuzzing, round_trip_for_fuzzing};
pub use keyring::{KEY_LEN, KeyId, Keyring, KeyringError, MAX_KEYS};
pub use open::{DEFAULT_WINDOW, OpenError, Opener, OpenerConfig};
pub use packet::{MAX_PLAINTEXT, SEAL_OVERHEAD};
pub use replay::DEFAULT_REPLAY_CAPACITY;
pub use seal::{SealError, Sealer};
pub use stats::{SealStats, SealStatsSnapshot};

/// A sealer and an opener over one keyring, sharing one set of counters: what
/// the membership task holds (as `Option<GossipSeal>`, see the module doc).
pub struct GossipSeal {
    sealer: Sealer,
    opener: Opener,
    stats: Arc<SealStats>,
}

impl GossipSeal {
    /// Seals with `keyring`'s primary key and opens with all of its keys.
    pub fn new(keyring: Arc<Keyring>, config: OpenerConfig) -> Self {
        let stats = Arc::new(SealStats::default());
        Self {
            sealer: Sealer::new(keyring.clone(), stats.clone()),
            opener: Opener::new(keyring, config, stats.clone()),
            stats,
        }
    }

    /// See [`Sealer::seal`].
    pub fn seal(&self, plaintext: &[u8], now: SystemTime) -> Result<Vec<u8>, SealError> {
        self.sealer.seal(plaintext, now)
    }

    /// See [`Opener::open`].
    pub fn open(&mut self, packet: &[u8], now: SystemTime) -> Result<Vec<u8>, OpenError> {
        self.opener.open(packet, now)
    }

    /// Switches both directions to a reloaded keyring at once, keeping the
    /// replay cache and counters.
    pub fn set_keyring(&mut self, keyring: Arc<Keyring>) {
        self.sealer.set_keyring(keyring.clone());
        self.opener.set_keyring(keyring);
    }

    /// The counters, for the metrics layer.
    pub fn stats(&self) -> Arc<SealStats> {
        self.stats.clone()
    }
}

impl std::fmt::Debug for GossipSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipSeal")
            .field("keyring", self.sealer.keyring())
            .finish_non_exhaustive()
    }
}
