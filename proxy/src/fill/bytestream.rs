//! `ByteStream` on the fill endpoint: Read asks the peers one after another and
//! streams the blob from the first whose answer begins with data; NOT_FOUND when
//! none has it. Peers are tried in turn rather than all at once so that a large blob
//! travels once, not once per peer.

use futures::StreamExt;
use remesh_proto::bytestream::byte_stream_server::ByteStream;
use remesh_proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse,
};
use tonic::{Code, Request, Response, Status, Streaming};

use super::{Fill, PEER_DEADLINE, read_only};

pub struct FillByteStream(pub Fill);

type ReadStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ReadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ByteStream for FillByteStream {
    type ReadStream = ReadStream;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let request = request.into_inner();
        for peer in self.0.peers() {
            let started = async {
                let mut stream = peer.bytestream().read(request.clone()).await?.into_inner();
                // The first message tells a holder (data, or the end of an empty
                // blob) from a peer that does not have it.
                let first = stream.next().await.transpose()?;
                Ok::<_, Status>((first, stream))
            };
            match tokio::time::timeout(PEER_DEADLINE, started).await {
                Ok(Ok((first, rest))) => {
                    self.0.count("read", true);
                    tracing::debug!(peer = %peer.node, resource = %request.resource_name, "fill: reading from peer");
                    let stream = futures::stream::iter(first.map(Ok)).chain(rest);
                    return Ok(Response::new(Box::pin(stream)));
                }
                Ok(Err(status)) if status.code() == Code::NotFound => {}
                Ok(Err(status)) => {
                    tracing::debug!(peer = %peer.node, %status, "fill: Read failed");
                }
                Err(_) => tracing::debug!(peer = %peer.node, "fill: Read timed out"),
            }
        }
        self.0.count("read", false);
        Err(Status::not_found(format!(
            "{}: no member of the cluster holds it",
            request.resource_name
        )))
    }

    async fn write(
        &self,
        _: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        Err(read_only("ByteStream.Write"))
    }

    async fn query_write_status(
        &self,
        _: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        Err(read_only("QueryWriteStatus"))
    }
}
