//! The benchmark program's parts (`src/bin/bench.rs` only parses the command line).
//!
//! Benchmarks are programs, not timed tests: every load loop is bounded both in count
//! and in time, traffic stays on loopback, and every process is started by the
//! benchmark itself and stopped by pid. Comparisons are measured side by side in one
//! run, in interleaved rounds (the order of the contenders rotates every round), and
//! reported as medians with ratios, because the machine they run on is shared.
//!
//! # Layout
//! - `stats`: latency samples, medians, percentiles, the Markdown table.
//! - `cpu_time`: what a relay process spent, from `/proc`, for CPU per call.
//! - `load`: the bounded closed-loop load driver every round uses.
//! - `workloads`: the REAPI round trips measured (FindMissingBlobs, ByteStream, Execute).
//! - `bazel_upload`: a ByteStream Write framed the way Bazel frames it.
//! - `executor_suite`: one executor on its own (the original benchmark).
//! - `passthrough_suite`: FindMissingBlobs and ByteStream direct to an executor, through
//!   `remesh-proxy` and through nginx.
//! - `forward_suite`: Execute run by the node the client talks to vs forwarded to a peer.
//! - `fill_suite`: blobs found on the node asked, through the fill endpoint, and through
//!   a shared backing cache.

pub mod bazel_upload;
pub mod cpu_time;
pub mod executor_suite;
pub mod fill_suite;
pub mod forward_suite;
pub mod load;
pub mod passthrough_suite;
pub mod stats;
pub mod workloads;

use std::time::Duration;

/// Parallel HTTP/2 connections a concurrent phase spreads its streams over, as a client
/// with several channels (Bazel opens many) would.
pub const CONNECTIONS: usize = 4;

/// `RUST_LOG` for every proxy a benchmark starts: the default a node runs with, so that
/// what is measured is what a user gets (no request logs at this level).
pub const PROXY_LOG_FILTER: &str = "info";

/// Bounds of one load loop: it stops at whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub count: usize,
    pub time: Duration,
}

impl Limits {
    pub const fn new(count: usize, seconds: u64) -> Self {
        Self {
            count,
            time: Duration::from_secs(seconds),
        }
    }
}

/// The order contenders go in during round `round`: rotated every round, so that none
/// always runs first (cold) or last (after the others warmed the backend's caches).
pub fn rotation(contenders: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..contenders).map(move |i| (i + round) % contenders)
}

/// The executor's data dir, on tmpfs where there is one. On disk, 256 MiB writes
/// were bimodal for every contender, direct included (about 300 or 700 MB/s from
/// round to round, as writeback came and went), which hid the relays' differences.
pub fn in_memory_dir() -> anyhow::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("remesh-bench")
            .tempdir_in(shm)
    {
        return Ok(dir);
    }
    eprintln!("no writable /dev/shm: the executor's CAS is on disk, so writes may be bimodal");
    Ok(tempfile::tempdir()?)
}
