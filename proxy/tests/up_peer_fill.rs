//! `remesh-proxy up --peer-fill --mesh-tls`: no node's executor is a shared cache;
//! each reads its misses from the others through its proxy's fill endpoint, over
//! the mutual-TLS peer ports. A blob written through one node is found, whole,
//! through the two others; one nobody holds stays missing and NOT_FOUND.

mod support;

use std::time::Duration;

use futures::StreamExt;
use remesh_proto::bytestream::byte_stream_client::ByteStreamClient;
use remesh_proto::bytestream::{ReadRequest, WriteRequest};
use remesh_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use remesh_proto::reapi::{
    BatchReadBlobsRequest, BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest,
    batch_update_blobs_request,
};
use sha2::{Digest as _, Sha256};
use support::processes::{UpCluster, metric};
use tonic::transport::{Channel, Endpoint};

const INSTANCE: &str = "main";
const CHUNK: usize = 1 << 20;

fn digest_of(bytes: &[u8]) -> Digest {
    Digest {
        hash: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("plaintext to a node's client port")
}

/// 3 MiB + 1 byte that no other test writes: ByteStream in four messages.
fn large_blob() -> Vec<u8> {
    (0..(3 << 20) + 1)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

async fn write_stream(channel: Channel, data: &[u8], digest: &Digest) {
    let resource = format!(
        "{INSTANCE}/uploads/7d1f0c2e-peer-fill/blobs/{}/{}",
        digest.hash, digest.size_bytes
    );
    let chunks: Vec<WriteRequest> = data
        .chunks(CHUNK)
        .enumerate()
        .map(|(index, chunk)| WriteRequest {
            resource_name: if index == 0 {
                resource.clone()
            } else {
                String::new()
            },
            write_offset: (index * CHUNK) as i64,
            finish_write: (index + 1) * CHUNK >= data.len(),
            data: chunk.to_vec(),
        })
        .collect();
    let response = ByteStreamClient::new(channel)
        .write(futures::stream::iter(chunks))
        .await
        .expect("ByteStream Write through node 1")
        .into_inner();
    assert_eq!(response.committed_size, digest.size_bytes);
}

async fn read_stream(channel: Channel, digest: &Digest) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = ByteStreamClient::new(channel)
        .read(ReadRequest {
            resource_name: format!("{INSTANCE}/blobs/{}/{}", digest.hash, digest.size_bytes),
            read_offset: 0,
            read_limit: 0,
        })
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(message) = stream.next().await {
        data.extend(message?.data);
    }
    Ok(data)
}

async fn missing(channel: Channel, digests: &[Digest]) -> Vec<Digest> {
    ContentAddressableStorageClient::new(channel)
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: INSTANCE.into(),
            blob_digests: digests.to_vec(),
            digest_function: 0,
        })
        .await
        .expect("FindMissingBlobs")
        .into_inner()
        .missing_blob_digests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_peer_fill_finds_a_blob_written_through_another_node() {
    remesh_proxy::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = UpCluster::start_with(
        3,
        "1",
        &dir.path().join("cluster"),
        &["--mesh-tls", "--peer-fill"],
    )
    .await;
    let small = b"written through node 1, read through node 0".to_vec();
    let small_digest = digest_of(&small);
    let large = large_blob();
    let large_digest = digest_of(&large);
    let absent_digest = digest_of(b"no node of this cluster was ever given these bytes");

    let writer = channel(cluster.node(1).grpc).await;
    ContentAddressableStorageClient::new(writer.clone())
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: INSTANCE.into(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(small_digest.clone()),
                data: small.clone(),
                compressor: 0,
            }],
            digest_function: 0,
        })
        .await
        .expect("BatchUpdateBlobs through node 1");
    write_stream(writer, &large, &large_digest).await;

    // Node 0 has neither on its own disk: only its peers can vouch for them.
    let node0 = channel(cluster.node(0).grpc).await;
    let asked = [
        small_digest.clone(),
        large_digest.clone(),
        absent_digest.clone(),
    ];
    assert_eq!(
        missing(node0.clone(), &asked).await,
        vec![absent_digest.clone()]
    );
    let batch = ContentAddressableStorageClient::new(node0.clone())
        .batch_read_blobs(BatchReadBlobsRequest {
            instance_name: INSTANCE.into(),
            digests: vec![small_digest.clone()],
            acceptable_compressors: Vec::new(),
            digest_function: 0,
        })
        .await
        .expect("BatchReadBlobs through node 0")
        .into_inner();
    assert_eq!(batch.responses.len(), 1);
    assert_eq!(
        batch.responses[0].data, small,
        "{:?}",
        batch.responses[0].status
    );
    let status = read_stream(node0, &absent_digest)
        .await
        .expect_err("a blob no node holds cannot be read");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    let node2 = channel(cluster.node(2).grpc).await;
    let read = read_stream(node2.clone(), &large_digest)
        .await
        .expect("ByteStream Read through node 2");
    assert!(
        read == large,
        "node 2 read {} bytes, not the blob",
        read.len()
    );
    // Now local on node 2 as well: asking again needs no peer.
    assert_eq!(missing(node2, &asked[..2]).await, Vec::<Digest>::new());

    let hits = |admin, method: &str| {
        let series =
            format!("remesh_proxy_fill_requests_total{{method=\"{method}\",outcome=\"hit\"}}");
        async move { metric(admin, &series).await }
    };
    assert!(hits(cluster.node(0).admin, "read").await >= 1.0);
    assert!(hits(cluster.node(0).admin, "find_missing").await >= 1.0);
    assert!(hits(cluster.node(2).admin, "read").await >= 1.0);
    assert!(cluster.stop().await.success());
}
