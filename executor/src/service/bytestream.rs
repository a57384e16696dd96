//! `google.bytestream.ByteStream`: Read (in `read`), Write (in `write`) and
//! QueryWriteStatus over the CAS, for blobs too large for batch calls and for
//! `compressed-blobs/zstd/` transfers.

mod partial_uploads;
mod read;
mod write;

use std::sync::Arc;

use remesh_proto::bytestream::byte_stream_server::ByteStream;
use remesh_proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, WriteRequest, WriteResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::resource_name::{Compression, WriteResource};
use crate::storage::Cas;
use partial_uploads::{DEFAULT_MAX_PARTIAL_UPLOADS, DEFAULT_PARTIAL_UPLOAD_TTL, PartialUploads};
use write::InProgress;

#[derive(Clone)]
pub struct ByteStreamService {
    cas: Cas,
    partials: Arc<PartialUploads<InProgress>>,
}

impl ByteStreamService {
    pub fn new(cas: Cas) -> Self {
        Self {
            cas,
            partials: Arc::new(PartialUploads::new(
                DEFAULT_MAX_PARTIAL_UPLOADS,
                DEFAULT_PARTIAL_UPLOAD_TTL,
            )),
        }
    }

    /// Write over any stream of requests: what the gRPC method runs, callable directly.
    pub async fn write_stream<S>(&self, stream: S) -> Result<WriteResponse, Status>
    where
        S: futures::Stream<Item = Result<WriteRequest, Status>> + Unpin,
    {
        write::write(&self.cas, &self.partials, stream).await
    }

    /// QueryWriteStatus without the gRPC wrapping.
    pub fn write_status(&self, resource_name: &str) -> Result<QueryWriteStatusResponse, Status> {
        let resource = WriteResource::parse(resource_name)?;
        if self.cas.contains_local(&resource.digest) {
            let committed_size = match resource.compression {
                Compression::Identity => resource.digest.size() as i64,
                Compression::Zstd => -1,
            };
            return Ok(QueryWriteStatusResponse {
                committed_size,
                complete: true,
            });
        }
        match self.partials.inspect(resource_name, InProgress::received) {
            Some(received) => Ok(QueryWriteStatusResponse {
                committed_size: received as i64,
                complete: false,
            }),
            None => Err(Status::not_found(format!(
                "no upload in progress for {resource}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = read::ReadStream;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let cas = super::storage_for(&self.cas, request.metadata());
        Ok(Response::new(read::read(&cas, request.into_inner()).await?))
    }

    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        Ok(Response::new(
            self.write_stream(request.into_inner()).await?,
        ))
    }

    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        Ok(Response::new(
            self.write_status(&request.into_inner().resource_name)?,
        ))
    }
}

#[cfg(test)]
mod tests;
