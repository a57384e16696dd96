//! `ActionCache`: GetActionResult and UpdateActionResult over `storage::ActionCache`.
//!
//! A result whose blobs are gone is NOT_FOUND (the storage layer checks), so the client
//! re-executes instead of failing to download. Updates are refused unless every digest
//! in the result is well formed: nothing malformed ever reaches the cache.

use remesh_proto::reapi::action_cache_server::ActionCache as ActionCacheApi;
use remesh_proto::reapi::{ActionResult, GetActionResultRequest, UpdateActionResultRequest};
use tonic::{Request, Response, Status};

use super::{check_digest_function, client_digest, storage_for};
use crate::storage::ActionCache;

pub struct ActionCacheService {
    cache: ActionCache,
}

impl ActionCacheService {
    pub fn new(cache: ActionCache) -> Self {
        Self { cache }
    }
}

#[tonic::async_trait]
impl ActionCacheApi for ActionCacheService {
    async fn get_action_result(
        &self,
        request: Request<GetActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let cache = storage_for(&self.cache, request.metadata());
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let action = client_digest("action_digest", request.action_digest.as_ref())?;
        match cache.get(&action).await? {
            Some(result) => Ok(Response::new(result)),
            None => Err(Status::not_found(format!(
                "no cached result for action {action}"
            ))),
        }
    }

    async fn update_action_result(
        &self,
        request: Request<UpdateActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let action = client_digest("action_digest", request.action_digest.as_ref())?;
        let result = request
            .action_result
            .ok_or_else(|| Status::invalid_argument("action_result is missing"))?;
        validate_result(&result)?;
        self.cache.put(&action, &result).await?;
        Ok(Response::new(result))
    }
}

/// Every digest an ActionResult names must be well formed.
fn validate_result(result: &ActionResult) -> Result<(), Status> {
    for file in &result.output_files {
        client_digest(
            &format!("output_files[{:?}].digest", file.path),
            file.digest.as_ref(),
        )?;
    }
    for directory in &result.output_directories {
        client_digest(
            &format!("output_directories[{:?}].tree_digest", directory.path),
            directory.tree_digest.as_ref(),
        )?;
    }
    for (field, digest) in [
        ("stdout_digest", &result.stdout_digest),
        ("stderr_digest", &result.stderr_digest),
    ] {
        if digest.is_some() {
            client_digest(field, digest.as_ref())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use remesh_proto::reapi::{Digest, OutputFile};
    use tonic::Code;

    use super::*;
    use crate::digest::BlobDigest;
    use crate::service::test_support::TestStorage;

    fn get(action: &BlobDigest) -> Request<GetActionResultRequest> {
        Request::new(GetActionResultRequest {
            instance_name: "main".into(),
            action_digest: Some(action.to_proto()),
            ..Default::default()
        })
    }

    fn update(action: &BlobDigest, result: ActionResult) -> Request<UpdateActionResultRequest> {
        Request::new(UpdateActionResultRequest {
            instance_name: "main".into(),
            action_digest: Some(action.to_proto()),
            action_result: Some(result),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn update_then_get_and_not_found_without_blobs() {
        let storage = TestStorage::open().await;
        let service = ActionCacheService::new(storage.action_cache.clone());
        let action = BlobDigest::of_bytes(b"action");
        assert_eq!(
            service
                .get_action_result(get(&action))
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );

        let output = BlobDigest::of_bytes(b"output");
        let result = ActionResult {
            output_files: vec![OutputFile {
                path: "bin/tool".into(),
                digest: Some(output.to_proto()),
                is_executable: true,
                ..Default::default()
            }],
            exit_code: 0,
            ..Default::default()
        };
        service
            .update_action_result(update(&action, result.clone()))
            .await
            .unwrap();
        let error = service.get_action_result(get(&action)).await.unwrap_err();
        assert_eq!(
            error.code(),
            Code::NotFound,
            "the output blob is not stored"
        );
        storage
            .cas
            .write_bytes(&output, Bytes::from_static(b"output"))
            .await
            .unwrap();
        let served = service
            .get_action_result(get(&action))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(served, result);
    }

    #[tokio::test]
    async fn malformed_digests_are_refused() {
        let storage = TestStorage::open().await;
        let service = ActionCacheService::new(storage.action_cache.clone());
        let action = BlobDigest::of_bytes(b"action");
        let result = ActionResult {
            stdout_digest: Some(Digest {
                hash: "../../etc/passwd".into(),
                size_bytes: 3,
            }),
            ..Default::default()
        };
        let error = service
            .update_action_result(update(&action, result))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(
            error.message().contains("stdout_digest"),
            "{}",
            error.message()
        );
        let mut request = get(&action);
        request.get_mut().action_digest = None;
        assert_eq!(
            service.get_action_result(request).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        let mut request = get(&action);
        request.get_mut().digest_function = 2; // SHA-1
        assert_eq!(
            service.get_action_result(request).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
