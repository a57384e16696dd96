//! Cluster membership: SWIM gossip with foca over UDP, and load records spread as
//! foca custom broadcasts.
//!
//! One task owns foca (`task`) and is the only writer of the cluster view; it is fed
//! by its UDP socket, its timers, the local load watch, a heartbeat and the resolver
//! of join addresses (`join`). The view it publishes (`view`) is what the router reads.
//! This module never routes a request and never dials gRPC.

pub mod events;
pub mod gossip_socket;
pub mod identity;
pub mod join;
pub mod load_broadcast;
pub mod sizing;
pub mod task;
pub mod view;

pub use events::{MembershipEvent, MembershipEvents};
pub use gossip_socket::GossipSocket;
pub use identity::MemberIdentity;
pub use task::{MembershipSettings, ViewSink, run};
pub use view::{ClusterView, PeerEntry, PeerState};
