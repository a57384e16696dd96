//! `affinity`: rendezvous (highest random weight) hashing on the action digest, with
//! bounded load.
//!
//! Every node scores `hash(node_id, action)`; the highest score owns the action, so
//! the same action lands on the same node from every proxy (duplicates merge there and
//! its tier-1 cache stays warm), and a node joining or leaving moves only its own
//! share. A node with a free runner always qualifies; a busy one is skipped while its
//! load exceeds `load_factor` times its fair share of the cluster's load (counting the
//! new action), so a hot key cannot pile onto one node.

use super::{NodeLoad, PeerSelector, Snapshot};
use crate::route::Target;

pub struct RendezvousAffinity {
    /// c ≥ 1: how far above its fair share a node's load may go.
    pub load_factor: f64,
}

/// A stable 64-bit score (FNV-1a then a finaliser): identical on every node and build.
pub fn score(node_id: &str, action_hash: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node_id.bytes().chain([0xff]).chain(action_hash.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's weak low bits.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

impl RendezvousAffinity {
    /// Whether `node` may take one more action: a runner is free, or (its load + 1)
    /// stays within `load_factor` times its capacity's share of (all load + 1).
    fn within_bound(&self, node: &NodeLoad, total_pending: u64, total_capacity: u64) -> bool {
        if node.load.max_concurrency == 0 || total_capacity == 0 {
            return false;
        }
        let pending = u64::from(node.load.queued + node.load.executing);
        let share = f64::from(node.load.max_concurrency) / total_capacity as f64;
        let fair = (self.load_factor * (total_pending + 1) as f64 * share).ceil();
        // At low load the fair share rounds to a single action; a node with idle
        // runners is never "overloaded", so its own capacity is the floor.
        let allowed = fair.max(f64::from(node.load.max_concurrency));
        (pending + 1) as f64 <= allowed
    }
}

impl PeerSelector for RendezvousAffinity {
    fn select(&self, snapshot: &Snapshot, action_hash: &str, _: u64) -> Vec<Target> {
        let total_pending: u64 = snapshot
            .nodes()
            .map(|n| u64::from(n.load.queued + n.load.executing))
            .sum();
        let total_capacity: u64 = snapshot
            .nodes()
            .map(|n| u64::from(n.load.max_concurrency))
            .sum();
        let mut ranked: Vec<_> = snapshot
            .nodes()
            .filter(|node| self.within_bound(node, total_pending, total_capacity))
            .map(|node| (score(node.node_id.as_str(), action_hash), node))
            .collect();
        ranked.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
        let mut targets: Vec<_> = ranked
            .into_iter()
            .map(|(_, node)| snapshot.target_of(node))
            .collect();
        if !targets.contains(&Target::Local) {
            targets.push(Target::Local);
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::node;
    use super::*;

    fn policy() -> RendezvousAffinity {
        RendezvousAffinity { load_factor: 1.25 }
    }

    fn idle_cluster(local: &str) -> Snapshot {
        let all = ["a", "b", "c", "d"];
        Snapshot {
            local: node(local, 0, 0, 4),
            peers: all
                .iter()
                .filter(|id| **id != local)
                .map(|id| node(id, 0, 0, 4))
                .collect(),
        }
    }

    fn owner(targets: &[Target], local: &str) -> String {
        match &targets[0] {
            Target::Local => local.to_owned(),
            Target::Peer(id) => id.to_string(),
        }
    }

    #[test]
    fn every_node_picks_the_same_owner_and_owners_spread() {
        let mut owners = std::collections::HashMap::new();
        for i in 0..400 {
            let action = format!("{i:064x}");
            let picks: Vec<_> = ["a", "b", "c", "d"]
                .iter()
                .map(|local| owner(&policy().select(&idle_cluster(local), &action, 0), local))
                .collect();
            assert!(
                picks.windows(2).all(|w| w[0] == w[1]),
                "{action}: {picks:?}"
            );
            *owners.entry(picks[0].clone()).or_insert(0) += 1;
        }
        // 400 actions over 4 nodes: each gets a fair share, give or take.
        assert_eq!(owners.len(), 4);
        assert!(
            owners.values().all(|&n| (60..=140).contains(&n)),
            "{owners:?}"
        );
    }

    #[test]
    fn an_overloaded_owner_is_skipped() {
        let action = "f".repeat(64);
        let idle = idle_cluster("a");
        let first = owner(&policy().select(&idle, &action, 0), "a");
        // Load the owner far beyond its share.
        let mut busy = idle.clone();
        for n in busy.nodes().cloned().collect::<Vec<_>>() {
            if n.node_id.as_str() == first {
                let loaded = node(&first, 10, 4, 4);
                if busy.local.node_id == n.node_id {
                    busy.local = loaded;
                } else if let Some(p) = busy.peers.iter_mut().find(|p| p.node_id == n.node_id) {
                    *p = loaded;
                }
            }
        }
        let second = owner(&policy().select(&busy, &action, 0), "a");
        assert_ne!(first, second);
    }

    #[test]
    fn scores_are_stable() {
        // Fixed values: a change here would split a mixed-version cluster's owners.
        assert_eq!(score("a", "x"), score("a", "x"));
        assert_ne!(score("a", "x"), score("b", "x"));
        assert_ne!(score("ab", "x"), score("a", "bx"));
    }
}
