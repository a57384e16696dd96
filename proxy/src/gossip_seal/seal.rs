//! Sealing outgoing gossip packets with the keyring's primary key.
//!
//! Owns building a sealed packet: header, fresh random nonce, ciphertext and tag.
//! It must never reuse a nonce (each comes from a CSPRNG, 192 bits, so random
//! choice is safe) and never seal with any key but the primary.

use std::sync::Arc;
use std::time::SystemTime;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::AeadInOut;
use rand::Rng;

use super::keyring::Keyring;
use super::packet::{
    AAD_LEN, HEADER_LEN, Header, MAX_PLAINTEXT, NONCE_LEN, SEAL_OVERHEAD, unix_ms,
};
use super::stats::SealStats;

/// Why a packet could not be sealed. Nothing was counted or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The plaintext would not fit in one UDP datagram once sealed. foca's
    /// `max_packet_size` should have prevented this. Nothing changed.
    #[error("gossip plaintext of {len} bytes exceeds the sealable maximum of {max}")]
    TooLarge { len: usize, max: usize },
    /// The AEAD refused to encrypt (only possible for lengths far beyond a
    /// datagram, so not expected). Nothing changed.
    #[error("gossip packet encryption failed")]
    Cipher,
}

/// Seals outgoing packets with the primary key of a keyring.
pub struct Sealer {
    keyring: Arc<Keyring>,
    stats: Arc<SealStats>,
}

impl Sealer {
    /// A sealer counting into `stats` (share it with the [`super::Opener`]).
    pub fn new(keyring: Arc<Keyring>, stats: Arc<SealStats>) -> Self {
        Self { keyring, stats }
    }

    /// Seals `plaintext` stamped with `now`, using a nonce from the thread-local
    /// CSPRNG.
    pub fn seal(&self, plaintext: &[u8], now: SystemTime) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        self.seal_with_nonce(plaintext, now, nonce)
    }

    /// Seals with a caller-chosen nonce. Only for tests and fuzzing, where the
    /// output must be reproducible: a nonce must never be used twice with a key.
    pub fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        now: SystemTime,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT,
            });
        }
        let key = self.keyring.primary();
        let header = Header {
            key_id: key.id,
            timestamp_ms: unix_ms(now),
            nonce,
        };
        let mut packet = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        header.write(&mut packet);
        packet.extend_from_slice(plaintext);
        let (head, body) = packet.split_at_mut(HEADER_LEN);
        let aad = &head[..AAD_LEN];
        let tag = key
            .cipher
            .encrypt_inout_detached(&XNonce::from(nonce), aad, body.into())
            .map_err(|_| SealError::Cipher)?;
        packet.extend_from_slice(&tag);
        self.stats.count_sealed();
        Ok(packet)
    }

    /// Switches to a reloaded keyring; the next packet uses its primary.
    pub fn set_keyring(&mut self, keyring: Arc<Keyring>) {
        self.keyring = keyring;
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }
}
