//! Typed gRPC clients for one REAPI endpoint, and the round trips tests repeat: digests,
//! ByteStream upload and download, FindMissingBlobs, building and running an action.
//!
//! These speak the public contract only, so the same helpers drive remesh and BuildGrid.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use remesh_proto::bytestream::byte_stream_client::ByteStreamClient;
use remesh_proto::bytestream::{ReadRequest, WriteRequest};
use remesh_proto::longrunning::operation;
use remesh_proto::longrunning::operations_client::OperationsClient;
use remesh_proto::reapi::action_cache_client::ActionCacheClient;
use remesh_proto::reapi::capabilities_client::CapabilitiesClient;
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{
    Action, BatchUpdateBlobsRequest, BatchUpdateBlobsResponse, Command, Digest, Directory,
    ExecuteRequest, ExecuteResponse, FindMissingBlobsRequest, batch_update_blobs_request,
};
use sha2::{Digest as _, Sha256};
use tonic::transport::{Channel, Endpoint};

/// Largest message the clients accept: ByteStream reads of big blobs come in chunks the
/// server picks, and batch responses may be near the server's advertised limit.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// ByteStream write chunk: 1 MiB, well under any server's message limit.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// The SHA-256 digest of `data`.
pub fn blob_digest(data: &[u8]) -> Digest {
    Digest {
        hash: hex::encode(Sha256::digest(data)),
        size_bytes: data.len() as i64,
    }
}

/// Every client of one endpoint, sharing one HTTP/2 connection, and the instance name
/// every request carries. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    pub instance_name: String,
    pub channel: Channel,
    pub capabilities: CapabilitiesClient<Channel>,
    pub cas: ContentAddressableStorageClient<Channel>,
    pub bytestream: ByteStreamClient<Channel>,
    pub action_cache: ActionCacheClient<Channel>,
    pub execution: ExecutionClient<Channel>,
    pub operations: OperationsClient<Channel>,
}

impl Clients {
    /// Connects to `addr` (plain HTTP/2 on loopback).
    pub async fn connect(addr: SocketAddr, instance_name: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Self::from_channel(channel, instance_name))
    }

    pub fn from_channel(channel: Channel, instance_name: &str) -> Self {
        let limit = MAX_MESSAGE_BYTES;
        Self {
            instance_name: instance_name.to_string(),
            capabilities: CapabilitiesClient::new(channel.clone()).max_decoding_message_size(limit),
            cas: ContentAddressableStorageClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            bytestream: ByteStreamClient::new(channel.clone()).max_decoding_message_size(limit),
            action_cache: ActionCacheClient::new(channel.clone()).max_decoding_message_size(limit),
            execution: ExecutionClient::new(channel.clone()).max_decoding_message_size(limit),
            operations: OperationsClient::new(channel.clone()).max_decoding_message_size(limit),
            channel,
        }
    }

    /// `INSTANCE/` or nothing, the prefix of ByteStream resource names.
    fn resource_prefix(&self) -> String {
        if self.instance_name.is_empty() {
            String::new()
        } else {
            format!("{}/", self.instance_name)
        }
    }

    /// Uploads `data` through ByteStream Write in 1 MiB chunks; returns its digest.
    pub async fn upload(&self, data: Bytes) -> anyhow::Result<Digest> {
        let digest = blob_digest(&data);
        self.upload_as(&digest, data).await?;
        Ok(digest)
    }

    /// Uploads `data` under `digest` as given (hashed beforehand, or deliberately wrong).
    pub async fn upload_as(&self, digest: &Digest, data: Bytes) -> anyhow::Result<()> {
        let resource_name = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.resource_prefix(),
            uuid::Uuid::new_v4(),
            digest.hash,
            digest.size_bytes
        );
        let total = data.len();
        let chunks = total.div_ceil(WRITE_CHUNK_BYTES).max(1);
        let first_name = resource_name.clone();
        // Built lazily so a large upload is never held twice in memory.
        let requests = futures::stream::iter(0..chunks).map(move |index| {
            let start = index * WRITE_CHUNK_BYTES;
            let end = (start + WRITE_CHUNK_BYTES).min(total);
            WriteRequest {
                // Only the first message needs to name the resource.
                resource_name: if index == 0 {
                    first_name.clone()
                } else {
                    String::new()
                },
                write_offset: start as i64,
                finish_write: end == total,
                data: data[start..end].to_vec(),
            }
        });
        let response = self
            .bytestream
            .clone()
            .write(requests)
            .await
            .with_context(|| format!("ByteStream Write of {resource_name}"))?
            .into_inner();
        if response.committed_size != total as i64 {
            bail!(
                "ByteStream Write committed {} bytes of {total}",
                response.committed_size
            );
        }
        Ok(())
    }

    /// Reads a whole blob through ByteStream Read.
    pub async fn download(&self, digest: &Digest) -> Result<Vec<u8>, tonic::Status> {
        let resource_name = format!(
            "{}blobs/{}/{}",
            self.resource_prefix(),
            digest.hash,
            digest.size_bytes
        );
        let mut stream = self
            .bytestream
            .clone()
            .read(ReadRequest {
                resource_name,
                read_offset: 0,
                read_limit: 0,
            })
            .await?
            .into_inner();
        let mut data = Vec::with_capacity(usize::try_from(digest.size_bytes).unwrap_or(0));
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// The digests among `digests` the server does not hold.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, tonic::Status> {
        let response = self
            .cas
            .clone()
            .find_missing_blobs(FindMissingBlobsRequest {
                instance_name: self.instance_name.clone(),
                blob_digests: digests.to_vec(),
                digest_function: 0,
            })
            .await?;
        Ok(response.into_inner().missing_blob_digests)
    }

    /// BatchUpdateBlobs of `(digest, data)` pairs exactly as given (a test may lie about
    /// a digest on purpose).
    pub async fn batch_update(
        &self,
        blobs: Vec<(Digest, Bytes)>,
    ) -> Result<BatchUpdateBlobsResponse, tonic::Status> {
        let requests = blobs
            .into_iter()
            .map(|(digest, data)| batch_update_blobs_request::Request {
                digest: Some(digest),
                data: data.to_vec(),
                compressor: 0,
            })
            .collect();
        let response = self
            .cas
            .clone()
            .batch_update_blobs(BatchUpdateBlobsRequest {
                instance_name: self.instance_name.clone(),
                requests,
                digest_function: 0,
            })
            .await?;
        Ok(response.into_inner())
    }

    /// Uploads small messages with BatchUpdateBlobs and fails unless every one was stored.
    pub async fn upload_messages(&self, blobs: Vec<Bytes>) -> anyhow::Result<Vec<Digest>> {
        let digests: Vec<Digest> = blobs.iter().map(|data| blob_digest(data)).collect();
        let response = self
            .batch_update(digests.iter().cloned().zip(blobs).collect())
            .await?;
        for entry in &response.responses {
            let code = entry.status.as_ref().map_or(0, |status| status.code);
            if code != 0 {
                bail!(
                    "BatchUpdateBlobs refused {:?}: {:?}",
                    entry.digest,
                    entry.status
                );
            }
        }
        Ok(digests)
    }

    /// Uploads the Command, an empty input root and the Action for `argv`; returns the
    /// action digest. `salt` makes otherwise identical actions distinct.
    pub async fn upload_action(&self, spec: &ActionSpec) -> anyhow::Result<Digest> {
        let command = Command {
            arguments: spec.argv.clone(),
            output_paths: spec.output_paths.clone(),
            ..Command::default()
        };
        let input_root = Directory::default();
        let command_bytes = Bytes::from(command.encode_to_vec());
        let input_bytes = Bytes::from(input_root.encode_to_vec());
        let action = Action {
            command_digest: Some(blob_digest(&command_bytes)),
            input_root_digest: Some(blob_digest(&input_bytes)),
            timeout: spec
                .timeout
                .map(|timeout| remesh_proto::protobuf::Duration {
                    seconds: timeout.as_secs() as i64,
                    nanos: timeout.subsec_nanos() as i32,
                }),
            do_not_cache: spec.do_not_cache,
            salt: spec.salt.clone(),
            ..Action::default()
        };
        let action_bytes = Bytes::from(action.encode_to_vec());
        let digests = self
            .upload_messages(vec![command_bytes, input_bytes, action_bytes])
            .await?;
        Ok(digests[2].clone())
    }

    /// Execute, following the stream until the operation is done and then to its end
    /// (the status trailers); returns the final ExecuteResponse.
    ///
    /// Reading to the end is what gRPC clients do, and it matters here: a stream
    /// dropped after its last message is reset by the client, and trailers that then
    /// arrive for a reset stream h2 no longer remembers count as a protocol error on
    /// the client's connection. After 1,024 of those h2 closes the connection itself
    /// (GOAWAY `too_many_internal_resets`). Through a proxy the last message and the
    /// trailers often travel in separate writes, so a benchmark of many short
    /// Executes on one connection hit that limit.
    pub async fn execute(
        &self,
        action_digest: &Digest,
        skip_cache_lookup: bool,
    ) -> anyhow::Result<ExecuteResponse> {
        let mut stream = self
            .execution
            .clone()
            .execute(ExecuteRequest {
                instance_name: self.instance_name.clone(),
                skip_cache_lookup,
                action_digest: Some(action_digest.clone()),
                ..ExecuteRequest::default()
            })
            .await
            .context("Execute")?
            .into_inner();
        while let Some(operation) = stream.message().await.context("Execute stream")? {
            if !operation.done {
                continue;
            }
            while stream
                .message()
                .await
                .context("Execute stream after the operation was done")?
                .is_some()
            {}
            return match operation.result {
                Some(operation::Result::Response(any)) => {
                    Ok(ExecuteResponse::decode(any.value.as_slice())
                        .context("decoding the ExecuteResponse")?)
                }
                Some(operation::Result::Error(status)) => {
                    bail!(
                        "operation {} ended with Operation.error {status:?}",
                        operation.name
                    )
                }
                None => bail!("operation {} is done without a result", operation.name),
            };
        }
        bail!("the Execute stream ended before the operation was done")
    }
}

/// What an action runs; a Command plus the few Action fields tests vary.
#[derive(Debug, Clone, Default)]
pub struct ActionSpec {
    pub argv: Vec<String>,
    pub output_paths: Vec<String>,
    pub timeout: Option<Duration>,
    pub do_not_cache: bool,
    pub salt: Vec<u8>,
}

impl ActionSpec {
    pub fn new(argv: &[&str]) -> Self {
        Self {
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            ..Self::default()
        }
    }
}
