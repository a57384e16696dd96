//! `least-loaded`: the lowest (queued + executing) / max among nodes with spare
//! capacity, the local node preferred on ties; when every node is full, local
//! (queueing locally is the back-pressure that reaches the client).

use super::{PeerSelector, Snapshot};
use crate::route::Target;

pub struct LeastLoaded;

impl PeerSelector for LeastLoaded {
    fn select(&self, snapshot: &Snapshot, _: &str, _: u64) -> Vec<Target> {
        let mut spare: Vec<_> = snapshot
            .nodes()
            .filter(|node| node.load.has_spare_capacity())
            .collect();
        // Stable sort: equal utilisation keeps the order of `nodes()`, local first.
        spare.sort_by(|a, b| a.load.utilisation().total_cmp(&b.load.utilisation()));
        let mut targets: Vec<_> = spare.into_iter().map(|n| snapshot.target_of(n)).collect();
        if !targets.contains(&Target::Local) {
            targets.push(Target::Local);
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{node, peer};
    use super::*;

    fn snapshot(local: super::super::NodeLoad, peers: Vec<super::super::NodeLoad>) -> Snapshot {
        Snapshot { local, peers }
    }

    #[test]
    fn lowest_utilisation_with_spare_capacity_wins() {
        let s = snapshot(
            node("a", 0, 1, 1),
            vec![node("b", 0, 3, 4), node("c", 0, 1, 4), node("d", 5, 4, 4)],
        );
        assert_eq!(
            LeastLoaded.select(&s, "", 0),
            [peer("c"), peer("b"), Target::Local]
        );
    }

    #[test]
    fn local_wins_ties() {
        let s = snapshot(node("a", 0, 1, 4), vec![node("b", 0, 2, 8)]);
        assert_eq!(LeastLoaded.select(&s, "", 0)[0], Target::Local);
    }

    #[test]
    fn all_full_stays_local() {
        let s = snapshot(
            node("a", 9, 4, 4),
            vec![node("b", 1, 4, 4), node("c", 0, 0, 0)],
        );
        assert_eq!(LeastLoaded.select(&s, "", 0), [Target::Local]);
    }
}
