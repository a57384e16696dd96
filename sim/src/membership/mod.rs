//! Membership at scale: the proxy's foca setup (identity, load broadcasts, config)
//! driven over a simulated network, and the experiments the report runs on it.
//!
//! - `node`: one member (foca + the proxy's `LoadBook`) and the runtime that collects
//!   its outputs.
//! - `cluster`: the event loop and the hooks (crash, load change, partition).
//! - `experiments`: failure detection, false positives under loss, load propagation.

pub mod cluster;
pub mod experiments;
pub mod node;

pub use cluster::{Cluster, ClusterConfig};
