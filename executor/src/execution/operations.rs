//! The registry of operations: every Execute gets one, named `operations/<uuid v4>`.
//!
//! It owns each operation's state (stage, final response) behind a `watch` channel so
//! any number of Execute / WaitExecution streams follow it, the index of in-flight
//! operations by action digest (how identical actions are merged), and retention:
//! finished operations stay answerable for `retention`, and at most `max_retained` of
//! them are kept (oldest forgotten first), so memory is bounded by the queue, the
//! runners and the retention window. It never runs anything itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prost::Message;
use remesh_proto::reapi::{ExecuteOperationMetadata, ExecuteResponse, execution_stage};
use remesh_proto::{longrunning, protobuf};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::digest::BlobDigest;
use crate::execution::error::ExecutionError;

pub const METADATA_TYPE_URL: &str =
    "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteOperationMetadata";
pub const RESPONSE_TYPE_URL: &str =
    "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse";

/// Where an operation is in its life; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    CacheCheck,
    Queued,
    Executing,
    Completed,
}

impl Stage {
    fn to_proto(self) -> execution_stage::Value {
        match self {
            Self::CacheCheck => execution_stage::Value::CacheCheck,
            Self::Queued => execution_stage::Value::Queued,
            Self::Executing => execution_stage::Value::Executing,
            Self::Completed => execution_stage::Value::Completed,
        }
    }
}

/// What watchers see: the stage, and the response once the operation is done.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationState {
    pub stage: Stage,
    pub response: Option<Arc<ExecuteResponse>>,
}

impl OperationState {
    pub fn is_done(&self) -> bool {
        self.response.is_some()
    }
}

/// Why an operation was cancelled; decides the status its response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// CancelOperation from a client: status CANCELLED.
    Client,
    /// Shutdown grace ran out: status UNAVAILABLE, so the client retries elsewhere.
    Shutdown,
}

/// One operation. Cheap to share: the registry, the runner and every stream hold an
/// `Arc` of it.
#[derive(Debug)]
pub struct Operation {
    name: String,
    action_digest: BlobDigest,
    state: watch::Sender<OperationState>,
    cancel: CancellationToken,
    cancel_reason: OnceLock<CancelReason>,
}

impl Operation {
    fn new(action_digest: BlobDigest, stage: Stage) -> Self {
        let (state, _) = watch::channel(OperationState {
            stage,
            response: None,
        });
        Self {
            name: format!("operations/{}", uuid::Uuid::new_v4()),
            action_digest,
            state,
            cancel: CancellationToken::new(),
            cancel_reason: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn action_digest(&self) -> &BlobDigest {
        &self.action_digest
    }

    pub fn subscribe(&self) -> watch::Receiver<OperationState> {
        self.state.subscribe()
    }

    pub fn state(&self) -> OperationState {
        self.state.borrow().clone()
    }

    pub fn is_done(&self) -> bool {
        self.state.borrow().is_done()
    }

    /// Moves to a later stage; ignored once done or when it would go backwards.
    pub fn advance(&self, stage: Stage) {
        self.state.send_if_modified(|state| {
            let moves = !state.is_done() && stage > state.stage && stage != Stage::Completed;
            if moves {
                state.stage = stage;
            }
            moves
        });
    }

    /// Fires the cancellation token; the first reason given wins.
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.cancel_reason.set(reason);
        self.cancel.cancel();
    }

    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.cancel_reason.get().copied()
    }

    /// Sets the final response; only the first call counts (returns whether it did).
    fn finish(&self, response: ExecuteResponse) -> bool {
        let response = Arc::new(response);
        self.state.send_if_modified(move |state| {
            if state.is_done() {
                return false;
            }
            state.stage = Stage::Completed;
            state.response = Some(response);
            true
        })
    }

    /// The `google.longrunning.Operation` for the current state.
    pub fn to_proto(&self) -> longrunning::Operation {
        operation_proto(&self.name, &self.action_digest, &self.state.borrow())
    }
}

/// The wire form of an operation in `state`: metadata always, response once done,
/// `error` never (REAPI puts failures in `ExecuteResponse.status`).
pub fn operation_proto(
    name: &str,
    action_digest: &BlobDigest,
    state: &OperationState,
) -> longrunning::Operation {
    let metadata = ExecuteOperationMetadata {
        stage: state.stage.to_proto() as i32,
        action_digest: Some(action_digest.to_proto()),
        ..Default::default()
    };
    longrunning::Operation {
        name: name.to_owned(),
        metadata: Some(protobuf::Any {
            type_url: METADATA_TYPE_URL.to_owned(),
            value: metadata.encode_to_vec(),
        }),
        done: state.is_done(),
        result: state.response.as_ref().map(|response| {
            longrunning::operation::Result::Response(protobuf::Any {
                type_url: RESPONSE_TYPE_URL.to_owned(),
                value: response.encode_to_vec(),
            })
        }),
    }
}

/// Whether Execute created a new operation or joined an identical one in flight.
#[derive(Debug)]
pub enum Admission {
    New(Arc<Operation>),
    Merged(Arc<Operation>),
}

/// All operations this executor knows about.
pub struct OperationRegistry {
    inner: Mutex<Inner>,
    retention: Duration,
    max_retained: usize,
}

#[derive(Default)]
struct Inner {
    /// Ordered by name so ListOperations pages are stable.
    by_name: BTreeMap<String, Arc<Operation>>,
    /// Not-done operations that identical Executes may join.
    in_flight: HashMap<BlobDigest, Arc<Operation>>,
    /// Done operations in completion order, with the instant they expire.
    completed: VecDeque<(Instant, Arc<Operation>)>,
}

impl OperationRegistry {
    /// `retention`: how long a done operation stays answerable; `max_retained`: how
    /// many done operations are kept at most (must not be zero).
    pub fn new(retention: Duration, max_retained: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            retention,
            max_retained: max_retained.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections below never panic half-way; a poisoned lock still holds
        // consistent maps.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the in-flight operation of `action_digest` if there is one that may be
    /// joined, else registers a new one at `stage`.
    ///
    /// A request with `skip_cache_lookup` does not join an operation still in its
    /// cache check: that one may yet answer from the cache, which the client asked not
    /// to get. Joining a queued or executing one is fine: that is a fresh run.
    pub fn admit(
        &self,
        action_digest: &BlobDigest,
        skip_cache_lookup: bool,
        stage: Stage,
    ) -> Admission {
        // One critical section: identical Executes racing here end up merged.
        let mut inner = self.lock();
        if let Some(existing) = joinable_in(&inner, action_digest, skip_cache_lookup) {
            return Admission::Merged(existing);
        }
        self.sweep(&mut inner);
        let operation = Arc::new(Operation::new(action_digest.clone(), stage));
        inner
            .by_name
            .insert(operation.name.clone(), operation.clone());
        inner
            .in_flight
            .insert(action_digest.clone(), operation.clone());
        Admission::New(operation)
    }

    /// The in-flight operation of `action_digest` that a request may join, if any (see
    /// `admit` for the rule).
    pub fn joinable(
        &self,
        action_digest: &BlobDigest,
        skip_cache_lookup: bool,
    ) -> Option<Arc<Operation>> {
        joinable_in(&self.lock(), action_digest, skip_cache_lookup)
    }

    /// Registers an operation that is done from the start (a cache hit answered
    /// without queueing); it is never joinable.
    pub fn insert_done(
        &self,
        action_digest: &BlobDigest,
        response: ExecuteResponse,
    ) -> Arc<Operation> {
        let operation = Arc::new(Operation::new(action_digest.clone(), Stage::CacheCheck));
        operation.finish(response);
        let mut inner = self.lock();
        self.sweep(&mut inner);
        inner
            .by_name
            .insert(operation.name.clone(), operation.clone());
        self.retain(&mut inner, operation.clone());
        operation
    }

    /// Finishes `operation` with `response` (first completion wins) and starts its
    /// retention clock. Returns whether this call finished it.
    pub fn complete(&self, operation: &Arc<Operation>, response: ExecuteResponse) -> bool {
        if !operation.finish(response) {
            return false;
        }
        let mut inner = self.lock();
        let indexed = inner
            .in_flight
            .get(&operation.action_digest)
            .is_some_and(|current| Arc::ptr_eq(current, operation));
        if indexed {
            inner.in_flight.remove(&operation.action_digest);
        }
        if inner.by_name.contains_key(&operation.name) {
            self.retain(&mut inner, operation.clone());
        }
        self.sweep(&mut inner);
        true
    }

    fn retain(&self, inner: &mut Inner, operation: Arc<Operation>) {
        inner
            .completed
            .push_back((Instant::now() + self.retention, operation));
    }

    /// Forgets done operations past their retention, and the oldest ones past
    /// `max_retained`.
    fn sweep(&self, inner: &mut Inner) {
        let now = Instant::now();
        while let Some((expires, operation)) = inner.completed.front() {
            if *expires > now && inner.completed.len() <= self.max_retained {
                break;
            }
            let name = operation.name.clone();
            inner.completed.pop_front();
            inner.by_name.remove(&name);
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<Operation>, ExecutionError> {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        inner
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ExecutionError::UnknownOperation(name.to_owned()))
    }

    /// Up to `page_size` operations with names after `after`, in name order, and
    /// whether more follow.
    pub fn page(&self, after: &str, page_size: usize) -> (Vec<Arc<Operation>>, bool) {
        use std::ops::Bound;
        let mut inner = self.lock();
        self.sweep(&mut inner);
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.to_owned())
        };
        let mut iter = inner
            .by_name
            .range((start, Bound::Unbounded))
            .map(|(_, operation)| operation.clone());
        let page: Vec<_> = iter.by_ref().take(page_size).collect();
        let more = iter.next().is_some();
        (page, more)
    }

    /// Forgets a done operation. A running one is refused with FAILED_PRECONDITION:
    /// forgetting it would orphan its watchers and its result; cancel it first.
    pub fn delete(&self, name: &str) -> Result<(), ExecutionError> {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        let operation = inner
            .by_name
            .get(name)
            .ok_or_else(|| ExecutionError::UnknownOperation(name.to_owned()))?;
        if !operation.is_done() {
            return Err(ExecutionError::FailedPrecondition(format!(
                "operation {name:?} is still running; cancel it first"
            )));
        }
        inner.by_name.remove(name);
        // Its entry in `completed` goes when it expires; `sweep` tolerates that.
        Ok(())
    }

    /// Every operation not yet done (for shutdown).
    pub fn unfinished(&self) -> Vec<Arc<Operation>> {
        let inner = self.lock();
        inner
            .by_name
            .values()
            .filter(|operation| !operation.is_done())
            .cloned()
            .collect()
    }

    /// Operations known right now, done or not.
    pub fn len(&self) -> usize {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        inner.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn joinable_in(
    inner: &Inner,
    action_digest: &BlobDigest,
    skip_cache_lookup: bool,
) -> Option<Arc<Operation>> {
    let existing = inner.in_flight.get(action_digest)?;
    let state = existing.state();
    let joinable = !state.is_done() && (!skip_cache_lookup || state.stage >= Stage::Queued);
    joinable.then(|| existing.clone())
}

#[cfg(test)]
#[path = "operations_tests.rs"]
mod tests;
