//! Interrupted ByteStream uploads, kept so that a client can resume where it stopped
//! (QueryWriteStatus, then Write from `committed_size`).
//!
//! Keyed by the full resource name (each upload has its own UUID). Bounded in count
//! (each holds an open temporary file) and in age; the oldest are dropped first, which
//! deletes their temporary files. An upload is taken out while a stream writes to it,
//! so two streams never write one upload at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Partial uploads kept at most; past it the least recently parked is dropped.
pub const DEFAULT_MAX_PARTIAL_UPLOADS: usize = 256;

/// How long an interrupted upload waits for its client to come back.
pub const DEFAULT_PARTIAL_UPLOAD_TTL: Duration = Duration::from_secs(10 * 60);

pub struct PartialUploads<T> {
    parked: Mutex<HashMap<String, (Instant, T)>>,
    max_count: usize,
    ttl: Duration,
}

impl<T> PartialUploads<T> {
    pub fn new(max_count: usize, ttl: Duration) -> Self {
        Self {
            parked: Mutex::new(HashMap::new()),
            max_count: max_count.max(1),
            ttl,
        }
    }

    /// Removes and returns the partial upload of `name`, if one is parked and fresh.
    pub fn take(&self, name: &str) -> Option<T> {
        let (taken, expired) = {
            let mut parked = self.lock();
            let expired = self.expire(&mut parked);
            (parked.remove(name).map(|(_, upload)| upload), expired)
        };
        // Dropping an upload deletes its file: done outside the lock.
        drop(expired);
        taken
    }

    /// Keeps `upload` for a later resumption, dropping the oldest past the bound.
    pub fn park(&self, name: String, upload: T) {
        let dropped = {
            let mut parked = self.lock();
            let mut dropped = self.expire(&mut parked);
            if let Some((_, previous)) = parked.insert(name, (Instant::now(), upload)) {
                dropped.push(previous);
            }
            while parked.len() > self.max_count {
                let oldest = parked
                    .iter()
                    .min_by_key(|(_, (parked_at, _))| *parked_at)
                    .map(|(name, _)| name.clone())
                    .expect("over the bound means not empty");
                dropped.extend(parked.remove(&oldest).map(|(_, upload)| upload));
            }
            dropped
        };
        drop(dropped);
    }

    /// Reads a parked upload without taking it.
    pub fn inspect<R>(&self, name: &str, read: impl FnOnce(&T) -> R) -> Option<R> {
        let parked = self.lock();
        parked
            .get(name)
            .filter(|(parked_at, _)| parked_at.elapsed() < self.ttl)
            .map(|(_, upload)| read(upload))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn expire(&self, parked: &mut HashMap<String, (Instant, T)>) -> Vec<T> {
        let stale: Vec<String> = parked
            .iter()
            .filter(|(_, (parked_at, _))| parked_at.elapsed() >= self.ttl)
            .map(|(name, _)| name.clone())
            .collect();
        stale
            .iter()
            .filter_map(|name| parked.remove(name).map(|(_, upload)| upload))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, T)>> {
        self.parked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bounded_in_count_oldest_dropped_first() {
        let uploads = PartialUploads::new(2, Duration::from_secs(60));
        uploads.park("a".into(), 1);
        tokio::time::advance(Duration::from_millis(2)).await;
        uploads.park("b".into(), 2);
        tokio::time::advance(Duration::from_millis(2)).await;
        uploads.park("c".into(), 3);
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads.take("a"), None);
        assert_eq!(uploads.inspect("b", |v| *v), Some(2));
        assert_eq!(uploads.take("c"), Some(3));
        assert_eq!(uploads.take("c"), None, "taking removes");
    }

    #[tokio::test(start_paused = true)]
    async fn expire_after_the_ttl() {
        let uploads = PartialUploads::new(10, Duration::from_secs(60));
        uploads.park("a".into(), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(uploads.inspect("a", |v| *v), Some(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(uploads.inspect("a", |v| *v), None);
        assert_eq!(uploads.take("a"), None);
        assert_eq!(uploads.len(), 0);
    }
}
