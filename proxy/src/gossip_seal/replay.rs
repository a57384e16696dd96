//! The replay cache: nonces of authenticated packets that are still fresh enough
//! to be accepted, so a second copy of the same packet is refused.
//!
//! Owns a bounded set of nonces ordered by when each stops mattering. It must
//! never hold more than its capacity, and must never be fed a nonce from a packet
//! that failed authentication (a stranger could otherwise fill it, or pre-empt a
//! real packet's nonce).
//!
//! # Bounds
//!
//! A packet stamped `t` is accepted while `now` is within `t ± window`, so its
//! nonce must be remembered until `t + window` (its *expiry*); after that, a
//! replay is refused as stale anyway and the entry is pruned.
//!
//! When more than `capacity` packets are fresh at once the entry expiring
//! soonest is dropped, and the cache raises a *horizon* to that entry's expiry:
//! from then on, any packet whose expiry is not later than the horizon is refused
//! (the opener reports it as stale). So an eviction never lets a replay through;
//! the cost is that a sustained rate above about `capacity / window` packets
//! per second (half that for a sender whose clock runs a full window ahead) shrinks the effective freshness window, and a peer whose clock lags
//! enough sees its packets refused. The `evicted` counter shows when this happens.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use super::packet::NONCE_LEN;

/// Default number of nonces remembered. With the default 30 s window and
/// synchronised clocks a nonce is kept about 30 s, so this absorbs about 1,000
/// accepted packets per second (500 in the worst case of skew) before the window
/// starts to shrink: far above SWIM's per-node rate, which does not grow with the
/// cluster. Costs about 3 MiB when full.
pub const DEFAULT_REPLAY_CAPACITY: usize = 32_768;

/// What the cache says about a packet's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen before: now remembered. `evicted` entries were dropped to make room.
    Fresh { evicted: usize },
    /// Seen within the window: refuse. Nothing changed.
    Replayed,
    /// Older than what the cache can still vouch for after evictions: refuse.
    /// Nothing changed.
    BeyondHorizon,
}

/// Bounded nonce memory; see the module doc.
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: HashSet<[u8; NONCE_LEN]>,
    by_expiry: BinaryHeap<Reverse<(u64, [u8; NONCE_LEN])>>,
    /// Packets with an expiry at or before this may have been forgotten early.
    horizon_ms: Option<u64>,
}

impl ReplayCache {
    /// `capacity` is clamped to at least 1: a cache that remembers nothing
    /// would let every replay through.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            // Grown on demand: an idle node does not pay for a full cache.
            seen: HashSet::new(),
            by_expiry: BinaryHeap::new(),
            horizon_ms: None,
        }
    }

    /// Checks `nonce` and, when fresh, remembers it until `expiry_ms`.
    pub(crate) fn check_and_insert(
        &mut self,
        nonce: [u8; NONCE_LEN],
        expiry_ms: u64,
        now_ms: u64,
    ) -> Verdict {
        self.prune(now_ms);
        if self.horizon_ms.is_some_and(|horizon| expiry_ms <= horizon) {
            return Verdict::BeyondHorizon;
        }
        if self.seen.contains(&nonce) {
            return Verdict::Replayed;
        }
        if self.seen.len() < self.capacity {
            self.remember(nonce, expiry_ms);
            return Verdict::Fresh { evicted: 0 };
        }
        // Full: forget whichever of the kept entries and the newcomer expires
        // first, and raise the horizon to it so it stays refused. Evicting before
        // inserting keeps both collections within `capacity` at all times.
        match self.by_expiry.peek() {
            Some(Reverse((soonest, _))) if *soonest < expiry_ms => {
                if let Some(Reverse((expiry, oldest))) = self.by_expiry.pop() {
                    self.seen.remove(&oldest);
                    self.raise_horizon(expiry);
                }
                self.remember(nonce, expiry_ms);
            }
            // The newcomer is the oldest: accept it once without storing it.
            _ => self.raise_horizon(expiry_ms),
        }
        Verdict::Fresh { evicted: 1 }
    }

    fn remember(&mut self, nonce: [u8; NONCE_LEN], expiry_ms: u64) {
        self.seen.insert(nonce);
        self.by_expiry.push(Reverse((expiry_ms, nonce)));
    }

    fn raise_horizon(&mut self, expiry_ms: u64) {
        self.horizon_ms = Some(self.horizon_ms.map_or(expiry_ms, |h| h.max(expiry_ms)));
    }

    /// Number of nonces remembered.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Forgets nonces whose packets would now be refused as stale anyway.
    fn prune(&mut self, now_ms: u64) {
        while let Some(Reverse((expiry, nonce))) = self.by_expiry.peek().copied() {
            if expiry >= now_ms {
                break;
            }
            self.by_expiry.pop();
            self.seen.remove(&nonce);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(i: u64) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..8].copy_from_slice(&i.to_le_bytes());
        n
    }

    #[test]
    fn second_sighting_is_a_replay_until_expiry() {
        let mut cache = ReplayCache::new(16);
        assert_eq!(
            cache.check_and_insert(nonce(1), 1_000, 0),
            Verdict::Fresh { evicted: 0 }
        );
        assert_eq!(
            cache.check_and_insert(nonce(1), 1_000, 500),
            Verdict::Replayed
        );
        assert_eq!(
            cache.check_and_insert(nonce(1), 1_000, 1_000),
            Verdict::Replayed
        );
        // Past its expiry the entry is pruned (the opener refuses such a packet
        // as stale before asking the cache).
        assert_eq!(
            cache.check_and_insert(nonce(2), 5_000, 1_001),
            Verdict::Fresh { evicted: 0 }
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn stays_bounded_under_100k_distinct_nonces() {
        for capacity in [1, 1_000, DEFAULT_REPLAY_CAPACITY] {
            let mut cache = ReplayCache::new(capacity);
            let mut evicted_total = 0;
            // All 100k are fresh at once: none expires during the run.
            for i in 0..100_000u64 {
                match cache.check_and_insert(nonce(i), 60_000 + i, 0) {
                    Verdict::Fresh { evicted } => evicted_total += evicted,
                    other => panic!("nonce {i}: {other:?}"),
                }
                assert!(cache.len() <= capacity);
                assert!(cache.by_expiry.len() <= capacity);
            }
            // Never even momentarily over capacity, so never grown past it.
            assert!(cache.by_expiry.capacity() <= capacity.next_power_of_two().max(4));
            assert_eq!(cache.len(), capacity);
            assert_eq!(evicted_total, 100_000 - capacity);
        }
    }

    #[test]
    fn an_evicted_nonce_cannot_be_replayed() {
        let mut cache = ReplayCache::new(2);
        cache.check_and_insert(nonce(1), 100, 0);
        cache.check_and_insert(nonce(2), 200, 0);
        assert_eq!(
            cache.check_and_insert(nonce(3), 300, 0),
            Verdict::Fresh { evicted: 1 }
        );
        // nonce 1 was forgotten, but the horizon still refuses it.
        assert_eq!(
            cache.check_and_insert(nonce(1), 100, 0),
            Verdict::BeyondHorizon
        );
        // A new packet just as old is refused too: the window has shrunk.
        assert_eq!(
            cache.check_and_insert(nonce(9), 100, 0),
            Verdict::BeyondHorizon
        );
        // Newer packets are still fine, and kept ones are still replays.
        assert_eq!(cache.check_and_insert(nonce(2), 200, 0), Verdict::Replayed);
        assert_eq!(
            cache.check_and_insert(nonce(4), 400, 0),
            Verdict::Fresh { evicted: 1 }
        );
        assert_eq!(
            cache.check_and_insert(nonce(2), 200, 0),
            Verdict::BeyondHorizon
        );
    }

    #[test]
    fn an_older_newcomer_at_capacity_is_accepted_once_then_refused() {
        let mut cache = ReplayCache::new(1);
        cache.check_and_insert(nonce(1), 500, 0);
        // Older than everything kept: it is the one evicted, so only the
        // horizon remembers it.
        assert_eq!(
            cache.check_and_insert(nonce(2), 100, 0),
            Verdict::Fresh { evicted: 1 }
        );
        assert_eq!(
            cache.check_and_insert(nonce(2), 100, 0),
            Verdict::BeyondHorizon
        );
        assert_eq!(cache.check_and_insert(nonce(1), 500, 0), Verdict::Replayed);
    }

    #[test]
    fn zero_capacity_is_clamped_to_one() {
        let mut cache = ReplayCache::new(0);
        cache.check_and_insert(nonce(1), 100, 0);
        assert_eq!(cache.check_and_insert(nonce(1), 100, 0), Verdict::Replayed);
    }
}
