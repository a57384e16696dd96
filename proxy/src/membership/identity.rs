//! A member's identity as foca carries it in every packet: static for the life of the
//! process. Load, which changes, travels separately in custom broadcasts.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::operation_name::NodeId;

/// Who a member is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberIdentity {
    pub node_id: NodeId,
    /// Where its gossip socket listens; foca's notion of the member's address.
    pub gossip_addr: SocketAddr,
    /// Where its proxy serves gRPC (for forwarded Execute and operation calls).
    pub grpc_addr: SocketAddr,
    /// Start time in milliseconds, bumped by `renew`: a restarted node (same address)
    /// wins over the memory of its previous life.
    pub generation: u64,
}

impl MemberIdentity {
    /// A stand-in for a seed address whose identity is not known yet: only a
    /// destination for the first announce, never a member (foca learns the real
    /// identity from the answer).
    pub fn seed(gossip_addr: SocketAddr) -> Self {
        Self {
            node_id: NodeId::new("seed").unwrap_or_else(|_| unreachable!("valid literal")),
            gossip_addr,
            grpc_addr: gossip_addr,
            generation: 0,
        }
    }
}

impl foca::Identity for MemberIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // Declared down while alive (a long pause, a partition): come back at once
        // under a newer generation.
        Some(Self {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Milliseconds since the Unix epoch: a generation that grows across restarts.
pub fn generation_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewal_wins_conflicts() {
        let identity = MemberIdentity {
            node_id: NodeId::new("a").unwrap(),
            gossip_addr: "127.0.0.1:7946".parse().unwrap(),
            grpc_addr: "127.0.0.1:8990".parse().unwrap(),
            generation: 5,
        };
        let renewed = identity.renew().unwrap();
        assert_eq!(renewed.addr(), identity.addr());
        assert!(renewed.win_addr_conflict(&identity));
        assert!(!identity.win_addr_conflict(&renewed));
    }
}
