//! One file per gRPC service: each translates requests into calls on `storage` and
//! `execution`, validates what the client sent, and maps errors to precise statuses.
//!
//! Reads carrying `LOCAL_ONLY_HEADER` (FindMissingBlobs, BatchReadBlobs, GetTree,
//! ByteStream Read, GetActionResult) are answered from the local tier only, through
//! `storage_for`.

mod action_cache;
mod bytestream;
mod capabilities;
mod cas;
mod execution;
#[cfg(test)]
mod limits_tests;
mod load;
#[cfg(test)]
mod local_only_tests;
mod operations;
#[cfg(test)]
pub(crate) mod test_support;

use remesh_proto::reapi::digest_function;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;

pub use action_cache::ActionCacheService;
pub use bytestream::ByteStreamService;
pub use capabilities::CapabilitiesService;
pub use cas::CasService;
pub use execution::ExecutionService;
pub use load::LoadService;
pub use operations::OperationsService;

use crate::config::Config;
use crate::digest::{BlobDigest, DigestError};
use crate::execution::Engine;
use crate::storage::{ActionCache, Cas};

/// Capabilities, ContentAddressableStorage, ByteStream and ActionCache as gRPC routes,
/// each limited to `config.max_message_bytes` per message both ways.
pub fn storage_routes(config: &Config, cas: &Cas, action_cache: &ActionCache) -> Routes {
    use remesh_proto::bytestream::byte_stream_server::ByteStreamServer;
    use remesh_proto::reapi::action_cache_server::ActionCacheServer;
    use remesh_proto::reapi::capabilities_server::CapabilitiesServer;
    use remesh_proto::reapi::content_addressable_storage_server::ContentAddressableStorageServer;

    let limit = config.max_message_bytes;
    let mut routes = Routes::builder();
    routes
        .add_service(
            CapabilitiesServer::new(CapabilitiesService::new(config))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            ContentAddressableStorageServer::new(CasService::new(config, cas.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            ByteStreamServer::new(ByteStreamService::new(cas.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            ActionCacheServer::new(ActionCacheService::new(action_cache.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
    routes.routes()
}

/// `routes` plus Execution and google.longrunning.Operations, each limited to
/// `config.max_message_bytes` per message both ways.
pub fn with_execution_routes(routes: Routes, config: &Config, engine: &Engine) -> Routes {
    use remesh_proto::longrunning::operations_server::OperationsServer;
    use remesh_proto::reapi::execution_server::ExecutionServer;

    let limit = config.max_message_bytes;
    routes
        .add_service(
            ExecutionServer::new(ExecutionService::new(engine.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            OperationsServer::new(OperationsService::new(engine.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
}

/// `remesh.load.v1.Load` as gRPC routes (for the load port).
pub fn load_routes(config: &Config, engine: &Engine) -> Routes {
    use remesh_proto::load::load_server::LoadServer;

    Routes::new(
        LoadServer::new(LoadService::new(engine.clone()))
            .max_decoding_message_size(config.max_message_bytes),
    )
}

/// A storage handle with a view that never reads from the backing cache.
pub(crate) trait LocalOnly: Clone {
    fn local_only(&self) -> Self;
}

impl LocalOnly for Cas {
    fn local_only(&self) -> Self {
        Cas::local_only(self)
    }
}

impl LocalOnly for ActionCache {
    fn local_only(&self) -> Self {
        ActionCache::local_only(self)
    }
}

/// The storage a read is answered from: `storage` itself, or its local-only view when
/// the request carries `LOCAL_ONLY_HEADER`. Such requests come from another node's fill
/// endpoint; reading through here would ask this node's backing cache, that is its own
/// fill endpoint, which would ask every node again.
pub(crate) fn storage_for<S: LocalOnly>(storage: &S, metadata: &MetadataMap) -> S {
    if metadata.contains_key(crate::LOCAL_ONLY_HEADER) {
        storage.local_only()
    } else {
        storage.clone()
    }
}

/// Refuses any digest function but SHA-256 (0 means "the default", SHA-256 here).
pub(crate) fn check_digest_function(value: i32) -> Result<(), Status> {
    if value == 0 || value == digest_function::Value::Sha256 as i32 {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "digest function {value} is not supported: this server uses SHA-256 only"
        )))
    }
}

/// Validates a digest a client sent, naming the field in the error.
pub(crate) fn client_digest(
    field: &str,
    digest: Option<&remesh_proto::reapi::Digest>,
) -> Result<BlobDigest, Status> {
    BlobDigest::from_field(digest)
        .map_err(|error: DigestError| Status::invalid_argument(format!("{field}: {error}")))
}

/// A `tonic::Status` as the `google.rpc.Status` of a per-item batch response.
pub(crate) fn rpc_status(status: &Status) -> remesh_proto::rpc::Status {
    remesh_proto::rpc::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    }
}
