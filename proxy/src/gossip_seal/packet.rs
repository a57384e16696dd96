//! The byte layout of a sealed gossip packet (see the parent module's doc).
//!
//! Owns the constants and the pure header encoding and splitting. It must never
//! decide whether a packet is authentic or fresh: a parsed header is untrusted
//! until the AEAD tag has been checked by the opener.

use std::time::{SystemTime, UNIX_EPOCH};

use super::keyring::KeyId;

/// First byte of every sealed packet. Lets a node tell a sealed packet from a
/// plaintext foca packet (or from anything else sent to the port) at a glance.
pub const MAGIC: u8 = 0xE5;

/// Second byte: the format version. Bump it when the layout or the AEAD changes.
pub const VERSION: u8 = 1;

/// Length of the random XChaCha20 nonce.
pub const NONCE_LEN: usize = 24;

/// Length of the Poly1305 tag appended to the ciphertext.
pub const TAG_LEN: usize = 16;

/// Bytes authenticated as associated data: magic, version, key id, timestamp.
pub const AAD_LEN: usize = 2 + 4 + 8;

/// Bytes before the ciphertext: the associated data plus the nonce.
pub const HEADER_LEN: usize = AAD_LEN + NONCE_LEN;

/// Bytes a sealed packet adds to its plaintext. The membership code subtracts it
/// from the UDP budget it gives foca: with foca's LAN default of 1,400 bytes on the
/// wire, foca's own `max_packet_size` must be at most `1400 - SEAL_OVERHEAD`.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest UDP payload over IPv4; nothing bigger can be sent, so nothing bigger
/// is sealed.
pub const MAX_DATAGRAM: usize = 65_507;

/// Largest plaintext [`super::Sealer::seal`] accepts.
pub const MAX_PLAINTEXT: usize = MAX_DATAGRAM - SEAL_OVERHEAD;

/// The unauthenticated view of a packet's header, plus where its ciphertext is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) key_id: KeyId,
    pub(crate) timestamp_ms: u64,
    pub(crate) nonce: [u8; NONCE_LEN],
}

/// Why a packet's framing is unusable, before any cryptography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Shorter than a header plus a tag.
    Truncated,
    /// Wrong magic or unknown version.
    BadVersion,
}

/// A packet split into its parts. Borrowed: splitting never allocates.
pub(crate) struct Frame<'a> {
    pub(crate) header: Header,
    pub(crate) aad: &'a [u8],
    pub(crate) ciphertext: &'a [u8],
    pub(crate) tag: &'a [u8; TAG_LEN],
}

impl Header {
    /// Writes the header (associated data then nonce) to the front of `out`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.nonce);
    }
}

/// Splits a received packet. The version is checked before the length so a
/// packet from a newer or foreign sender is reported as such even when short,
/// as long as it has its first two bytes.
pub(crate) fn split(packet: &[u8]) -> Result<Frame<'_>, FrameError> {
    match packet {
        [MAGIC, VERSION, ..] => {}
        [] | [MAGIC] => return Err(FrameError::Truncated),
        _ => return Err(FrameError::BadVersion),
    }
    if packet.len() < SEAL_OVERHEAD {
        return Err(FrameError::Truncated);
    }
    let (aad, rest) = packet.split_at(AAD_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let header = Header {
        key_id: KeyId(array(&aad[2..6])?),
        timestamp_ms: u64::from_be_bytes(array(&aad[6..14])?),
        nonce: array(nonce)?,
    };
    Ok(Frame {
        header,
        aad,
        ciphertext,
        tag: tag.try_into().map_err(|_| FrameError::Truncated)?,
    })
}

/// Milliseconds since the Unix epoch, the packet timestamp's unit. A clock set
/// before 1970 reads as 0 and one past year 584 million as `u64::MAX`: either way
/// its packets are refused as stale by correctly-set peers, which is the point.
pub(crate) fn unix_ms(now: SystemTime) -> u64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

/// Slice to array; the lengths are fixed by the splits above, so the error arm
/// is unreachable, but it is mapped rather than unwrapped to keep this panic-free.
fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], FrameError> {
    bytes.try_into().map_err(|_| FrameError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        Header {
            key_id: KeyId([1, 2, 3, 4]),
            timestamp_ms: 0x0102_0304_0506_0708,
            nonce: [9; NONCE_LEN],
        }
    }

    #[test]
    fn layout_matches_the_documented_offsets() {
        let mut out = Vec::new();
        sample_header().write(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(&out[..2], &[MAGIC, VERSION]);
        assert_eq!(&out[2..6], &[1, 2, 3, 4]);
        assert_eq!(&out[6..14], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[14..38], &[9; NONCE_LEN]);
        assert_eq!(SEAL_OVERHEAD, 54);
    }

    #[test]
    fn split_recovers_header_ciphertext_and_tag() {
        let mut packet = Vec::new();
        sample_header().write(&mut packet);
        packet.extend_from_slice(b"body");
        packet.extend_from_slice(&[7; TAG_LEN]);
        let frame = split(&packet).unwrap();
        assert_eq!(frame.header, sample_header());
        assert_eq!(frame.aad, &packet[..AAD_LEN]);
        assert_eq!(frame.ciphertext, b"body");
        assert_eq!(frame.tag, &[7; TAG_LEN]);
    }

    #[test]
    fn split_classifies_short_and_foreign_packets() {
        assert_eq!(split(&[]).err(), Some(FrameError::Truncated));
        assert_eq!(split(&[MAGIC]).err(), Some(FrameError::Truncated));
        assert_eq!(split(&[0x00]).err(), Some(FrameError::BadVersion));
        assert_eq!(split(&[MAGIC, 2]).err(), Some(FrameError::BadVersion));
        let short = [MAGIC, VERSION, 0, 0];
        assert_eq!(split(&short).err(), Some(FrameError::Truncated));
        let exactly_overhead = {
            let mut p = vec![MAGIC, VERSION];
            p.resize(SEAL_OVERHEAD, 0);
            p
        };
        let frame = split(&exactly_overhead).unwrap();
        assert!(frame.ciphertext.is_empty());
    }
}
