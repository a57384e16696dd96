//! Merges concurrent identical work: while one caller runs the work for a key, others
//! asking for the same key wait for its outcome instead of starting their own.
//!
//! Used for backing-cache fetches, so that fifty runners needing one missing input
//! fetch it once. If the caller doing the work is cancelled (its request dropped), one
//! of the waiters takes over with its own work; nobody waits for a dead leader.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct SingleFlight<K, V> {
    in_flight: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    /// Runs `work` unless work for `key` is already running, in which case this waits
    /// for that outcome. `work` is only polled when this caller is the one running it.
    pub async fn run<F>(&self, key: &K, work: F) -> V
    where
        F: Future<Output = V>,
    {
        let cell = self.lock().entry(key.clone()).or_default().clone();
        let outcome = cell.get_or_init(|| work).await.clone();
        // The first caller to finish removes the entry so a later request (after an
        // error, or after the blob was evicted again) starts fresh work.
        let mut in_flight = self.lock();
        if in_flight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            in_flight.remove(key);
        }
        outcome
    }

    /// Keys with work running now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights = Arc::new(SingleFlight::<String, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (flights, runs, mut released) = (flights.clone(), runs.clone(), released.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(&"blob".to_owned(), async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        released.wait_for(|go| *go).await.unwrap();
                        7
                    })
                    .await
            }));
        }
        // Every caller must have joined before the work may finish.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "work never started");
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over() {
        let flights = SingleFlight::<u8, &'static str>::default();
        let leader = flights.run(&1, std::future::pending());
        // Poll the leader once so it owns the cell, then drop it.
        tokio::select! {
            biased;
            _ = leader => unreachable!("pending work cannot finish"),
            () = tokio::task::yield_now() => {}
        }
        assert_eq!(flights.run(&1, async { "second" }).await, "second");
        assert_eq!(flights.in_flight(), 0);
    }
}
