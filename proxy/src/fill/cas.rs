//! `ContentAddressableStorage` on the fill endpoint: FindMissingBlobs asks every
//! peer at once; a digest is missing when no peer that answered holds it.

use std::collections::HashSet;

use remesh_proto::reapi::content_addressable_storage_server::ContentAddressableStorage;
use remesh_proto::reapi::{
    BatchReadBlobsRequest, BatchReadBlobsResponse, BatchUpdateBlobsRequest,
    BatchUpdateBlobsResponse, Digest, FindMissingBlobsRequest, FindMissingBlobsResponse,
    GetChunkMappingRequest, GetChunkMappingResponse, GetTreeRequest, GetTreeResponse,
    RegisterChunkMappingRequest, RegisterChunkMappingResponse, SpliceBlobRequest,
    SpliceBlobResponse, SplitBlobRequest, SplitBlobResponse,
};
use tonic::{Request, Response, Status};

use super::{Fill, PEER_DEADLINE, read_only};

pub struct FillCas(pub Fill);

type Unsupported<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

fn key(digest: &Digest) -> (String, i64) {
    (digest.hash.clone(), digest.size_bytes)
}

#[tonic::async_trait]
impl ContentAddressableStorage for FillCas {
    async fn find_missing_blobs(
        &self,
        request: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let request = request.into_inner();
        let asked = request.blob_digests.len();
        let answers = futures::future::join_all(self.0.peers().into_iter().map(|peer| {
            let request = request.clone();
            async move {
                let mut client = peer.cas();
                let call = client.find_missing_blobs(request);
                match tokio::time::timeout(PEER_DEADLINE, call).await {
                    Ok(Ok(response)) => Some(response.into_inner().missing_blob_digests),
                    Ok(Err(status)) => {
                        tracing::debug!(peer = %peer.node, %status, "fill: FindMissingBlobs failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer.node, "fill: FindMissingBlobs timed out");
                        None
                    }
                }
            }
        }))
        .await;
        // Held somewhere: asked, and absent from some answering peer's missing list.
        let mut held: HashSet<(String, i64)> = HashSet::new();
        for missing in answers.into_iter().flatten() {
            let missing: HashSet<(String, i64)> = missing.iter().map(key).collect();
            held.extend(
                request
                    .blob_digests
                    .iter()
                    .map(key)
                    .filter(|digest| !missing.contains(digest)),
            );
        }
        let missing_blob_digests: Vec<Digest> = request
            .blob_digests
            .into_iter()
            .filter(|digest| !held.contains(&key(digest)))
            .collect();
        let found = asked - missing_blob_digests.len();
        if found > 0 {
            self.0.count("find_missing", true);
        }
        if !missing_blob_digests.is_empty() {
            self.0.count("find_missing", false);
        }
        Ok(Response::new(FindMissingBlobsResponse {
            missing_blob_digests,
        }))
    }

    async fn batch_update_blobs(
        &self,
        _: Request<BatchUpdateBlobsRequest>,
    ) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        Err(read_only("BatchUpdateBlobs"))
    }

    async fn batch_read_blobs(
        &self,
        _: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        Err(Status::unimplemented(
            "BatchReadBlobs: the fill endpoint reads through ByteStream",
        ))
    }

    type GetTreeStream = Unsupported<GetTreeResponse>;

    async fn get_tree(
        &self,
        _: Request<GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        Err(Status::unimplemented(
            "GetTree is not served by the fill endpoint",
        ))
    }

    async fn split_blob(
        &self,
        _: Request<SplitBlobRequest>,
    ) -> Result<Response<SplitBlobResponse>, Status> {
        Err(Status::unimplemented("SplitBlob is not supported"))
    }

    async fn splice_blob(
        &self,
        _: Request<SpliceBlobRequest>,
    ) -> Result<Response<SpliceBlobResponse>, Status> {
        Err(read_only("SpliceBlob"))
    }

    type GetChunkMappingStream = Unsupported<GetChunkMappingResponse>;

    async fn get_chunk_mapping(
        &self,
        _: Request<GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(Status::unimplemented("GetChunkMapping is not supported"))
    }

    async fn register_chunk_mapping(
        &self,
        _: Request<tonic::Streaming<RegisterChunkMappingRequest>>,
    ) -> Result<Response<RegisterChunkMappingResponse>, Status> {
        Err(read_only("RegisterChunkMapping"))
    }
}
