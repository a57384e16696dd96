//! `ContentAddressableStorage`: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs and
//! GetTree (in `get_tree`). Batch calls are bounded by `max_batch_bytes` as advertised
//! in Capabilities; larger blobs must go through ByteStream.

mod get_tree;

use bytes::Bytes;
use futures::StreamExt;
use remesh_proto::reapi::content_addressable_storage_server::ContentAddressableStorage;
use remesh_proto::reapi::{
    BatchReadBlobsRequest, BatchReadBlobsResponse, BatchUpdateBlobsRequest,
    BatchUpdateBlobsResponse, FindMissingBlobsRequest, FindMissingBlobsResponse,
    GetChunkMappingRequest, GetChunkMappingResponse, GetTreeRequest, GetTreeResponse,
    RegisterChunkMappingRequest, RegisterChunkMappingResponse, SpliceBlobRequest,
    SpliceBlobResponse, SplitBlobRequest, SplitBlobResponse, batch_read_blobs_response,
    batch_update_blobs_request, batch_update_blobs_response, compressor,
};
use tonic::{Request, Response, Status};

use super::{check_digest_function, client_digest, rpc_status, storage_for};
use crate::config::Config;
use crate::digest::BlobDigest;
use crate::storage::Cas;

/// Blobs of one batch call stored or read at once: enough to overlap disk and backing
/// round trips without one call monopolising the runtime.
const BATCH_CONCURRENCY: usize = 8;

/// Upper bound of the bytes a BatchReadBlobs response entry adds to its data (digest,
/// status, compressor, field framing).
const RESPONSE_ENTRY_OVERHEAD: u64 = 128;

#[derive(Clone)]
pub struct CasService {
    cas: Cas,
    max_batch_bytes: u64,
    max_message_bytes: usize,
}

impl CasService {
    pub fn new(config: &Config, cas: Cas) -> Self {
        Self {
            cas,
            max_batch_bytes: config.max_batch_bytes,
            max_message_bytes: config.max_message_bytes,
        }
    }

    /// Stores one entry of a BatchUpdateBlobs; every failure is this entry's status.
    async fn update_one(
        &self,
        entry: batch_update_blobs_request::Request,
    ) -> Result<BlobDigest, Status> {
        let digest = client_digest("digest", entry.digest.as_ref())?;
        // Same refusal as a ByteStream upload of that digest, whatever the data.
        self.cas.check_fits(&digest)?;
        if entry.compressor != compressor::Value::Identity as i32 {
            return Err(Status::invalid_argument(format!(
                "compressor {} is not supported in batch updates; use IDENTITY or ByteStream",
                entry.compressor
            )));
        }
        if entry.data.len() as u64 != digest.size() {
            return Err(Status::invalid_argument(format!(
                "{} bytes sent for digest {digest}",
                entry.data.len()
            )));
        }
        self.cas
            .write_bytes(&digest, Bytes::from(entry.data))
            .await?;
        Ok(digest)
    }
}

type TreeStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetTreeResponse, Status>> + Send>>;
type ChunkMappingStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetChunkMappingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ContentAddressableStorage for CasService {
    async fn find_missing_blobs(
        &self,
        request: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let cas = storage_for(&self.cas, request.metadata());
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let digests = request
            .blob_digests
            .iter()
            .map(|digest| client_digest("blob_digests", Some(digest)))
            .collect::<Result<Vec<_>, _>>()?;
        let missing = cas.find_missing(&digests).await?;
        Ok(Response::new(FindMissingBlobsResponse {
            missing_blob_digests: missing.iter().map(BlobDigest::to_proto).collect(),
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<BatchUpdateBlobsRequest>,
    ) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let total: u64 = request.requests.iter().map(|r| r.data.len() as u64).sum();
        if total > self.max_batch_bytes {
            return Err(Status::invalid_argument(format!(
                "batch of {total} bytes exceeds max_batch_total_size_bytes {}",
                self.max_batch_bytes
            )));
        }
        let responses = futures::stream::iter(request.requests)
            .map(|entry| async move {
                let named = entry.digest.clone();
                let status = match self.update_one(entry).await {
                    Ok(_) => remesh_proto::rpc::Status::default(),
                    Err(status) => rpc_status(&status),
                };
                batch_update_blobs_response::Response {
                    digest: named,
                    status: Some(status),
                }
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
        Ok(Response::new(BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        let cas = &storage_for(&self.cas, request.metadata());
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let digests = request
            .digests
            .iter()
            .map(|digest| client_digest("digests", Some(digest)))
            .collect::<Result<Vec<_>, _>>()?;
        let total = digests
            .iter()
            .try_fold(0u64, |sum, digest| sum.checked_add(digest.size()))
            .unwrap_or(u64::MAX);
        if total > self.max_batch_bytes {
            return Err(Status::invalid_argument(format!(
                "batch asks for {total} bytes, more than max_batch_total_size_bytes {}; \
                 read large blobs with ByteStream",
                self.max_batch_bytes
            )));
        }
        // Each entry repeats its digest and adds a status: many tiny blobs could
        // otherwise make a response larger than any client accepts.
        let framed = total + (digests.len() as u64) * RESPONSE_ENTRY_OVERHEAD;
        if framed > self.max_message_bytes as u64 {
            return Err(Status::invalid_argument(format!(
                "a response for {} blobs would exceed the {}-byte message limit; \
                 split the batch",
                digests.len(),
                self.max_message_bytes
            )));
        }
        let responses = futures::stream::iter(digests)
            .map(|digest| async move {
                let (data, status) = match cas.read_bytes(&digest).await {
                    Ok(Some(data)) => (data.to_vec(), Status::ok("")),
                    Ok(None) => (
                        Vec::new(),
                        Status::not_found(format!("blob {digest} not found")),
                    ),
                    Err(error) => (Vec::new(), Status::from(error)),
                };
                batch_read_blobs_response::Response {
                    digest: Some(digest.to_proto()),
                    data,
                    compressor: compressor::Value::Identity as i32,
                    status: Some(rpc_status(&status)),
                }
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
        Ok(Response::new(BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = TreeStream;

    async fn get_tree(
        &self,
        request: Request<GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        let cas = storage_for(&self.cas, request.metadata());
        let request = request.into_inner();
        check_digest_function(request.digest_function)?;
        let walk = get_tree::TreeWalk::start(cas, &request, self.max_message_bytes).await?;
        Ok(Response::new(Box::pin(walk.into_stream())))
    }

    async fn split_blob(
        &self,
        _request: Request<SplitBlobRequest>,
    ) -> Result<Response<SplitBlobResponse>, Status> {
        Err(Status::unimplemented("SplitBlob is not supported"))
    }

    type GetChunkMappingStream = ChunkMappingStream;

    async fn get_chunk_mapping(
        &self,
        _request: Request<GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(Status::unimplemented("GetChunkMapping is not supported"))
    }

    async fn splice_blob(
        &self,
        _request: Request<SpliceBlobRequest>,
    ) -> Result<Response<SpliceBlobResponse>, Status> {
        Err(Status::unimplemented("SpliceBlob is not supported"))
    }

    async fn register_chunk_mapping(
        &self,
        _request: Request<tonic::Streaming<RegisterChunkMappingRequest>>,
    ) -> Result<Response<RegisterChunkMappingResponse>, Status> {
        Err(Status::unimplemented(
            "RegisterChunkMapping is not supported",
        ))
    }
}

#[cfg(test)]
mod tests;
