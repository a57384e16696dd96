//! Load records as foca custom broadcasts: newest per origin wins.
//!
//! Each record is keyed by `(origin, generation, version)`. foca keeps spreading a
//! record only while `receive_item` says it is new, and drops a queued record as soon
//! as a newer one from the same origin arrives (`Invalidates`), so the backlog holds at
//! most one record per member however often loads change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::identity::MemberIdentity;
use crate::load::LoadRecord;
use crate::operation_name::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastKey {
    pub origin: NodeId,
    pub generation: u64,
    pub version: u64,
}

impl BroadcastKey {
    fn newer_than(&self, generation: u64, version: u64) -> bool {
        (self.generation, self.version) > (generation, version)
    }
}

impl foca::Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.origin == other.origin && self.newer_than(other.generation, other.version)
    }
}

/// One member's load as it announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBroadcast {
    pub key: BroadcastKey,
    pub load: LoadRecord,
    /// The member is shutting down: send it no new work.
    pub leaving: bool,
}

impl LoadBroadcast {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of integers and a short string cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable load broadcast: {0}")]
pub struct BroadcastDecodeError(#[from] postcard::Error);

/// The newest load heard from each member.
#[derive(Debug, Clone)]
pub struct HeardLoad {
    pub generation: u64,
    pub version: u64,
    pub load: LoadRecord,
    pub leaving: bool,
    pub received: Instant,
}

/// The newest record per origin, shared between foca's handler and the membership
/// task that builds views from it (both run on that one task: the lock is never
/// contended; it exists because foca owns its handler).
pub type HeardLoads = Arc<Mutex<HashMap<NodeId, HeardLoad>>>;

/// foca's broadcast handler: remembers the newest record per origin.
#[derive(Debug, Default)]
pub struct LoadBook {
    pub heard: HeardLoads,
}

impl foca::BroadcastHandler<MemberIdentity> for LoadBook {
    type Key = BroadcastKey;
    type Error = BroadcastDecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _relayed_by: Option<&MemberIdentity>,
    ) -> Result<Option<BroadcastKey>, BroadcastDecodeError> {
        let record: LoadBroadcast = postcard::from_bytes(data)?;
        let key = record.key;
        let mut heard = self
            .heard
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let is_new = heard
            .get(&key.origin)
            .is_none_or(|known| key.newer_than(known.generation, known.version));
        if !is_new {
            // Stale or already seen: returning None stops foca from spreading it again.
            return Ok(None);
        }
        heard.insert(
            key.origin.clone(),
            HeardLoad {
                generation: key.generation,
                version: key.version,
                load: record.load,
                leaving: record.leaving,
                received: Instant::now(),
            },
        );
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{BroadcastHandler, Invalidates};

    fn record(origin: &str, generation: u64, version: u64, queued: u32) -> LoadBroadcast {
        LoadBroadcast {
            key: BroadcastKey {
                origin: NodeId::new(origin).unwrap(),
                generation,
                version,
            },
            load: LoadRecord {
                queued,
                executing: 0,
                max_concurrency: 4,
            },
            leaving: false,
        }
    }

    #[test]
    fn newest_per_origin_wins() {
        let mut book = LoadBook::default();
        let a = NodeId::new("a").unwrap();
        assert!(
            book.receive_item(&record("a", 1, 2, 5).encode(), None)
                .unwrap()
                .is_some()
        );
        // Duplicate and older versions are not new.
        assert!(
            book.receive_item(&record("a", 1, 2, 5).encode(), None)
                .unwrap()
                .is_none()
        );
        assert!(
            book.receive_item(&record("a", 1, 1, 9).encode(), None)
                .unwrap()
                .is_none()
        );
        assert_eq!(book.heard.lock().unwrap()[&a].load.queued, 5);
        // A restart (newer generation) wins even with a lower version.
        assert!(
            book.receive_item(&record("a", 2, 0, 1).encode(), None)
                .unwrap()
                .is_some()
        );
        assert_eq!(book.heard.lock().unwrap()[&a].load.queued, 1);
        // Other origins are independent.
        assert!(
            book.receive_item(&record("b", 1, 0, 3).encode(), None)
                .unwrap()
                .is_some()
        );
        assert!(book.receive_item(b"\xff\xff", None).is_err());
    }

    #[test]
    fn only_newer_records_of_the_same_origin_invalidate() {
        let old = record("a", 1, 1, 0).key;
        let new = record("a", 1, 2, 0).key;
        let other = record("b", 9, 9, 0).key;
        assert!(new.invalidates(&old));
        assert!(!old.invalidates(&new));
        assert!(!other.invalidates(&old));
    }
}
