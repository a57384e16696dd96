//! Balancing: which node an Execute goes to.
//!
//! A `PeerSelector` is a pure function of a load snapshot (and, for randomised
//! policies, a random number the caller supplies): no clock, no I/O, no shared state.
//! The router and a simulator of a thousand nodes drive the very same code. Each
//! policy returns targets best first; the router tries them in order and falls back
//! to the local node.

pub mod affinity;
pub mod least_loaded;
pub mod p2c;

use crate::config::Policy;
use crate::load::LoadRecord;
use crate::operation_name::NodeId;
use crate::route::Target;

/// One node's load as the balancer sees it (own forwards already added).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    pub node_id: NodeId,
    pub load: LoadRecord,
}

/// This node and the peers that may take work now (alive, not leaving, load known,
/// not recently failing).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub local: NodeLoad,
    pub peers: Vec<NodeLoad>,
}

impl Snapshot {
    /// Every node, local first.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeLoad> {
        std::iter::once(&self.local).chain(&self.peers)
    }

    fn target_of(&self, node: &NodeLoad) -> Target {
        if node.node_id == self.local.node_id {
            Target::Local
        } else {
            Target::Peer(node.node_id.clone())
        }
    }
}

/// Chooses where an action runs.
pub trait PeerSelector: Send + Sync + 'static {
    /// Targets best first. `action_hash` is the Action digest's hash (may be empty);
    /// `random` is a uniformly random number for policies that sample.
    fn select(&self, snapshot: &Snapshot, action_hash: &str, random: u64) -> Vec<Target>;
}

/// The selector a configuration asks for.
pub fn selector_for(policy: Policy, affinity_load_factor: f64) -> Box<dyn PeerSelector> {
    match policy {
        Policy::LeastLoaded => Box::new(least_loaded::LeastLoaded),
        Policy::P2c => Box::new(p2c::PowerOfTwoChoices::default()),
        Policy::Affinity => Box::new(affinity::RendezvousAffinity {
            load_factor: affinity_load_factor,
        }),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn node(id: &str, queued: u32, executing: u32, max: u32) -> NodeLoad {
        NodeLoad {
            node_id: NodeId::new(id).unwrap(),
            load: LoadRecord {
                queued,
                executing,
                max_concurrency: max,
            },
        }
    }

    pub fn peer(id: &str) -> Target {
        Target::Peer(NodeId::new(id).unwrap())
    }
}
