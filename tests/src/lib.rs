//! remesh-tests: drives the real binaries, a real Bazel and a real BuildGrid.
//!
//! The library is the harness the integration tests in `tests/` and the benchmark in
//! `src/bin/bench.rs` share. Every helper spawns real processes on loopback, waits for
//! them by polling with a deadline, and kills exactly the processes it started (by pid)
//! when dropped.
//!
//! # Layout
//! - `locations`: where the workspace, the build output and `shared/` are, and making
//!   sure the `remesh-executor` binary under test is built and fresh.
//! - `polling`: waiting for a condition with a deadline (never a fixed sleep).
//! - `executor_process`: spawns `remesh-executor`, reads its ready line, stops it.
//! - `reapi_client`: typed gRPC clients and the few REAPI round trips tests repeat
//!   (digests, ByteStream upload and download, building and running an action).
//! - `buildgrid`: a cache-only BuildGrid server, an independent REAPI implementation.
//! - `raw_h2`: a raw HTTP/2 gRPC client that sends exactly the bytes a test builds.
//! - `proxy_process`: spawns `remesh-proxy serve` (alone in front of an executor, or
//!   joined to others), reads its ready line and admin port, stops it.
//! - `hostile`: hostile-input cases shared by the `hostile_*` suites; `integrity`:
//!   checks that nothing escaped the data dir and the CAS is intact.
//! - `bazel`: copies a test workspace and runs the real Bazel client against a server.
//! - `nginx`: Debian's nginx as a `grpc_pass` reverse proxy, the benchmarks' yardstick.
//! - `bench`: the benchmark program's suites (`src/bin/bench.rs` is its `main`).
#![forbid(unsafe_code)]

pub mod bazel;
pub mod bench;
pub mod buildgrid;
pub mod executor_process;
pub mod hostile;
pub mod integrity;
pub mod locations;
pub mod nginx;
pub mod polling;
pub mod proxy_process;
pub mod raw_h2;
pub mod reapi_client;

pub use bazel::{BazelOutcome, BazelWorkspace};
pub use buildgrid::BuildGridServer;
pub use executor_process::{ExecutorOptions, ExecutorProcess};
pub use reapi_client::{Clients, blob_digest};
