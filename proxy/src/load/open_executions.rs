//! Load of a generic backend, measured by the proxy itself: the Execute streams it has
//! open on the backend. A stream that ends (or a client that hangs up) drops its
//! `OpenExecution` guard, so the count cannot leak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

use super::LoadRecord;

/// Counts open local Execute streams against a configured capacity.
#[derive(Clone)]
pub struct OpenExecutions {
    open: Arc<AtomicU32>,
    capacity: u32,
    changes: Arc<watch::Sender<LoadRecord>>,
}

/// Held while one Execute stream is open on the backend.
pub struct OpenExecution {
    owner: OpenExecutions,
}

impl OpenExecutions {
    pub fn new(capacity: u32) -> Self {
        let (changes, _) = watch::channel(LoadRecord {
            max_concurrency: capacity,
            ..LoadRecord::default()
        });
        Self {
            open: Arc::new(AtomicU32::new(0)),
            capacity,
            changes: Arc::new(changes),
        }
    }

    pub fn begin(&self) -> OpenExecution {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.publish();
        OpenExecution {
            owner: self.clone(),
        }
    }

    /// Open streams up to capacity count as executing, the rest as queued.
    pub fn current(&self) -> LoadRecord {
        let open = self.open.load(Ordering::Relaxed);
        LoadRecord {
            queued: open.saturating_sub(self.capacity),
            executing: open.min(self.capacity),
            max_concurrency: self.capacity,
        }
    }

    /// Every change of the load, for the membership task.
    pub fn subscribe(&self) -> watch::Receiver<LoadRecord> {
        self.changes.subscribe()
    }

    fn publish(&self) {
        self.changes.send_replace(self.current());
    }
}

impl Drop for OpenExecution {
    fn drop(&mut self) {
        self.owner.open.fetch_sub(1, Ordering::Relaxed);
        self.owner.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_overflow_queues() {
        let open = OpenExecutions::new(2);
        let watcher = open.subscribe();
        let guards: Vec<_> = (0..3).map(|_| open.begin()).collect();
        assert_eq!(
            open.current(),
            LoadRecord {
                queued: 1,
                executing: 2,
                max_concurrency: 2
            }
        );
        assert_eq!(*watcher.borrow(), open.current());
        drop(guards);
        assert_eq!(open.current().executing, 0);
        assert_eq!(watcher.borrow().executing, 0);
    }
}
