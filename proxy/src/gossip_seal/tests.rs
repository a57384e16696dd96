//! Behaviour of sealing and opening as the membership task will use them:
//! seal on one node, open on another, with injected clocks and seeded keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::packet::{HEADER_LEN, MAGIC, VERSION};
use super::*;

const T0_MS: u64 = 1_800_000_000_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn t0() -> SystemTime {
    at(T0_MS)
}

/// Distinct reproducible keys: `key(n)` is the same in every test run.
fn key(n: u64) -> [u8; KEY_LEN] {
    let ring = Keyring::generate_from_rng(&mut StdRng::seed_from_u64(n));
    let text = ring.export_secret_text();
    let line = text.lines().nth(1).unwrap();
    let mut out = [0u8; KEY_LEN];
    hex::decode_to_slice(&line[..64], &mut out).unwrap();
    out
}

fn ring(keys: &[u64]) -> Arc<Keyring> {
    Arc::new(Keyring::from_keys(keys.iter().map(|n| key(*n))).unwrap())
}

fn node(keys: &[u64]) -> GossipSeal {
    GossipSeal::new(ring(keys), OpenerConfig::default())
}

#[test]
fn round_trip_adds_exactly_the_overhead() {
    let a = node(&[1]);
    let mut b = node(&[1]);
    for len in [0usize, 1, 100, 1400 - SEAL_OVERHEAD] {
        let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let packet = a.seal(&plaintext, t0()).unwrap();
        assert_eq!(packet.len(), len + SEAL_OVERHEAD);
        assert_eq!(&packet[..2], &[MAGIC, VERSION]);
        if len > 16 {
            // Encrypted, not merely authenticated.
            let body = &packet[HEADER_LEN..HEADER_LEN + len];
            assert_ne!(body, &plaintext[..]);
        }
        assert_eq!(b.open(&packet, t0()).unwrap(), plaintext);
    }
    assert_eq!(a.stats().snapshot().sealed, 4);
    assert_eq!(b.stats().snapshot().opened, 4);
}

#[test]
fn every_key_opens_but_only_the_primary_seals() {
    let keys = ring(&[1, 2, 3]);
    let mut receiver = GossipSeal::new(keys.clone(), OpenerConfig::default());
    for (i, primary) in [1u64, 2, 3].into_iter().enumerate() {
        let sender = node(&[primary]);
        let packet = sender.seal(b"ping", t0()).unwrap();
        assert_eq!(receiver.open(&packet, t0()).unwrap(), b"ping");
        let stats = receiver.stats().snapshot();
        assert_eq!(stats.opened, i as u64 + 1);
        assert_eq!(stats.opened_by_secondary, i as u64);
    }

    // A ring seals with its first key only: its packet names that key, and a
    // node that holds only the second key cannot open it.
    let sender = GossipSeal::new(keys.clone(), OpenerConfig::default());
    let packet = sender.seal(b"ping", t0()).unwrap();
    assert_eq!(&packet[2..6], &keys.primary_id().0);
    for other in [2, 3] {
        let mut holder_of_secondary = node(&[other]);
        assert_eq!(
            holder_of_secondary.open(&packet, t0()),
            Err(OpenError::Forged)
        );
    }
    assert!(node(&[1]).open(&packet, t0()).is_ok());
}

#[test]
fn a_node_with_the_wrong_key_cannot_join() {
    let stranger = node(&[9]);
    let mut member = node(&[1, 2]);
    let packet = stranger.seal(b"join me", t0()).unwrap();
    assert_eq!(member.open(&packet, t0()), Err(OpenError::Forged));
    let stats = member.stats().snapshot();
    assert_eq!((stats.forged, stats.opened), (1, 0));
}

#[test]
fn a_changed_key_id_is_a_forgery_even_with_the_right_key_in_the_ring() {
    let sender = node(&[2]);
    let mut receiver = node(&[1, 2]);
    let mut packet = sender.seal(b"x", t0()).unwrap();
    // The id is authenticated, so changing it is a forgery even though the
    // right key is in the ring.
    packet[2] ^= 0xff;
    assert_eq!(receiver.open(&packet, t0()), Err(OpenError::Forged));
}

#[test]
fn every_single_bit_flip_is_refused() {
    let keys = ring(&[1, 2]);
    let stats = Arc::new(SealStats::default());
    let sealer = Sealer::new(keys.clone(), stats.clone());
    let mut opener = Opener::new(keys, OpenerConfig::default(), stats.clone());
    let packet = sealer
        .seal_with_nonce(b"alive n1", t0(), [7; packet::NONCE_LEN])
        .unwrap();
    let bits = packet.len() * 8;
    for bit in 0..bits {
        let mut flipped = packet.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let expected = if bit < 16 {
            OpenError::BadVersion
        } else {
            OpenError::Forged
        };
        assert_eq!(opener.open(&flipped, t0()), Err(expected), "bit {bit}");
    }
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.bad_version, 16);
    assert_eq!(snapshot.forged, bits as u64 - 16);
    // None of the forgeries touched the replay cache: the original still opens.
    assert_eq!(opener.replay_cache_len(), 0);
    assert_eq!(opener.open(&packet, t0()).unwrap(), b"alive n1");
}

#[test]
fn every_truncation_and_extension_is_refused_without_panic() {
    let sender = node(&[1]);
    let mut receiver = node(&[1]);
    let packet = sender.seal(b"suspect n2 incarnation 7", t0()).unwrap();
    for len in 0..packet.len() {
        let result = receiver.open(&packet[..len], t0());
        let expected = if len < SEAL_OVERHEAD {
            OpenError::Truncated
        } else {
            OpenError::Forged
        };
        assert_eq!(result, Err(expected), "length {len}");
    }
    let mut extended = packet.clone();
    extended.push(0);
    assert_eq!(receiver.open(&extended, t0()), Err(OpenError::Forged));
    assert!(receiver.open(&packet, t0()).is_ok());
}

#[test]
fn plaintext_and_foreign_packets_are_bad_version() {
    let mut receiver = node(&[1]);
    for junk in [&b"\x00\x01foca"[..], b"\xE5\x02", b"hello"] {
        assert_eq!(receiver.open(junk, t0()), Err(OpenError::BadVersion));
    }
    assert_eq!(receiver.stats().snapshot().bad_version, 3);
}

#[test]
fn a_replayed_packet_is_refused_while_fresh() {
    let sender = node(&[1]);
    let mut receiver = node(&[1]);
    let first = sender.seal(b"a", t0()).unwrap();
    let second = sender.seal(b"a", t0()).unwrap();
    assert_ne!(first, second, "fresh nonce per packet");
    assert!(receiver.open(&first, t0()).is_ok());
    assert!(receiver.open(&second, t0()).is_ok());
    assert_eq!(receiver.open(&first, t0()), Err(OpenError::Replayed));
    // Still refused later in the window, and after a keyring reload.
    receiver.set_keyring(ring(&[3, 1]));
    assert_eq!(
        receiver.open(&first, at(T0_MS + 29_000)),
        Err(OpenError::Replayed)
    );
    // Once out of the window it is stale instead, and its nonce was pruned.
    assert!(matches!(
        receiver.open(&first, at(T0_MS + 30_001)),
        Err(OpenError::Stale { .. })
    ));
    assert_eq!(receiver.stats().snapshot().replayed, 2);
}

#[test]
fn timestamps_outside_the_window_are_stale_inside_are_not() {
    let sender = node(&[1]);
    let mut receiver = node(&[1]);
    let window = DEFAULT_WINDOW.as_millis() as u64;
    for (sent, ok) in [
        (T0_MS - window - 1, false),
        (T0_MS - window, true),
        (T0_MS + window, true),
        (T0_MS + window + 1, false),
        (0, false),
        (u64::MAX, false),
    ] {
        let packet = sender
            .seal(b"x", UNIX_EPOCH + Duration::from_millis(sent))
            .unwrap();
        let result = receiver.open(&packet, t0());
        if ok {
            assert!(result.is_ok(), "sent {sent}: {result:?}");
        } else {
            assert_eq!(
                result,
                Err(OpenError::Stale {
                    sent_ms: sent,
                    now_ms: T0_MS
                })
            );
        }
    }
}

#[test]
fn the_window_is_configurable_and_stale_packets_are_not_remembered() {
    let keys = ring(&[1]);
    let config = OpenerConfig {
        window: Duration::from_secs(5),
        ..OpenerConfig::default()
    };
    let mut receiver = GossipSeal::new(keys.clone(), config);
    let sender = GossipSeal::new(keys, OpenerConfig::default());
    let packet = sender.seal(b"x", at(T0_MS + 6_000)).unwrap();
    assert!(matches!(
        receiver.open(&packet, t0()),
        Err(OpenError::Stale { .. })
    ));
    // The receiver's clock catches up: the same packet is now fresh, and was
    // not wrongly recorded as seen by the stale refusal.
    assert!(receiver.open(&packet, at(T0_MS + 2_000)).is_ok());
}

#[test]
fn a_forgery_reusing_a_real_nonce_does_not_block_the_real_packet() {
    let nonce = [42; packet::NONCE_LEN];
    let stats = Arc::new(SealStats::default());
    let real = Sealer::new(ring(&[1]), stats.clone())
        .seal_with_nonce(b"real", t0(), nonce)
        .unwrap();
    let fake = Sealer::new(ring(&[9]), stats.clone())
        .seal_with_nonce(b"fake", t0(), nonce)
        .unwrap();
    let mut opener = Opener::new(ring(&[1]), OpenerConfig::default(), stats);
    assert_eq!(opener.open(&fake, t0()), Err(OpenError::Forged));
    assert_eq!(opener.open(&real, t0()).unwrap(), b"real");
}

#[test]
fn replay_cache_is_bounded_and_evictions_do_not_allow_replays() {
    let keys = ring(&[1]);
    let stats = Arc::new(SealStats::default());
    let sealer = Sealer::new(keys.clone(), stats.clone());
    let config = OpenerConfig {
        replay_capacity: 64,
        ..OpenerConfig::default()
    };
    let mut opener = Opener::new(keys, config, stats.clone());
    // 2,000 distinct packets within one window, one millisecond apart.
    let packets: Vec<Vec<u8>> = (0..2_000u64)
        .map(|i| sealer.seal(&i.to_be_bytes(), at(T0_MS + i)).unwrap())
        .collect();
    for (i, packet) in packets.iter().enumerate() {
        assert!(
            opener.open(packet, at(T0_MS + i as u64)).is_ok(),
            "packet {i}"
        );
        assert!(opener.replay_cache_len() <= 64);
    }
    assert_eq!(stats.snapshot().replay_evicted, 2_000 - 64);
    let now = at(T0_MS + 2_000);
    for (i, packet) in packets.iter().enumerate() {
        let result = opener.open(packet, now);
        assert!(
            matches!(result, Err(OpenError::Replayed | OpenError::Stale { .. })),
            "packet {i} accepted twice: {result:?}"
        );
    }
}

#[test]
fn replay_cache_is_pruned_by_time() {
    let keys = ring(&[1]);
    let sealer = Sealer::new(keys.clone(), Arc::new(SealStats::default()));
    let config = OpenerConfig {
        window: Duration::from_secs(1),
        ..OpenerConfig::default()
    };
    let mut opener = Opener::new(keys, config, Arc::new(SealStats::default()));
    // One packet every 100 ms for a minute: only the last 2 s of nonces matter.
    for i in 0..600u64 {
        let now = at(T0_MS + i * 100);
        let packet = sealer.seal(b"hb", now).unwrap();
        assert!(opener.open(&packet, now).is_ok());
        assert!(opener.replay_cache_len() <= 21, "at {i}");
    }
}

#[test]
fn rotation_keeps_every_pair_of_nodes_talking() {
    // Each step is applied to one node at a time, as a rolling change would be;
    // after each single change every pair must still exchange packets.
    let steps: [&[u64]; 4] = [&[1], &[1, 2], &[2, 1], &[2]];
    let mut nodes = [node(steps[0]), node(steps[0]), node(steps[0])];
    let mut now_ms = T0_MS;
    for step in &steps[1..] {
        for changing in 0..nodes.len() {
            nodes[changing].set_keyring(ring(step));
            for from in 0..nodes.len() {
                for to in 0..nodes.len() {
                    now_ms += 1;
                    let packet = nodes[from].seal(b"gossip", at(now_ms)).unwrap();
                    let result = nodes[to].open(&packet, at(now_ms));
                    assert!(result.is_ok(), "step {step:?} {from}->{to}: {result:?}");
                }
            }
        }
    }
}

#[test]
fn oversized_plaintext_is_refused_not_truncated() {
    let sender = node(&[1]);
    let too_big = vec![0u8; MAX_PLAINTEXT + 1];
    assert_eq!(
        sender.seal(&too_big, t0()),
        Err(SealError::TooLarge {
            len: MAX_PLAINTEXT + 1,
            max: MAX_PLAINTEXT
        })
    );
    assert_eq!(sender.stats().snapshot().sealed, 0);
    assert_eq!(sender.seal(&too_big[1..], t0()).unwrap().len(), 65_507);
}

#[test]
fn debug_output_shows_ids_not_keys() {
    let seal = node(&[1, 2]);
    let debug = format!("{seal:?}");
    for n in [1, 2] {
        let secret = hex::encode(key(n));
        assert!(!debug.contains(&secret[..12]), "{debug}");
    }
    assert!(
        debug.contains(&ring(&[1]).primary_id().to_string()),
        "{debug}"
    );
}

#[test]
fn fuzz_entry_points_accept_anything() {
    let mut rng = StdRng::seed_from_u64(99);
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![MAGIC], vec![MAGIC, VERSION], vec![0xff; 80]];
    for len in [1usize, 10, 53, 54, 55, 200, 1400] {
        let mut bytes = vec![0u8; len];
        rand::Rng::fill_bytes(&mut rng, &mut bytes);
        inputs.push(bytes.clone());
        bytes[0] = MAGIC;
        if len > 1 {
            bytes[1] = VERSION;
        }
        inputs.push(bytes);
    }
    for input in &inputs {
        assert!(open_for_fuzzing(input).is_err());
        round_trip_for_fuzzing(input);
        parse_keyring_for_fuzzing(input);
    }
    parse_keyring_for_fuzzing("é\n#\u{0}\n".as_bytes());
}
