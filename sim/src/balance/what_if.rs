//! A policy the proxy does not have, simulated to show what would fix the overflow
//! case: when every node is full, `least-loaded` and `p2c` keep the action local, so a
//! small entry node queues a burst alone. This one always picks the lowest
//! utilisation, full or not (local on ties): the queue goes where it drains fastest.

use remesh_proxy::balance::{PeerSelector, Snapshot};
use remesh_proxy::route::Target;

pub struct LowestUtilisation;

impl PeerSelector for LowestUtilisation {
    fn select(&self, snapshot: &Snapshot, _: &str, _: u64) -> Vec<Target> {
        let mut nodes: Vec<_> = snapshot.nodes().collect();
        // Stable: local (first in `nodes()`) wins ties.
        nodes.sort_by(|a, b| a.load.utilisation().total_cmp(&b.load.utilisation()));
        nodes
            .into_iter()
            .map(|node| {
                if node.node_id == snapshot.local.node_id {
                    Target::Local
                } else {
                    Target::Peer(node.node_id.clone())
                }
            })
            .collect()
    }
}
