//! `Capabilities.GetCapabilities`: what this executor supports, so clients pick the
//! right digest function, batch sizes and compressors.

use remesh_proto::reapi::capabilities_server::Capabilities;
use remesh_proto::reapi::{
    ActionCacheUpdateCapabilities, CacheCapabilities, ExecutionCapabilities,
    GetCapabilitiesRequest, ServerCapabilities, compressor, digest_function,
    symlink_absolute_path_strategy,
};
use remesh_proto::semver::SemVer;
use tonic::{Request, Response, Status};

use crate::config::Config;

pub struct CapabilitiesService {
    max_batch_bytes: u64,
}

impl CapabilitiesService {
    pub fn new(config: &Config) -> Self {
        Self {
            max_batch_bytes: config.max_batch_bytes,
        }
    }

    /// The capabilities, the same for every instance name.
    pub fn capabilities(&self) -> ServerCapabilities {
        let version = |minor| SemVer {
            major: 2,
            minor,
            patch: 0,
            prerelease: String::new(),
        };
        ServerCapabilities {
            cache_capabilities: Some(CacheCapabilities {
                digest_functions: vec![digest_function::Value::Sha256 as i32],
                action_cache_update_capabilities: Some(ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                max_batch_total_size_bytes: self.max_batch_bytes as i64,
                // Input trees with absolute symlink targets are refused at execution, so
                // clients must be told not to send them.
                symlink_absolute_path_strategy: symlink_absolute_path_strategy::Value::Disallowed
                    as i32,
                // ByteStream only: batch calls take IDENTITY, so none is listed for them.
                supported_compressors: vec![compressor::Value::Zstd as i32],
                ..Default::default()
            }),
            execution_capabilities: Some(ExecutionCapabilities {
                digest_function: digest_function::Value::Sha256 as i32,
                exec_enabled: true,
                digest_functions: vec![digest_function::Value::Sha256 as i32],
                ..Default::default()
            }),
            low_api_version: Some(version(0)),
            high_api_version: Some(version(3)),
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(
        &self,
        _request: Request<GetCapabilitiesRequest>,
    ) -> Result<Response<ServerCapabilities>, Status> {
        Ok(Response::new(self.capabilities()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advertises_sha256_zstd_and_the_batch_limit() {
        let config = Config {
            max_batch_bytes: 3 << 20,
            ..Config::default()
        };
        let service = CapabilitiesService::new(&config);
        let request = Request::new(GetCapabilitiesRequest {
            instance_name: "main".into(),
        });
        let capabilities = service
            .get_capabilities(request)
            .await
            .unwrap()
            .into_inner();
        let cache = capabilities.cache_capabilities.unwrap();
        assert_eq!(
            cache.digest_functions,
            vec![digest_function::Value::Sha256 as i32]
        );
        assert_eq!(cache.max_batch_total_size_bytes, 3 << 20);
        assert!(
            cache
                .action_cache_update_capabilities
                .unwrap()
                .update_enabled
        );
        assert_eq!(
            cache.symlink_absolute_path_strategy,
            symlink_absolute_path_strategy::Value::Disallowed as i32,
            "execution refuses absolute symlink targets in input trees"
        );
        assert_eq!(
            cache.supported_compressors,
            vec![compressor::Value::Zstd as i32]
        );
        let execution = capabilities.execution_capabilities.unwrap();
        assert!(execution.exec_enabled);
        assert_eq!(
            execution.digest_function,
            digest_function::Value::Sha256 as i32
        );
        let (low, high) = (
            capabilities.low_api_version.unwrap(),
            capabilities.high_api_version.unwrap(),
        );
        assert_eq!((low.major, low.minor, high.major, high.minor), (2, 0, 2, 3));
    }
}
