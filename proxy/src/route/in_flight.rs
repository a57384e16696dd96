//! A guard for one Execute the router has sent and whose stream is still open.
//!
//! The balancer adds what this node sent to a peer since the peer's last load
//! record to that record, so a burst decided within one gossip round sees itself.
//! Counting every send would overstate a peer that finishes work quickly: at a
//! thousand short actions a second, a heartbeat's worth of sends fills any peer on
//! paper while it sits nearly idle. The guard lives as long as the response stream
//! and, dropped, takes its Execute off the count.

/// Dropped when the Execute it stands for is over (or was never accepted).
#[must_use = "the Execute counts as open until this is dropped"]
pub struct InFlight(Option<Box<dyn FnOnce() + Send + Sync>>);

impl InFlight {
    /// Nothing to undo (local sends, a cluster of one).
    pub fn untracked() -> Self {
        Self(None)
    }

    /// Runs `done` when dropped.
    pub fn on_drop(done: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(done)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done();
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "InFlight(tracked)"
        } else {
            "InFlight(untracked)"
        })
    }
}
