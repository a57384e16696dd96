//! A node's load: what it reports to the cluster and where the number comes from.
//!
//! `LoadRecord` is the value gossip carries. In `executor` mode it comes from the
//! executor's `Load.Watch` stream (`executor_watch`); in `generic` mode the proxy
//! counts the Execute streams it has open on its backend against a configured
//! capacity (`open_executions`).

pub mod executor_watch;
pub mod open_executions;

pub use open_executions::OpenExecutions;

use serde::{Deserialize, Serialize};

/// One node's load at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// Actions accepted and waiting for a runner.
    pub queued: u32,
    /// Actions running now.
    pub executing: u32,
    /// Actions that may run at once; 0 means the node takes no work (backend down).
    pub max_concurrency: u32,
}

impl LoadRecord {
    /// Work in hand per unit of capacity; infinite when the node has no capacity.
    pub fn utilisation(&self) -> f64 {
        if self.max_concurrency == 0 {
            f64::INFINITY
        } else {
            f64::from(self.queued + self.executing) / f64::from(self.max_concurrency)
        }
    }

    /// Whether one more action would start at once rather than queue.
    pub fn has_spare_capacity(&self) -> bool {
        self.queued + self.executing < self.max_concurrency
    }

    /// The same record with `extra` more actions queued (own forwards not yet
    /// reflected in gossip).
    pub fn plus_queued(self, extra: u32) -> Self {
        Self {
            queued: self.queued.saturating_add(extra),
            ..self
        }
    }

    /// Whether the change from `previous` is worth an immediate broadcast rather
    /// than waiting for the heartbeat: capacity changed, or spare capacity appeared
    /// or vanished, or the work in hand moved by a quarter of capacity (at least 1).
    pub fn differs_significantly(&self, previous: &Self) -> bool {
        if self.max_concurrency != previous.max_concurrency
            || self.has_spare_capacity() != previous.has_spare_capacity()
        {
            return true;
        }
        let now = i64::from(self.queued + self.executing);
        let before = i64::from(previous.queued + previous.executing);
        let step = i64::from((self.max_concurrency / 4).max(1));
        (now - before).abs() >= step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queued: u32, executing: u32, max: u32) -> LoadRecord {
        LoadRecord {
            queued,
            executing,
            max_concurrency: max,
        }
    }

    #[test]
    fn utilisation_and_capacity() {
        assert_eq!(load(2, 2, 8).utilisation(), 0.5);
        assert!(load(0, 0, 0).utilisation().is_infinite());
        assert!(load(0, 3, 4).has_spare_capacity());
        assert!(!load(1, 3, 4).has_spare_capacity());
    }

    #[test]
    fn significance() {
        assert!(!load(0, 1, 8).differs_significantly(&load(0, 0, 8)));
        assert!(load(0, 2, 8).differs_significantly(&load(0, 0, 8)));
        assert!(load(0, 4, 4).differs_significantly(&load(0, 3, 4)));
        assert!(load(0, 0, 4).differs_significantly(&load(0, 0, 8)));
    }
}
