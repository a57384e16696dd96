//! remesh-sim: a discrete-event simulator of a remesh cluster, from 10 to 1,000 nodes,
//! driving the proxy's real membership (foca with the proxy's identity, load broadcast
//! handler and config) and its real balancer policies (`PeerSelector`s).
//!
//! Deterministic: every run is a function of its seed. Time is simulated (integer
//! microseconds), randomness comes from seeded generators, and nothing reads the wall
//! clock to make a decision.
//!
//! # Layout
//! - `clock`: simulated time and the event queue.
//! - `net`: latency, loss and partitions between nodes.
//! - `pacing`: when a node sends its load record (mirrors the proxy's rule).
//! - `membership`: foca members on the simulated network, and its experiments.
//! - `balance`: workloads, the executor model, the policies under gossip-delayed views,
//!   and the ideal central scheduler they are measured against.
//! - `report`: runs everything and writes `simulation.md` and the plots.
//! - `stats`: quantiles.
#![forbid(unsafe_code)]

pub mod balance;
pub mod clock;
pub mod membership;
pub mod net;
pub mod pacing;
pub mod report;
pub mod stats;
