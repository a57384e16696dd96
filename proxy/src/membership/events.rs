//! Recent membership changes (join, suspect, down, leave), kept in a small ring for
//! people: the status page and `/cluster` show them so an operator sees what the
//! cluster did a minute ago without searching logs.
//!
//! The membership task is the only writer; the admin port reads copies. The ring is
//! bounded, so a flapping member cannot make it grow.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How many events the ring keeps unless told otherwise.
pub const DEFAULT_EVENT_CAPACITY: usize = 64;

/// One observed change of a member's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipEvent {
    /// Milliseconds since the Unix epoch, by this node's clock.
    pub at_unix_ms: u64,
    pub node_id: String,
    pub gossip_addr: SocketAddr,
    /// `join`, `suspect`, `down` or `leave`.
    pub event: String,
}

/// A bounded, shared ring of the newest membership events, oldest first.
#[derive(Debug, Clone)]
pub struct MembershipEvents {
    ring: Arc<Mutex<VecDeque<MembershipEvent>>>,
    capacity: usize,
}

impl Default for MembershipEvents {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_EVENT_CAPACITY)
    }
}

impl MembershipEvents {
    /// A ring keeping the newest `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// Records an event happening now, dropping the oldest when full.
    pub fn record(&self, node_id: &str, gossip_addr: SocketAddr, event: &str) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        self.push(MembershipEvent {
            at_unix_ms,
            node_id: node_id.to_owned(),
            gossip_addr,
            event: event.to_owned(),
        });
    }

    fn push(&self, event: MembershipEvent) {
        // A panic elsewhere cannot leave a VecDeque half-pushed: a poisoned lock is
        // still consistent.
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// A copy of the kept events, oldest first.
    pub fn snapshot(&self) -> Vec<MembershipEvent> {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        ring.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_events_in_order() {
        let events = MembershipEvents::with_capacity(3);
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        for (node, event) in [
            ("a", "join"),
            ("b", "join"),
            ("a", "suspect"),
            ("a", "down"),
        ] {
            events.record(node, addr, event);
        }
        let kept: Vec<_> = events
            .snapshot()
            .into_iter()
            .map(|e| (e.node_id, e.event))
            .collect();
        assert_eq!(
            kept,
            [
                ("b".to_owned(), "join".to_owned()),
                ("a".to_owned(), "suspect".to_owned()),
                ("a".to_owned(), "down".to_owned()),
            ]
        );
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_latest_event() {
        let events = MembershipEvents::with_capacity(0);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        events.record("a", addr, "join");
        events.record("a", addr, "leave");
        let kept = events.snapshot();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].event, "leave");
        assert!(kept[0].at_unix_ms > 0);
    }
}
