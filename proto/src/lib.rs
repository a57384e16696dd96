//! remesh-proto: the gRPC types every remesh crate speaks.
//!
//! The REAPI v2, ByteStream, longrunning and google.rpc types come from the
//! `bazel-remote-apis` crate and are re-exported here so every crate names them the same
//! way; `load` is remesh's own service between an executor and its proxy.
#![forbid(unsafe_code)]

pub use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
pub use bazel_remote_apis::build::bazel::semver;
pub use bazel_remote_apis::google::bytestream;
pub use bazel_remote_apis::google::longrunning;
pub use bazel_remote_apis::google::protobuf;
pub use bazel_remote_apis::google::rpc;

/// Request metadata asking a remesh executor to answer from its local storage tier
/// only, never from its backing cache. A node's fill endpoint (remesh-proxy's
/// `fill_listen`) sends it with every question to its peers, so that a miss on one
/// node never turns into every node asking every other in turn.
pub const LOCAL_ONLY_HEADER: &str = "remesh-local-only";

/// `remesh.load.v1`: an executor's queue depth and capacity, for its proxy.
pub mod load {
    tonic::include_proto!("remesh.load.v1");
}

/// `google.rpc.PreconditionFailure`, the error detail that lists missing blobs.
pub mod error_details {
    tonic::include_proto!("google.rpc");
}
