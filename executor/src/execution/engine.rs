//! The execution engine: accepts Execute requests, merges identical in-flight actions,
//! checks the action cache, queues, runs on the runner pool, and answers the
//! Operations and Load services. Services call it; it never sees gRPC requests beyond
//! the messages themselves.
//!
//! Life of an Execute: the request is checked and the Action and Command are loaded
//! (errors here are gRPC errors: no operation exists yet); a queue place is reserved
//! (full → RESOURCE_EXHAUSTED, after a last cache lookup so that hits are still
//! served); the operation is registered and returned at once in CACHE_CHECK; a task
//! looks the action up in the cache (hit → done) and otherwise queues it (QUEUED); a
//! runner runs it (EXECUTING) and completes it (COMPLETED).
//!
//! Identical actions in flight (same action digest) share one operation: the second
//! Execute gets the first one's name and stream. A `skip_cache_lookup` request joins
//! only an operation past its cache check (a queued or running one is a fresh run, as
//! asked; one still in CACHE_CHECK might answer from the cache, so it gets its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use remesh_proto::load::LoadReport;
use remesh_proto::longrunning;
use remesh_proto::reapi::{ExecuteRequest, ExecuteResponse};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SandboxMode};
use crate::digest::BlobDigest;
use crate::execution::action::{ActionLimits, LoadedAction, load_action};
use crate::execution::error::ExecutionError;
use crate::execution::operations::{Admission, CancelReason, Operation, OperationRegistry, Stage};
use crate::execution::queue::{ActionQueue, QueueClosed, QueueSlot, spawn_runners};
use crate::execution::runner::{
    ActionRunner, WORK_DIR_PREFIX, error_response, remove_work_dir, worker_name,
};
use crate::execution::sandbox::Sandbox;
use crate::metrics::Metrics;
use crate::storage::{ActionCache, Cas};

/// Longest ListOperations page.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
/// After the shutdown grace, how long killed actions get to report back.
const KILL_REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// One queued action.
struct Job {
    operation: Arc<Operation>,
    action: LoadedAction,
    queued_at: SystemTime,
}

/// Cheap to clone; every service holds one.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    cas: Cas,
    action_cache: ActionCache,
    metrics: Metrics,
    registry: OperationRegistry,
    queue: Arc<ActionQueue<Job>>,
    runner: ActionRunner,
    accepting: AtomicBool,
    /// Fired when the drain is over, to end endless streams (Load.Watch) so the
    /// servers' graceful shutdown does not wait for them forever.
    drained: CancellationToken,
    keepalive_interval: Duration,
}

impl Engine {
    /// Builds the engine and starts `config.effective_runners()` runners (needs a
    /// tokio runtime).
    pub fn start(config: &Config, cas: Cas, action_cache: ActionCache, metrics: Metrics) -> Self {
        let runners = config.effective_runners();
        let queue = ActionQueue::new(config.queue_max, runners, metrics.clone());
        // Done operations are bounded in number as well as in time, so a flood of cache
        // hits cannot grow the registry without bound.
        let max_retained = (config.queue_max + runners).max(1000);
        let inner = Arc::new(EngineInner {
            runner: ActionRunner {
                cas: cas.clone(),
                action_cache: action_cache.clone(),
                limits: limits(config),
                worker: worker_name(),
                work_dir_prefix: format!("{WORK_DIR_PREFIX}{}-", uuid::Uuid::new_v4().simple()),
                sandbox: (config.sandbox == SandboxMode::Required)
                    .then(|| Arc::new(Sandbox::new(config.bwrap_path.clone()))),
                max_output_bytes: config.max_output_bytes,
            },
            cas,
            action_cache,
            metrics,
            registry: OperationRegistry::new(config.operation_retention, max_retained),
            queue: queue.clone(),
            accepting: AtomicBool::new(true),
            drained: CancellationToken::new(),
            keepalive_interval: config.keepalive_interval,
        });
        tokio::spawn(remove_stale_work_dirs(
            inner.cas.scratch_dir(),
            inner.runner.work_dir_prefix.clone(),
        ));
        let weak = Arc::downgrade(&inner);
        // Runners end when the queue is closed and empty (at drain); they hold the
        // engine weakly so a dropped engine is not kept alive by its own runners.
        let mut runner_tasks = spawn_runners(&queue, runners, move |job: Job| {
            let weak = weak.clone();
            async move {
                if let Some(inner) = weak.upgrade() {
                    let operation = job.operation.clone();
                    // A bug in one run must neither kill this runner nor leave the
                    // operation's watchers waiting forever.
                    let run = std::panic::AssertUnwindSafe(inner.run_job(job));
                    if futures::FutureExt::catch_unwind(run).await.is_err() {
                        let error = ExecutionError::Io {
                            context: "running the action".into(),
                            source: std::io::Error::other("the runner panicked"),
                        };
                        inner.finish(&operation, error_response(&error, None), "error");
                    }
                }
            }
        });
        // Dropping a JoinSet would abort them.
        runner_tasks.detach_all();
        Self { inner }
    }

    /// Accepts an Execute: the operation to stream (possibly one already in flight for
    /// the same action). Errors are for the gRPC status: no operation was created.
    pub async fn execute(
        &self,
        request: &ExecuteRequest,
    ) -> Result<Arc<Operation>, ExecutionError> {
        let inner = &self.inner;
        if !inner.accepting.load(Ordering::Acquire) {
            return Err(ExecutionError::ShuttingDown);
        }
        let digest = BlobDigest::from_field(request.action_digest.as_ref())
            .map_err(|e| ExecutionError::InvalidArgument(format!("action_digest: {e}")))?;
        let skip_cache = request.skip_cache_lookup;
        // Joining costs no queue place, so it is tried before the queue can say full.
        if let Some(operation) = inner.registry.joinable(&digest, skip_cache) {
            inner.metrics.execution("merged");
            return Ok(operation);
        }
        let action = load_action(&inner.cas, &digest, &inner.runner.limits).await?;
        let slot = match inner.queue.try_reserve() {
            Ok(slot) => slot,
            Err(full) => {
                // Overloaded: a cache hit costs no runner, so answer it; refuse the rest.
                if !skip_cache && let Some(response) = inner.cached_response(&digest).await {
                    inner.metrics.execution("cache_hit");
                    return Ok(inner.registry.insert_done(&digest, response));
                }
                return Err(ExecutionError::QueueFull(full.waiting));
            }
        };
        let first_stage = if skip_cache {
            Stage::Queued
        } else {
            Stage::CacheCheck
        };
        match inner.registry.admit(&digest, skip_cache, first_stage) {
            Admission::Merged(operation) => {
                inner.metrics.execution("merged");
                Ok(operation)
            }
            Admission::New(operation) => {
                tokio::spawn(
                    inner
                        .clone()
                        .admit(operation.clone(), action, slot, skip_cache),
                );
                Ok(operation)
            }
        }
    }

    pub fn operation(&self, name: &str) -> Result<Arc<Operation>, ExecutionError> {
        self.inner.registry.get(name)
    }

    /// One ListOperations page: operations after `page_token` in name order, and the
    /// token of the next page (empty on the last).
    pub fn list(
        &self,
        page_token: &str,
        page_size: i32,
    ) -> Result<(Vec<longrunning::Operation>, String), ExecutionError> {
        if page_size < 0 {
            return Err(ExecutionError::InvalidArgument(
                "page_size must not be negative".into(),
            ));
        }
        if page_token.len() > 256 {
            return Err(ExecutionError::InvalidArgument(
                "page_token is not one this server issued".into(),
            ));
        }
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let (page, more) = self.inner.registry.page(page_token, size);
        let next = match (more, page.last()) {
            (true, Some(last)) => last.name().to_owned(),
            _ => String::new(),
        };
        Ok((
            page.iter().map(|operation| operation.to_proto()).collect(),
            next,
        ))
    }

    /// Cancels an operation: a queued one leaves the queue, a running one has its
    /// process group killed; either completes with CANCELLED. Operations merged from
    /// identical Executes share one run, so all of them see the cancel. Cancelling a
    /// done operation does nothing.
    pub fn cancel(&self, name: &str) -> Result<(), ExecutionError> {
        let inner = &self.inner;
        let operation = inner.registry.get(name)?;
        if operation.is_done() {
            return Ok(());
        }
        operation.cancel(CancelReason::Client);
        if let Some(job) = inner.queue.remove(operation.name()) {
            inner.finish(
                &job.operation,
                cancelled_response(&job.operation),
                "cancelled",
            );
        }
        // Otherwise the cache check or the runner sees the token and completes it.
        Ok(())
    }

    /// Forgets a done operation; a running one is refused (FAILED_PRECONDITION).
    pub fn delete(&self, name: &str) -> Result<(), ExecutionError> {
        self.inner.registry.delete(name)
    }

    pub fn watch_load(&self) -> watch::Receiver<LoadReport> {
        self.inner.queue.watch_load()
    }

    pub fn load(&self) -> LoadReport {
        self.inner.queue.load()
    }

    /// How often streams repeat the current state when nothing changes.
    pub fn keepalive_interval(&self) -> Duration {
        self.inner.keepalive_interval
    }

    /// Stops taking work: new Executes get UNAVAILABLE, queued actions complete with
    /// UNAVAILABLE (clients retry elsewhere), running ones get `grace` to finish and are
    /// then killed. Returns once nothing runs.
    pub async fn drain(&self, grace: Duration) {
        let inner = &self.inner;
        inner.accepting.store(false, Ordering::Release);
        for job in inner.queue.close() {
            inner.finish(&job.operation, shutdown_response(), "cancelled");
        }
        let mut load = inner.queue.watch_load();
        let idle = |report: &LoadReport| report.executing == 0;
        if tokio::time::timeout(grace, load.wait_for(idle))
            .await
            .is_err()
        {
            tracing::warn!(?grace, "shutdown grace over: killing running actions");
            for operation in inner.registry.unfinished() {
                operation.cancel(CancelReason::Shutdown);
            }
            let _ = tokio::time::timeout(KILL_REPORT_TIMEOUT, load.wait_for(idle)).await;
        }
        inner.drained.cancel();
    }

    /// Fires once `drain` is over.
    pub fn drained(&self) -> CancellationToken {
        self.inner.drained.clone()
    }
}

impl EngineInner {
    /// Cache check, then into the queue.
    async fn admit(
        self: Arc<Self>,
        operation: Arc<Operation>,
        action: LoadedAction,
        slot: QueueSlot<Job>,
        skip_cache: bool,
    ) {
        if !skip_cache && let Some(response) = self.cached_response(operation.action_digest()).await
        {
            self.finish(&operation, response, "cache_hit");
            return;
        }
        if operation.cancel_token().is_cancelled() {
            self.finish(&operation, cancelled_response(&operation), "cancelled");
            return;
        }
        operation.advance(Stage::Queued);
        let job = Job {
            operation: operation.clone(),
            action,
            queued_at: SystemTime::now(),
        };
        if let Err(QueueClosed(job)) = slot.push(operation.name().to_owned(), job) {
            self.finish(&job.operation, shutdown_response(), "cancelled");
        }
    }

    /// The cached result for `digest`, if any. `ActionCache::get` already refuses a
    /// result whose blobs were evicted (the client's download would fail).
    async fn cached_response(&self, digest: &BlobDigest) -> Option<ExecuteResponse> {
        match self.action_cache.get(digest).await {
            Ok(result) => result.map(|result| ExecuteResponse {
                result: Some(result),
                cached_result: true,
                ..Default::default()
            }),
            Err(error) => {
                tracing::warn!(%error, action = %digest, "action cache lookup failed; running the action");
                None
            }
        }
    }

    async fn run_job(&self, job: Job) {
        let operation = job.operation;
        if operation.is_done() {
            return;
        }
        if operation.cancel_token().is_cancelled() {
            self.finish(&operation, cancelled_response(&operation), "cancelled");
            return;
        }
        operation.advance(Stage::Executing);
        let started = tokio::time::Instant::now();
        let (response, outcome) = self
            .runner
            .run(&job.action, &operation, job.queued_at)
            .await;
        self.metrics
            .action_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        self.finish(&operation, response, outcome.label());
    }

    fn finish(&self, operation: &Arc<Operation>, response: ExecuteResponse, outcome: &str) {
        if self.registry.complete(operation, response) {
            self.metrics.execution(outcome);
            tracing::debug!(
                operation = operation.name(),
                action = %operation.action_digest(),
                outcome,
                "operation completed"
            );
        }
    }
}

/// Deletes work directories a previous process left behind (killed mid-action).
/// Ours carry `own_prefix` (unique per process) and are left alone.
async fn remove_stale_work_dirs(scratch: std::path::PathBuf, own_prefix: String) {
    let Ok(mut entries) = tokio::fs::read_dir(&scratch).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(WORK_DIR_PREFIX) && !name.starts_with(&own_prefix) {
            remove_work_dir(&entry.path()).await;
        }
    }
}

/// CANCELLED for a client's cancel, UNAVAILABLE for a shutdown (clients retry that).
fn cancelled_response(operation: &Operation) -> ExecuteResponse {
    match operation.cancel_reason() {
        Some(CancelReason::Shutdown) => shutdown_response(),
        _ => error_response(
            &ExecutionError::Cancelled("the operation was cancelled".to_owned()),
            None,
        ),
    }
}

fn shutdown_response() -> ExecuteResponse {
    error_response(&ExecutionError::ShuttingDown, None)
}

fn limits(config: &Config) -> ActionLimits {
    ActionLimits {
        max_message_bytes: config.max_message_bytes as u64,
        default_timeout: config.default_action_timeout,
        max_timeout: config.max_action_timeout,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine_flow_tests.rs"]
mod flow_tests;
