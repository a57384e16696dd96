//! Execution: operations, the bounded queue, the runners and the action lifecycle
//! (CACHE_CHECK → QUEUED → EXECUTING → COMPLETED).
