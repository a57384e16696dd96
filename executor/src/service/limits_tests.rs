//! The executor's limits over the wire, against a real executor (`Executor::open` and
//! `serve`, as `main` runs it) on 127.0.0.1:0: blobs larger than the CAS, sizes a
//! client declares but no stored blob has, `max_message_bytes`, `max_batch_bytes` and
//! `max_concurrent_streams`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use remesh_proto::bytestream::byte_stream_client::ByteStreamClient;
use remesh_proto::bytestream::{ReadRequest, WriteRequest};
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use remesh_proto::reapi::{
    BatchReadBlobsRequest, BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest,
    batch_update_blobs_request,
};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;
use crate::digest::BlobDigest;
use crate::server::{Executor, Listeners, RunError};
use crate::service::test_support::TestStorage;
use crate::storage::StorageError;

/// An executor serving on loopback until `stop` (or the end of the test).
struct Running {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Running {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = Config {
            listen: loopback,
            metrics_listen: loopback,
            load_listen: loopback,
            data_dir: dir.path().join("data"),
            runners: 1,
            ..Config::default()
        };
        adjust(&mut config);
        let listeners = Listeners::bind(&config).await.unwrap();
        let addr = listeners.grpc.local_addr().unwrap();
        let data_dir = config.data_dir.clone();
        let executor = Executor::open(config).await.unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(executor.serve(listeners, stop.clone()));
        Self {
            _dir: dir,
            data_dir,
            addr,
            stop,
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A CAS client that itself accepts any message size, so the server's limits are
    /// what is tested.
    async fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel().await)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    async fn bytestream(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.channel().await)
    }

    /// Files under the data dir's `tmp/`, where uploads are staged.
    fn staged_files(&self) -> Vec<PathBuf> {
        files_under(&self.data_dir.join("tmp"))
    }

    async fn shut_down(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

fn update(entries: &[&[u8]]) -> BatchUpdateBlobsRequest {
    BatchUpdateBlobsRequest {
        requests: entries
            .iter()
            .map(|data| batch_update_blobs_request::Request {
                digest: Some(BlobDigest::of_bytes(data).to_proto()),
                data: data.to_vec(),
                compressor: 0,
            })
            .collect(),
        ..Default::default()
    }
}

const HASH: &str = "a3f2c0b1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_larger_than_the_cas_are_refused_before_any_byte_is_stored() {
    let node = Running::start(|config| config.cas_max_bytes = 1 << 20).await;
    let mut bytestream = node.bytestream().await;
    let before = node.staged_files();

    let uuid = "5f0c7f44-1b7e-4c39-9d67-3cb1d29e0b1a";
    for name in [
        format!("main/uploads/{uuid}/blobs/{HASH}/2097152"),
        format!("main/uploads/{uuid}/compressed-blobs/zstd/{HASH}/2097152"),
        format!("uploads/{uuid}/blobs/{HASH}/{}", u64::MAX),
    ] {
        let first = WriteRequest {
            resource_name: name.clone(),
            write_offset: 0,
            finish_write: false,
            data: vec![7; 1000],
        };
        let error = bytestream
            .write(futures::stream::iter([first]))
            .await
            .expect_err(&name);
        assert_eq!(error.code(), Code::InvalidArgument, "{name}: {error:?}");
        assert!(error.message().contains("can ever hold"), "{error:?}");
    }
    assert_eq!(node.staged_files(), before, "nothing may be staged");

    // A real 1.5 MiB blob: under the batch limit, over the CAS.
    let big = data(1_500_000, 3);
    let small = data(100, 5);
    let response = node
        .cas()
        .await
        .batch_update_blobs(update(&[&big, &small]))
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = response
        .responses
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(codes, vec![Code::InvalidArgument as i32, Code::Ok as i32]);
    let missing = node
        .cas()
        .await
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: vec![
                BlobDigest::of_bytes(&big).to_proto(),
                BlobDigest::of_bytes(&small).to_proto(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        missing.missing_blob_digests,
        vec![BlobDigest::of_bytes(&big).to_proto()]
    );
    node.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_size_no_stored_blob_has_reads_nothing() {
    let node = Running::start(|config| config.max_batch_bytes = 1 << 20).await;
    let stored = b"stored blob".to_vec();
    let digest = BlobDigest::of_bytes(&stored);
    node.cas()
        .await
        .batch_update_blobs(update(&[&stored]))
        .await
        .unwrap();

    // Same hash, another size: not the stored blob, whatever the hash says.
    let lying = Digest {
        hash: digest.hash().to_owned(),
        size_bytes: 900_000,
    };
    let response = node
        .cas()
        .await
        .batch_read_blobs(BatchReadBlobsRequest {
            digests: vec![lying.clone(), digest.to_proto()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let entry = &response.responses[0];
    assert_eq!(entry.status.as_ref().unwrap().code, Code::NotFound as i32);
    assert!(entry.data.is_empty());
    assert_eq!(response.responses[1].data, stored);

    // A declared size past the batch limit is refused before any lookup.
    let huge = Digest {
        hash: digest.hash().to_owned(),
        size_bytes: i64::MAX,
    };
    let error = node
        .cas()
        .await
        .batch_read_blobs(BatchReadBlobsRequest {
            digests: vec![huge],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);

    for size in [900_000u64, u64::MAX] {
        let request = ReadRequest {
            resource_name: format!("blobs/{}/{size}", digest.hash()),
            ..Default::default()
        };
        let error = node
            .bytestream()
            .await
            .read(request)
            .await
            .expect_err("no blob of that size");
        assert_eq!(error.code(), Code::NotFound, "{size}: {error:?}");
    }
    node.shut_down().await;
}

#[tokio::test]
async fn read_bytes_refuses_a_file_changed_behind_the_cas() {
    let storage = TestStorage::open().await;
    let data = bytes::Bytes::from(data(5000, 7));
    let digest = BlobDigest::of_bytes(&data);
    storage.cas.write_bytes(&digest, data).await.unwrap();
    let path = storage
        .config
        .data_dir
        .join("cas")
        .join(&digest.hash()[..2])
        .join(digest.hash());
    for on_disk in [100usize, 80_000] {
        std::fs::write(&path, vec![1u8; on_disk]).unwrap();
        let error = storage.cas.read_bytes(&digest).await.unwrap_err();
        assert!(
            matches!(error, StorageError::Corrupt { on_disk: n, .. } if n == on_disk as u64),
            "{error:?}"
        );
        assert_eq!(tonic::Status::from(error).code(), Code::DataLoss);
    }
}

/// A message over `max_decoding_message_size` is refused with RESOURCE_EXHAUSTED naming
/// its size and the limit (tonic's OUT_OF_RANGE, rewritten by `decode_status`); a batch
/// under the message limit but over `max_batch_bytes` is refused by the CAS service with
/// INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_and_batch_limits_are_enforced_with_their_statuses() {
    let node = Running::start(|config| {
        config.max_batch_bytes = 100_000;
        config.max_message_bytes = 200_000;
    })
    .await;
    let mut cas = node.cas().await;

    let over_message = data(300_000, 3);
    let error = cas
        .batch_update_blobs(update(&[&over_message]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(
        error.message().contains("limit of 200000 bytes"),
        "{error:?}"
    );

    let over_batch = [data(60_000, 5), data(60_000, 7)];
    let error = cas
        .batch_update_blobs(update(&[&over_batch[0], &over_batch[1]]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("max_batch_total_size_bytes"));

    let within = data(90_000, 9);
    let response = cas
        .batch_update_blobs(update(&[&within]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.responses[0].status.as_ref().unwrap().code, 0);

    // The connection survives a refused message: the next call on it works.
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: vec![BlobDigest::of_bytes(&within).to_proto()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.missing_blob_digests.is_empty());
    node.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_is_announced_to_every_connection() {
    let node = Running::start(|config| config.max_concurrent_streams = 3).await;
    let tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();

    // Any complete exchange means the server's SETTINGS frame, which precedes every
    // response, has been applied.
    let request = http::Request::post(format!("http://{}/grpc.health.v1.Health/Check", node.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    // An empty Check request: one uncompressed, zero-length message.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(send.current_max_send_streams(), 3);

    drop(send);
    connection.abort();
    node.shut_down().await;
}
