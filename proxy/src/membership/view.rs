//! The cluster as the router sees it: an immutable snapshot, replaced whole by the
//! membership task and read lock-free (arc-swap) on every request.

use tokio::time::Instant;

use serde::Serialize;

use super::identity::MemberIdentity;
use crate::load::LoadRecord;
use crate::operation_name::NodeId;

/// SWIM's opinion of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Alive,
    Suspect,
    Down,
}

impl PeerState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
        }
    }
}

impl From<foca::State> for PeerState {
    fn from(state: foca::State) -> Self {
        match state {
            foca::State::Alive => Self::Alive,
            foca::State::Suspect => Self::Suspect,
            foca::State::Down => Self::Down,
        }
    }
}

/// One other member.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerEntry {
    pub identity: MemberIdentity,
    pub state: PeerState,
    /// Its newest load record, if one arrived yet (with its version, so the router
    /// can tell when its own forward count is already reflected).
    pub load: Option<LoadRecord>,
    pub load_version: u64,
    pub leaving: bool,
    /// When its load record arrived.
    pub load_received: Option<Instant>,
}

impl PeerEntry {
    /// Whether new work may go to this member: alive, not leaving, load known.
    pub fn takes_work(&self) -> bool {
        self.state == PeerState::Alive && !self.leaving && self.load.is_some()
    }
}

/// This node and every member it knows, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub local: MemberIdentity,
    pub local_load: LoadRecord,
    /// Other members, down ones included until foca forgets them.
    pub peers: Vec<PeerEntry>,
}

impl ClusterView {
    pub fn alone(local: MemberIdentity, local_load: LoadRecord) -> Self {
        Self {
            local,
            local_load,
            peers: Vec::new(),
        }
    }

    /// The member named `node`. A node restarted at a new address is listed twice:
    /// its earlier life stays down in the list (foca keeps down members for a while)
    /// next to the live one. The live entry wins, then the newest generation.
    pub fn peer(&self, node: &NodeId) -> Option<&PeerEntry> {
        self.peers
            .iter()
            .filter(|peer| &peer.identity.node_id == node)
            .max_by_key(|peer| (peer.state != PeerState::Down, peer.identity.generation))
    }

    /// Queued actions on this node and every live member: the autoscaling signal.
    pub fn cluster_queue_depth(&self) -> u64 {
        let peers: u64 = self
            .peers
            .iter()
            .filter(|peer| peer.state != PeerState::Down)
            .filter_map(|peer| peer.load)
            .map(|load| u64::from(load.queued))
            .sum();
        peers + u64::from(self.local_load.queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(port: u16, generation: u64, state: PeerState) -> PeerEntry {
        PeerEntry {
            identity: MemberIdentity {
                node_id: NodeId::new("b").unwrap(),
                gossip_addr: format!("127.0.0.1:{port}").parse().unwrap(),
                grpc_addr: format!("127.0.0.1:{}", port + 1).parse().unwrap(),
                generation,
            },
            state,
            load: None,
            load_version: 0,
            leaving: false,
            load_received: None,
        }
    }

    #[test]
    fn a_node_restarted_at_a_new_address_is_found_by_its_live_entry() {
        let local = entry(1000, 1, PeerState::Alive).identity;
        let mut view = ClusterView::alone(local, LoadRecord::default());
        // Its earlier life, down, is listed first.
        view.peers = vec![
            entry(2000, 5, PeerState::Down),
            entry(3000, 9, PeerState::Alive),
        ];
        let b = NodeId::new("b").unwrap();
        assert_eq!(view.peer(&b).unwrap().identity.generation, 9);
        // Both down: the newest generation.
        view.peers[1].state = PeerState::Down;
        assert_eq!(view.peer(&b).unwrap().identity.generation, 9);
        assert!(view.peer(&NodeId::new("z").unwrap()).is_none());
    }
}
