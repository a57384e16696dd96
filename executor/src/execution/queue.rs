//! The bounded FIFO of actions waiting for a runner, the runner pool, and the load
//! report both are summarised in.
//!
//! Admission is two-step: `try_reserve` takes a place in the queue before the caller
//! does slow work (the cache check), so a full queue is refused at once with
//! RESOURCE_EXHAUSTED instead of after the client was told "accepted". The queue owns
//! the `queued` / `executing` counts and publishes them (with the capacities) on a
//! `watch` channel on every change, and mirrors them into the metrics gauges.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use remesh_proto::load::LoadReport;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// The queue holds `queue_max` actions (waiting plus reserved) already.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("queue full: {waiting} waiting of at most {capacity}")]
pub struct QueueFull {
    pub waiting: usize,
    pub capacity: usize,
}

/// The queue was closed (shutdown) before the job got in; it is handed back.
#[derive(Debug)]
pub struct QueueClosed<T>(pub T);

pub struct ActionQueue<T> {
    inner: Mutex<QueueState<T>>,
    wake_runner: Notify,
    capacity: usize,
    runners: usize,
    load: watch::Sender<LoadReport>,
    metrics: Metrics,
}

struct QueueState<T> {
    /// Jobs in arrival order, each with the key `remove` finds it by.
    waiting: VecDeque<(String, T)>,
    /// Places promised by `try_reserve` and not yet filled or given back.
    reserved: usize,
    executing: usize,
    closed: bool,
}

impl<T> ActionQueue<T> {
    /// `capacity`: waiting actions at most; `runners`: actions running at once (only
    /// reported here; `spawn_runners` starts them).
    pub fn new(capacity: usize, runners: usize, metrics: Metrics) -> Arc<Self> {
        let (load, _) = watch::channel(LoadReport {
            queued: 0,
            executing: 0,
            max_concurrency: saturate(runners),
            max_queue: saturate(capacity),
        });
        Arc::new(Self {
            inner: Mutex::new(QueueState {
                waiting: VecDeque::new(),
                reserved: 0,
                executing: 0,
                closed: false,
            }),
            wake_runner: Notify::new(),
            capacity,
            runners,
            load,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<T>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place in the queue, or says it is full.
    pub fn try_reserve(self: &Arc<Self>) -> Result<QueueSlot<T>, QueueFull> {
        let mut state = self.lock();
        let taken = state.waiting.len() + state.reserved;
        if taken >= self.capacity {
            return Err(QueueFull {
                waiting: taken,
                capacity: self.capacity,
            });
        }
        state.reserved += 1;
        Ok(QueueSlot {
            queue: Some(self.clone()),
        })
    }

    /// Waits for the oldest job; `None` once the queue is closed and empty. The guard
    /// counts the job as executing until dropped.
    pub async fn next(self: &Arc<Self>) -> Option<(T, ExecutingGuard<T>)> {
        loop {
            // Registered before the check, so neither a push (`notify_one`) nor a close
            // (`notify_waiters`) between the check and the await is missed.
            let notified = self.wake_runner.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some((_, job)) = state.waiting.pop_front() {
                    state.executing += 1;
                    self.publish(&state);
                    return Some((
                        job,
                        ExecutingGuard {
                            queue: self.clone(),
                        },
                    ));
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Takes a waiting job out of the queue (a cancelled operation).
    pub fn remove(&self, key: &str) -> Option<T> {
        let mut state = self.lock();
        let position = state.waiting.iter().position(|(k, _)| k == key)?;
        let (_, job) = state.waiting.remove(position)?;
        self.publish(&state);
        Some(job)
    }

    /// Refuses every new job and hands back those still waiting. Runners finish what
    /// they run, then `next` returns `None`.
    pub fn close(&self) -> Vec<T> {
        let mut state = self.lock();
        state.closed = true;
        let drained = state.waiting.drain(..).map(|(_, job)| job).collect();
        self.publish(&state);
        drop(state);
        self.wake_runner.notify_waiters();
        drained
    }

    /// The load now, then on every change.
    pub fn watch_load(&self) -> watch::Receiver<LoadReport> {
        self.load.subscribe()
    }

    pub fn load(&self) -> LoadReport {
        *self.load.borrow()
    }

    pub fn runners(&self) -> usize {
        self.runners
    }

    fn publish(&self, state: &QueueState<T>) {
        let queued = saturate(state.waiting.len());
        let executing = saturate(state.executing);
        self.metrics.actions_queued.set(i64::from(queued));
        self.metrics.actions_executing.set(i64::from(executing));
        self.load.send_if_modified(|report| {
            let changed = report.queued != queued || report.executing != executing;
            report.queued = queued;
            report.executing = executing;
            changed
        });
    }
}

/// Starts `count` runners, each taking the oldest job and awaiting `run(job)` before
/// taking the next. They end when the queue is closed and empty.
pub fn spawn_runners<T, F, Fut>(queue: &Arc<ActionQueue<T>>, count: usize, run: F) -> JoinSet<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut runners = JoinSet::new();
    for _ in 0..count {
        let queue = queue.clone();
        let run = run.clone();
        runners.spawn(async move {
            while let Some((job, executing)) = queue.next().await {
                run(job).await;
                drop(executing);
            }
        });
    }
    runners
}

/// A promised place in the queue; dropping it unused gives the place back.
pub struct QueueSlot<T> {
    queue: Option<Arc<ActionQueue<T>>>,
}

impl<T> QueueSlot<T> {
    /// Puts the job at the back of the queue, under `key`.
    pub fn push(mut self, key: String, job: T) -> Result<(), QueueClosed<T>> {
        let queue = self.queue.take().expect("a slot is pushed at most once");
        let mut state = queue.lock();
        state.reserved -= 1;
        if state.closed {
            return Err(QueueClosed(job));
        }
        state.waiting.push_back((key, job));
        queue.publish(&state);
        drop(state);
        queue.wake_runner.notify_one();
        Ok(())
    }
}

impl<T> Drop for QueueSlot<T> {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.lock().reserved -= 1;
        }
    }
}

/// Counts one job as executing while it lives.
pub struct ExecutingGuard<T> {
    queue: Arc<ActionQueue<T>>,
}

impl<T> Drop for ExecutingGuard<T> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.executing -= 1;
        self.queue.publish(&state);
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
