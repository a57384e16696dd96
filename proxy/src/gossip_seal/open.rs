//! Opening incoming gossip packets: authenticate, then check freshness, then
//! check for replays.
//!
//! Owns the order of those checks and the replay cache. It must never act on any
//! header field before the tag has been verified (the timestamp and key id are
//! attacker-controlled until then), and never let an unauthenticated packet
//! change anything but a drop counter.
//!
//! Authenticating first costs at most one AEAD attempt per key ([`MAX_KEYS`] at
//! most) per junk packet, and buys two things: a flipped timestamp bit is reported
//! as a forgery rather than as clock skew, and the `stale` and `replayed`
//! counters only ever count packets from key holders, so they mean something
//! (clock skew, a replaying network path) rather than noise from the internet.
//!
//! [`MAX_KEYS`]: super::keyring::MAX_KEYS

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Tag, XNonce};

use super::keyring::Keyring;
use super::packet::{self, FrameError, unix_ms};
use super::replay::{DEFAULT_REPLAY_CAPACITY, ReplayCache, Verdict};
use super::stats::SealStats;

/// Default freshness window: a packet may be this far in the past or future.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// How strict the opener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenerConfig {
    /// How far a packet's timestamp may differ from the receiver's clock, either
    /// way. Must exceed the worst clock skew between nodes plus network delay.
    /// Larger also keeps each nonce in the replay cache longer (up to
    /// `2 × window`), and lets an attacker on the path withhold a packet and
    /// deliver it once, up to `window` late; SWIM tolerates late messages
    /// (incarnation numbers order them), but a shorter window narrows that.
    pub window: Duration,
    /// Most nonces remembered. Must not be zero (it is clamped to one). See the
    /// replay module for what happens at capacity: the window shrinks, replays
    /// are still refused.
    pub replay_capacity: usize,
}

impl Default for OpenerConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// Why a packet was dropped. In every case the packet is discarded, its drop
/// counter is incremented, and nothing else changes: no member state, and (except
/// for an accepted packet) no replay-cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short to be a sealed packet. Dropped; only the counter changed.
    #[error("gossip packet truncated")]
    Truncated,
    /// Not a sealed packet of a version this node knows (a plaintext or foreign
    /// sender, or a newer remesh). Dropped; only the counter changed.
    #[error("gossip packet has an unknown magic or version")]
    BadVersion,
    /// No key in the ring authenticates it: a node with the wrong key, or a
    /// tampered packet. Dropped; only the counter changed.
    #[error("gossip packet failed authentication with every key in the ring")]
    Forged,
    /// Authentic but stamped outside the freshness window (clock skew, a delayed
    /// or replayed packet, or a window shrunk by a full replay cache). Dropped;
    /// only the counter changed.
    #[error("gossip packet stamped {sent_ms} ms, outside the window around {now_ms} ms")]
    Stale { sent_ms: u64, now_ms: u64 },
    /// Authentic and fresh but its nonce was already accepted: a replay.
    /// Dropped; only the counter changed.
    #[error("gossip packet replayed")]
    Replayed,
}

/// Opens incoming packets with any key of a keyring, refusing stale and
/// replayed ones. One per socket; `&mut` because it remembers nonces.
pub struct Opener {
    keyring: Arc<Keyring>,
    window_ms: u64,
    replay: ReplayCache,
    stats: Arc<SealStats>,
}

impl Opener {
    /// An opener counting into `stats` (share it with the [`super::Sealer`]).
    pub fn new(keyring: Arc<Keyring>, config: OpenerConfig, stats: Arc<SealStats>) -> Self {
        Self {
            keyring,
            window_ms: u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX),
            replay: ReplayCache::new(config.replay_capacity),
            stats,
        }
    }

    /// Authenticates and decrypts `packet` received at `now`; on success the
    /// plaintext is foca's packet. Allocates at most `packet.len()` bytes.
    pub fn open(&mut self, packet: &[u8], now: SystemTime) -> Result<Vec<u8>, OpenError> {
        let result = self.open_uncounted(packet, now);
        match &result {
            Ok(_) => {}
            Err(OpenError::Truncated) => self.stats.count_truncated(),
            Err(OpenError::BadVersion) => self.stats.count_bad_version(),
            Err(OpenError::Forged) => self.stats.count_forged(),
            Err(OpenError::Stale { .. }) => self.stats.count_stale(),
            Err(OpenError::Replayed) => self.stats.count_replayed(),
        }
        result
    }

    fn open_uncounted(&mut self, packet: &[u8], now: SystemTime) -> Result<Vec<u8>, OpenError> {
        let frame = packet::split(packet).map_err(|error| match error {
            FrameError::Truncated => OpenError::Truncated,
            FrameError::BadVersion => OpenError::BadVersion,
        })?;
        let nonce = XNonce::from(frame.header.nonce);
        let tag = Tag::from(*frame.tag);
        let mut plaintext = vec![0u8; frame.ciphertext.len()];
        let mut by_primary = None;
        for key in self.keyring.candidates(frame.header.key_id) {
            // Fresh copy per attempt: a failed attempt's effect on the buffer is
            // not specified by the AEAD interface.
            plaintext.copy_from_slice(frame.ciphertext);
            let attempt = key.cipher.decrypt_inout_detached(
                &nonce,
                frame.aad,
                (&mut plaintext[..]).into(),
                &tag,
            );
            if attempt.is_ok() {
                by_primary = Some(self.keyring.is_primary(key));
                break;
            }
        }
        let Some(by_primary) = by_primary else {
            return Err(OpenError::Forged);
        };

        // Authentic from here on: the header fields can be trusted.
        let sent_ms = frame.header.timestamp_ms;
        let now_ms = unix_ms(now);
        if sent_ms.abs_diff(now_ms) > self.window_ms {
            return Err(OpenError::Stale { sent_ms, now_ms });
        }
        let expiry_ms = sent_ms.saturating_add(self.window_ms);
        match self
            .replay
            .check_and_insert(frame.header.nonce, expiry_ms, now_ms)
        {
            Verdict::Fresh { evicted } => self.stats.count_evicted(evicted),
            Verdict::Replayed => return Err(OpenError::Replayed),
            Verdict::BeyondHorizon => return Err(OpenError::Stale { sent_ms, now_ms }),
        }
        self.stats.count_opened(by_primary);
        Ok(plaintext)
    }

    /// Switches to a reloaded keyring. The replay cache is kept: nonces already
    /// accepted stay refused whichever key sealed them.
    pub fn set_keyring(&mut self, keyring: Arc<Keyring>) {
        self.keyring = keyring;
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Nonces currently remembered (for tests and a debug gauge).
    pub fn replay_cache_len(&self) -> usize {
        self.replay.len()
    }
}
