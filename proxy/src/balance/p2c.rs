//! `p2c`: local first, with hysteresis, then the power of two choices.
//!
//! While the local node has spare capacity, work stays local: gossip about peers is up
//! to a heartbeat old, and if every node sent its overflow to the one peer that looked
//! idle a second ago, that peer would drown. Once local is full, two random peers with
//! spare capacity are compared and the less loaded one is chosen, but only if it is
//! clearly (by `hysteresis`) less loaded than local; otherwise local queues it.

use super::{PeerSelector, Snapshot};
use crate::route::Target;

pub struct PowerOfTwoChoices {
    /// How much lower (in utilisation) a peer must be than local to be worth a hop.
    pub hysteresis: f64,
}

impl Default for PowerOfTwoChoices {
    fn default() -> Self {
        Self { hysteresis: 0.25 }
    }
}

impl PeerSelector for PowerOfTwoChoices {
    fn select(&self, snapshot: &Snapshot, _: &str, random: u64) -> Vec<Target> {
        if snapshot.local.load.has_spare_capacity() {
            return vec![Target::Local];
        }
        let spare: Vec<_> = snapshot
            .peers
            .iter()
            .filter(|peer| peer.load.has_spare_capacity())
            .collect();
        let picked = match spare.len() {
            0 => return vec![Target::Local],
            1 => vec![spare[0]],
            len => {
                // Two distinct indices from one random number.
                let first = (random % len as u64) as usize;
                let offset = 1 + ((random >> 32) % (len as u64 - 1)) as usize;
                let second = (first + offset) % len;
                let mut two = vec![spare[first], spare[second]];
                two.sort_by(|a, b| a.load.utilisation().total_cmp(&b.load.utilisation()));
                two
            }
        };
        let local = snapshot.local.load.utilisation();
        let mut targets: Vec<_> = picked
            .into_iter()
            .filter(|peer| peer.load.utilisation() + self.hysteresis <= local)
            .map(|peer| snapshot.target_of(peer))
            .collect();
        targets.push(Target::Local);
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{node, peer};
    use super::*;

    #[test]
    fn local_with_spare_capacity_keeps_the_work() {
        let s = Snapshot {
            local: node("a", 0, 3, 4),
            peers: vec![node("b", 0, 0, 4)],
        };
        assert_eq!(
            PowerOfTwoChoices::default().select(&s, "", 7),
            [Target::Local]
        );
    }

    #[test]
    fn full_local_sends_to_the_better_of_two() {
        let s = Snapshot {
            local: node("a", 2, 4, 4),
            peers: vec![node("b", 0, 3, 4), node("c", 0, 1, 4), node("d", 4, 4, 4)],
        };
        let policy = PowerOfTwoChoices::default();
        // Whatever two of {b, c} are drawn, c (the idler) comes first.
        for random in [0u64, 1, 2, 3, 1 << 32, (1 << 32) + 1, u64::MAX] {
            let targets = policy.select(&s, "", random);
            assert_eq!(targets[0], peer("c"), "random {random}");
            assert_eq!(targets.last(), Some(&Target::Local));
            assert!(!targets.contains(&peer("d")));
        }
    }

    #[test]
    fn hysteresis_keeps_work_local_when_peers_are_barely_better() {
        let s = Snapshot {
            local: node("a", 0, 4, 4),
            peers: vec![node("b", 0, 7, 8)],
        };
        // b is at 0.875 against local's 1.0: not worth a hop.
        assert_eq!(
            PowerOfTwoChoices::default().select(&s, "", 0),
            [Target::Local]
        );
    }
}
