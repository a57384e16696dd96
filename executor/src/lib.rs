//! remesh-executor: one node's complete REAPI backend.
//!
//! It knows nothing about the cluster: a proxy in front of it (remesh-proxy) routes
//! work here and reads the load it reports. Everything a single Bazel needs is here:
//! Capabilities, CAS, ByteStream, ActionCache, Execution, Operations, health, and the
//! `remesh.load.v1.Load` service.
//!
//! # Layout
//! - `config`: the TOML file, flags and environment, validated.
//! - `digest`: validated SHA-256 digests, the names of blobs.
//! - `storage`: disk CAS with LRU eviction, action cache, optional backing cache.
//! - `execution`: operations, the bounded queue, runners and the action lifecycle.
//! - `resource_name`: ByteStream resource names, parsed and validated.
//! - `service`: one file per gRPC service, translating requests into calls on the above.
//! - `server`: binds every service to its port and runs until shutdown.
//! - `flow_control`: the HTTP/2 frame size and windows the gRPC port advertises.
//! - `decode_status`: the precise status of a request tonic could not read.
//! - `metrics`: Prometheus counters and the `/metrics` endpoint.
//! - `fuzzing`: entry points of the fuzz targets and of their corpus replay test.
#![forbid(unsafe_code)]

pub mod config;
pub mod decode_status;
pub mod digest;
pub mod execution;
pub mod flow_control;
pub mod fuzzing;
pub mod grpc_metrics;
pub mod metrics;
pub mod resource_name;
pub mod server;
pub mod service;
pub mod storage;

pub use config::{Args, Config};
/// Request metadata asking for an answer from the local tier only (defined once, in
/// remesh-proto, for the proxy that sends it and the executor that honours it).
pub use remesh_proto::LOCAL_ONLY_HEADER;
pub use server::{Executor, Listeners, ReadyLine, RunError, run};
