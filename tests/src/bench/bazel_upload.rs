//! A ByteStream Write shaped like Bazel's: 16 KiB chunks, each its own gRPC message and
//! its own HTTP/2 DATA frame.
//!
//! Bazel's uploader (grpc-java on netty) cuts a blob into 16 KiB chunks and writes one
//! message per chunk; netty puts each message in its own DATA frame. tonic instead
//! coalesces consecutive messages into frames of about 32 KiB, so a tonic client would
//! give a relay half the frames Bazel does. This client speaks HTTP/2 through the h2
//! crate and waits for flow-control capacity for a whole message before sending it,
//! so every message leaves as one frame (two where the server's largest frame is
//! 16 KiB, as it would for Bazel).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use prost::Message;
use remesh_proto::bytestream::{WriteRequest, WriteResponse};
use remesh_proto::reapi::Digest;
use tokio::net::TcpStream;

use crate::raw_h2::grpc_frame;

/// Bazel's default upload chunk (`Chunker`'s 16 KiB).
pub const BAZEL_CHUNK_BYTES: usize = 16 * 1024;

/// Uploads `data` under `digest` to instance `instance` at `addr` in `chunk_bytes`
/// messages, one DATA frame each, on a fresh connection; checks the committed size.
pub async fn upload(
    addr: SocketAddr,
    instance: &str,
    digest: &Digest,
    data: Bytes,
    chunk_bytes: usize,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr).await.context("connecting")?;
    tcp.set_nodelay(true)?;
    let (client, connection) = h2::client::handshake(tcp).await.context("h2 handshake")?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut client = client.ready().await?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/google.bytestream.ByteStream/Write"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut send) = client.send_request(request, false)?;
    let prefix = if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    };
    let resource_name = format!(
        "{prefix}uploads/{}/blobs/{}/{}",
        uuid::Uuid::new_v4(),
        digest.hash,
        digest.size_bytes
    );
    send_messages(&mut send, &resource_name, &data, chunk_bytes).await?;
    let committed = committed_size(response).await?;
    if committed != data.len() as i64 {
        bail!(
            "ByteStream Write committed {committed} bytes of {}",
            data.len()
        );
    }
    Ok(())
}

/// Ends the connection's driver task when the upload is done or abandoned.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `data` as `WriteRequest`s of `chunk_bytes`, each in one DATA frame.
async fn send_messages(
    send: &mut h2::SendStream<Bytes>,
    resource_name: &str,
    data: &Bytes,
    chunk_bytes: usize,
) -> anyhow::Result<()> {
    let total = data.len();
    let mut offset = 0;
    loop {
        let end = (offset + chunk_bytes).min(total);
        let message = WriteRequest {
            // Only the first message names the resource, as Bazel's do.
            resource_name: if offset == 0 {
                resource_name.to_owned()
            } else {
                String::new()
            },
            write_offset: offset as i64,
            finish_write: end == total,
            data: data[offset..end].to_vec(),
        };
        let frame = grpc_frame(&message.encode_to_vec());
        // Whole-message capacity first, so h2 never splits a message across frames
        // the way a partial window would make it.
        send.reserve_capacity(frame.len());
        while send.capacity() < frame.len() {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(error)) => bail!("waiting for flow-control capacity: {error}"),
                None => bail!("the server closed the stream after {offset} bytes"),
            }
        }
        send.send_data(frame, end == total)?;
        offset = end;
        if offset == total {
            return Ok(());
        }
    }
}

/// Waits for the answer: `committed_size` of an OK `WriteResponse`.
async fn committed_size(response: h2::client::ResponseFuture) -> anyhow::Result<i64> {
    let response = response.await.context("response headers")?;
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.context("response body")?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.context("response trailers")?;
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .and_then(|value| value.to_str().ok())
        .unwrap_or("none");
    if status != "0" {
        bail!("ByteStream Write answered grpc-status {status}");
    }
    // One gRPC message: the five-byte prefix, then the WriteResponse.
    Ok(bytes
        .get(5..)
        .map(WriteResponse::decode)
        .transpose()
        .context("decoding WriteResponse")?
        .map_or(0, |response| response.committed_size))
}
