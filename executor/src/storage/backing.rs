//! Tier 2: a client of any REAPI CAS/AC endpoint (bazel-remote, Buildbarn, BuildGrid,
//! another remesh executor) used as a shared backing cache.
//!
//! Owns the gRPC channel and the wire details: the instance name on every request,
//! ByteStream resource names, chunking (≤ 1 MiB per message) and the choice between
//! batch calls (small blobs) and ByteStream (large ones). It never touches local disk:
//! reads are handed chunk by chunk to a caller-supplied sink.

use std::future::Future;

use bytes::Bytes;
use futures::StreamExt;
use remesh_proto::bytestream::byte_stream_client::ByteStreamClient;
use remesh_proto::bytestream::{ReadRequest, WriteRequest};
use remesh_proto::reapi::action_cache_client::ActionCacheClient;
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use remesh_proto::reapi::{
    ActionResult, BatchUpdateBlobsRequest, FindMissingBlobsRequest, GetActionResultRequest,
    UpdateActionResultRequest, batch_update_blobs_request,
};
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::digest::BlobDigest;

/// Largest data payload of one ByteStream message, both ways.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Blobs up to this size are written with BatchUpdateBlobs (one round trip); every
/// server accepts batches of this size under gRPC's default 4 MiB message limit.
const BATCH_WRITE_BYTES: u64 = 1 << 20;

/// Digests per FindMissingBlobs request: ~75 bytes each keeps a request near 300 KiB.
const FIND_MISSING_CHUNK: usize = 4096;

#[derive(Clone)]
pub struct BackingCache {
    channel: Channel,
    /// `"{instance}/"`, or empty for the default instance.
    prefix: String,
    instance: String,
    max_message_bytes: usize,
}

impl BackingCache {
    /// Prepares a lazily connected channel to `url` (`grpc://host:port` or
    /// `grpcs://host:port`): the executor starts even while the backing cache is down,
    /// and calls fail with UNAVAILABLE until it is back.
    pub fn connect(url: &str, instance: &str, max_message_bytes: usize) -> Result<Self, Status> {
        let invalid = |why: String| Status::invalid_argument(format!("{url:?}: {why}"));
        let (scheme, authority) = if let Some(rest) = url.strip_prefix("grpc://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("grpcs://") {
            ("https", rest)
        } else {
            return Err(invalid("must start with grpc:// or grpcs://".into()));
        };
        let authority = authority.trim_end_matches('/');
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|error| invalid(error.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(10))
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if scheme == "https" {
            let host = endpoint.uri().host().unwrap_or_default().to_owned();
            let tls = ClientTlsConfig::new()
                .domain_name(host)
                .with_enabled_roots();
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|error| invalid(error.to_string()))?;
        }
        let prefix = if instance.is_empty() {
            String::new()
        } else {
            format!("{instance}/")
        };
        Ok(Self {
            channel: endpoint.connect_lazy(),
            prefix,
            instance: instance.to_owned(),
            max_message_bytes,
        })
    }

    /// The digests of `digests` the backing cache does not hold, in request order.
    pub async fn find_missing(&self, digests: &[BlobDigest]) -> Result<Vec<BlobDigest>, Status> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(FIND_MISSING_CHUNK) {
            let request = FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: chunk.iter().map(BlobDigest::to_proto).collect(),
                digest_function: 0,
            };
            let response = self.cas().find_missing_blobs(request).await?.into_inner();
            let reported: std::collections::HashSet<(String, i64)> = response
                .missing_blob_digests
                .into_iter()
                .map(|digest| (digest.hash, digest.size_bytes))
                .collect();
            missing.extend(
                chunk
                    .iter()
                    .filter(|d| reported.contains(&(d.hash().to_owned(), d.size() as i64)))
                    .cloned(),
            );
        }
        Ok(missing)
    }

    /// Streams a blob into `sink` chunk by chunk. Returns false when the backing cache
    /// does not have it. A server sending more bytes than the digest names is refused
    /// before the excess reaches `sink`.
    pub async fn read<S, F>(&self, digest: &BlobDigest, mut sink: S) -> Result<bool, Status>
    where
        S: FnMut(Bytes) -> F,
        F: Future<Output = Result<(), Status>>,
    {
        let request = ReadRequest {
            resource_name: format!("{}blobs/{}/{}", self.prefix, digest.hash(), digest.size()),
            read_offset: 0,
            read_limit: 0,
        };
        let mut stream = match self.bytestream().read(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(false),
            Err(status) => return Err(status),
        };
        let mut received = 0u64;
        while let Some(message) = stream.next().await {
            let data = match message {
                Ok(message) => message.data,
                Err(status) if status.code() == Code::NotFound && received == 0 => {
                    return Ok(false);
                }
                Err(status) => return Err(status),
            };
            received += data.len() as u64;
            if received > digest.size() {
                return Err(Status::data_loss(format!(
                    "backing cache sent more than the {} bytes of {digest}",
                    digest.size()
                )));
            }
            sink(Bytes::from(data)).await?;
        }
        Ok(true)
    }

    /// Writes a blob held in memory.
    pub async fn write_bytes(&self, digest: &BlobDigest, data: Bytes) -> Result<(), Status> {
        if digest.is_empty_blob() {
            return Ok(());
        }
        if digest.size() <= BATCH_WRITE_BYTES {
            return self.batch_write(digest, data.to_vec()).await;
        }
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(CHUNK_BYTES)
            .map(|start| data.slice(start..data.len().min(start + CHUNK_BYTES)))
            .collect();
        self.stream_write(digest, futures::stream::iter(chunks.into_iter().map(Ok)))
            .await
    }

    /// Writes a blob from an open local file, reading it chunk by chunk.
    pub async fn write_file(
        &self,
        digest: &BlobDigest,
        mut file: tokio::fs::File,
    ) -> Result<(), Status> {
        if digest.is_empty_blob() {
            return Ok(());
        }
        if digest.size() <= BATCH_WRITE_BYTES {
            let mut data = Vec::with_capacity(digest.size() as usize);
            file.read_to_end(&mut data)
                .await
                .map_err(|error| Status::internal(format!("reading {digest}: {error}")))?;
            return self.batch_write(digest, data).await;
        }
        let chunks = futures::stream::unfold(file, |mut file| async move {
            let mut buffer = vec![0u8; CHUNK_BYTES];
            match read_full(&mut file, &mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), file))
                }
                Err(error) => Some((Err(error), file)),
            }
        });
        self.stream_write(digest, chunks).await
    }

    pub async fn get_action_result(
        &self,
        action: &BlobDigest,
    ) -> Result<Option<ActionResult>, Status> {
        let request = GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.to_proto()),
            ..Default::default()
        };
        match self.action_cache().get_action_result(request).await {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    pub async fn update_action_result(
        &self,
        action: &BlobDigest,
        result: &ActionResult,
    ) -> Result<(), Status> {
        let request = UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.to_proto()),
            action_result: Some(result.clone()),
            ..Default::default()
        };
        self.action_cache().update_action_result(request).await?;
        Ok(())
    }

    async fn batch_write(&self, digest: &BlobDigest, data: Vec<u8>) -> Result<(), Status> {
        let request = BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(digest.to_proto()),
                data,
                compressor: 0,
            }],
            digest_function: 0,
        };
        let response = self.cas().batch_update_blobs(request).await?.into_inner();
        match response.responses.first().and_then(|r| r.status.as_ref()) {
            Some(status) if status.code != 0 => Err(Status::new(
                Code::from_i32(status.code),
                format!("writing {digest}: {}", status.message),
            )),
            _ => Ok(()),
        }
    }

    /// ByteStream Write of `chunks` (whose total must be the digest's size), with
    /// `finish_write` on the last message.
    async fn stream_write<S>(&self, digest: &BlobDigest, chunks: S) -> Result<(), Status>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let resource_name = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.prefix,
            uuid::Uuid::new_v4(),
            digest.hash(),
            digest.size()
        );
        let size = digest.size();
        let (failed_tx, mut failed_rx) = tokio::sync::oneshot::channel();
        let requests = async_stream::stream! {
            let mut chunks = Box::pin(chunks);
            let mut offset = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        // Ending the stream without finish_write makes the server fail
                        // the call; the reason travels separately.
                        let _ = failed_tx.send(error);
                        break;
                    }
                };
                let resource_name = if offset == 0 {
                    resource_name.clone()
                } else {
                    String::new()
                };
                let finish_write = offset + chunk.len() as u64 == size;
                let write_offset = offset as i64;
                offset += chunk.len() as u64;
                yield WriteRequest {
                    resource_name,
                    write_offset,
                    finish_write,
                    data: chunk.to_vec(),
                };
            }
        };
        let result = self.bytestream().write(requests).await;
        if let Ok(error) = failed_rx.try_recv() {
            return Err(Status::internal(format!("reading {digest}: {error}")));
        }
        let committed = result?.into_inner().committed_size;
        // A server that already had the blob may stop early and report its full size.
        if committed != size as i64 {
            return Err(Status::data_loss(format!(
                "backing cache committed {committed} of {size} bytes of {digest}"
            )));
        }
        Ok(())
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    fn bytestream(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    fn action_cache(&self) -> ActionCacheClient<Channel> {
        ActionCacheClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }
}

/// Fills `buffer` unless the file ends first; returns the bytes read.
pub async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = file.read(&mut buffer[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_grpc_and_grpcs_urls_only() {
        let plain = BackingCache::connect("grpc://127.0.0.1:8980", "main", 1 << 20).unwrap();
        assert_eq!(plain.prefix, "main/");
        let tls = BackingCache::connect("grpcs://cache.internal:443/", "", 1 << 20).unwrap();
        assert_eq!(tls.prefix, "");
        for bad in [
            "http://127.0.0.1:1",
            "grpc://",
            "grpc://bad host:1",
            "127.0.0.1:80",
        ] {
            let error = BackingCache::connect(bad, "main", 1 << 20).err();
            assert_eq!(
                error.map(|status| status.code()),
                Some(Code::InvalidArgument),
                "{bad}"
            );
        }
    }
}
