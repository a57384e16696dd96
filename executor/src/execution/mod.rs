//! Execution: operations, the bounded queue, the runners and the action lifecycle
//! (CACHE_CHECK → QUEUED → EXECUTING → COMPLETED).
//!
//! - `engine`: the entry point services use; admission, merging, cache check, drain.
//! - `operations`: the registry of operations, their watch channels and retention.
//! - `queue`: the bounded FIFO, the runner pool and the load report.
//! - `action`: loading and checking an Action and its Command (paths, argv, timeout).
//! - `input_tree`: checking and materialising the input root.
//! - `runner`: one action's run in its work directory.
//! - `process`: spawning the process (process group, timeout, kill), sandboxed or not.
//! - `sandbox`: the bubblewrap command line and its start-up probe.
//! - `capture`: stdout and stderr into files under the output budget.
//! - `outputs`: collecting outputs into the CAS.
//! - `error`: the one error type and its statuses.
//!
//! It never touches storage internals: only the `Cas` / `ActionCache` contract.

pub mod action;
pub mod capture;
pub mod engine;
pub mod error;
pub mod input_tree;
pub mod operations;
pub mod outputs;
pub mod process;
pub mod queue;
pub mod runner;
pub mod sandbox;

#[cfg(test)]
pub(crate) mod test_harness;

pub use engine::Engine;
pub use error::ExecutionError;
pub use operations::{Operation, OperationState, Stage};
