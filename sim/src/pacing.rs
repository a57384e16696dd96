//! When a node sends its load record: a mirror of the proxy membership task's rule
//! (`proxy/src/membership/task.rs`, `on_local_load_change` and `broadcast_load`),
//! which lives inside that task's I/O loop and so cannot be called from here.
//!
//! The rule: a heartbeat every `load_heartbeat`; a significant change
//! (`LoadRecord::differs_significantly`, the proxy's own function) is sent at once,
//! but at most once per `heartbeat / 5`; a change inside that gap is held and sent
//! when the gap ends. Every send bumps the record's version.

use remesh_proxy::load::LoadRecord;

use crate::clock::Micros;

/// What to do after the local load changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Send a record now.
    Now,
    /// A record is due at this time (the end of the minimum gap).
    At(Micros),
    /// Not significant: wait for the heartbeat.
    Skip,
}

#[derive(Debug, Clone)]
pub struct LoadPacer {
    pub local_load: LoadRecord,
    last_sent_load: Option<LoadRecord>,
    last_sent_at: Option<Micros>,
    min_gap: Micros,
    pending: bool,
    version: u64,
}

impl LoadPacer {
    pub fn new(local_load: LoadRecord, heartbeat: Micros) -> Self {
        Self {
            local_load,
            last_sent_load: None,
            last_sent_at: None,
            min_gap: heartbeat / 5,
            pending: false,
            version: 0,
        }
    }

    /// The local load is now `load`.
    pub fn on_change(&mut self, load: LoadRecord, now: Micros) -> Pace {
        self.local_load = load;
        let significant = self
            .last_sent_load
            .is_none_or(|sent| load.differs_significantly(&sent));
        if !significant {
            return Pace::Skip;
        }
        match self.last_sent_at {
            Some(at) if now < at + self.min_gap => {
                self.pending = true;
                Pace::At(at + self.min_gap)
            }
            _ => Pace::Now,
        }
    }

    /// Whether a held record is due at `now` (a flush timer fired).
    pub fn flush_due(&self, now: Micros) -> bool {
        self.pending && self.last_sent_at.is_none_or(|at| now >= at + self.min_gap)
    }

    /// Records a send of the current load at `now`; returns its version.
    pub fn sent(&mut self, now: Micros) -> u64 {
        self.version += 1;
        self.last_sent_load = Some(self.local_load);
        self.last_sent_at = Some(now);
        self.pending = false;
        self.version
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(executing: u32, max: u32) -> LoadRecord {
        LoadRecord {
            queued: 0,
            executing,
            max_concurrency: max,
        }
    }

    #[test]
    fn significant_changes_are_sent_at_once_but_not_more_often_than_the_gap() {
        let mut pacer = LoadPacer::new(load(0, 8), 1_000_000);
        assert_eq!(pacer.on_change(load(0, 8), 0), Pace::Now);
        assert_eq!(pacer.sent(0), 1);
        // One more action out of 8 is below a quarter of capacity: wait for heartbeat.
        assert_eq!(pacer.on_change(load(1, 8), 10), Pace::Skip);
        // Two more is significant, but inside the 200 ms gap: held until it ends.
        assert_eq!(pacer.on_change(load(2, 8), 50_000), Pace::At(200_000));
        assert!(!pacer.flush_due(199_999));
        assert!(pacer.flush_due(200_000));
        assert_eq!(pacer.sent(200_000), 2);
        assert!(!pacer.flush_due(400_000));
        assert_eq!(pacer.on_change(load(6, 8), 400_000), Pace::Now);
    }
}
