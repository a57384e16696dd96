//! `ActionCache`: GetActionResult and UpdateActionResult over `storage::ActionCache`.
//!
//! A result whose blobs are gone is NOT_FOUND (the storage layer checks), so the client
//! re-executes instead of failing to download. Updates are refused unless every digest
//! in the result is well formed: nothing malformed ever reaches the cache.

use remesh_proto::reapi::action_cache_server::ActionCache as ActionCacheApi;
use remesh_proto::reapi::{ActionResult, GetActionResultRequest, UpdateActionResultRequest};
use tonic::{Request, Response, Status};

use super::{check_digest_function, client_digest};
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
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let action = client_digest("action_digest", request.action_digest.as_ref())?;
        match self.cache.get(&action).await? {
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
