//! Entry points a cargo-fuzz target can call with raw bytes and no setup.
//!
//! Owns a fixed keyring and clock so every run is reproducible. It must never be
//! used to seal real traffic: its keys are public constants.
//!
//! These functions panic only when an invariant of the sealing code is broken
//! (an accepted forgery, a lost round trip); such a panic is the fuzzer's finding.
//! On any input the code under test itself must not panic.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::keyring::Keyring;
use super::open::{OpenError, Opener, OpenerConfig};
use super::packet::{MAX_PLAINTEXT, NONCE_LEN};
use super::seal::Sealer;
use super::stats::SealStats;

/// The fixed clock of the fuzz entry points (2023-11-14, in ms since the epoch).
const FUZZ_NOW_MS: u64 = 1_700_000_000_000;

fn fuzz_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(FUZZ_NOW_MS)
}

/// A two-key ring (primary `0x11…`, secondary `0x22…`) from public constants.
fn fuzz_keyring() -> Arc<Keyring> {
    match Keyring::from_keys([[0x11; 32], [0x22; 32]]) {
        Ok(ring) => Arc::new(ring),
        // Two distinct constant keys always form a valid ring.
        Err(error) => panic!("fuzz keyring invalid: {error}"),
    }
}

/// Opens `data` as a received packet with a fresh opener: exercises framing and
/// the authentication of arbitrary bytes. Returns what the opener said.
pub fn open_for_fuzzing(data: &[u8]) -> Result<Vec<u8>, OpenError> {
    let stats = Arc::new(SealStats::default());
    let mut opener = Opener::new(fuzz_keyring(), OpenerConfig::default(), stats);
    opener.open(data, fuzz_now())
}

/// Seals `data` (truncated to the sealable maximum), checks that it opens to the
/// same bytes, that a second copy is refused as a replay, and that the packet with
/// one bit flipped (position chosen from `data`) is refused.
pub fn round_trip_for_fuzzing(data: &[u8]) {
    let data = &data[..data.len().min(MAX_PLAINTEXT)];
    let ring = fuzz_keyring();
    let stats = Arc::new(SealStats::default());
    let sealer = Sealer::new(ring.clone(), stats.clone());
    let mut opener = Opener::new(ring, OpenerConfig::default(), stats);

    let mut nonce = [0u8; NONCE_LEN];
    for (slot, byte) in nonce.iter_mut().zip(data) {
        *slot = *byte;
    }
    let packet = match sealer.seal_with_nonce(data, fuzz_now(), nonce) {
        Ok(packet) => packet,
        Err(error) => panic!("sealing {} bytes failed: {error}", data.len()),
    };
    assert_eq!(opener.open(&packet, fuzz_now()).as_deref(), Ok(data));
    assert_eq!(opener.open(&packet, fuzz_now()), Err(OpenError::Replayed));

    let seed = data
        .iter()
        .fold(0usize, |acc, b| acc.wrapping_mul(31) ^ *b as usize);
    let bit = seed % (packet.len() * 8);
    let mut flipped = packet;
    flipped[bit / 8] ^= 1 << (bit % 8);
    let mut fresh = Opener::new(
        fuzz_keyring(),
        OpenerConfig::default(),
        Arc::new(SealStats::default()),
    );
    let result = fresh.open(&flipped, fuzz_now());
    assert!(
        matches!(result, Err(OpenError::Forged | OpenError::BadVersion)),
        "bit {bit} flipped, got {result:?}"
    );
}

/// Parses `data` as a keyring file; never panics, whatever the bytes.
pub fn parse_keyring_for_fuzzing(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Keyring::parse(text);
    }
}
