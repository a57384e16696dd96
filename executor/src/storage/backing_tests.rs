//! The backing cache against a real gRPC server: a second, in-process executor's
//! storage services on 127.0.0.1:0 play the shared tier 2.

use bytes::Bytes;
use remesh_proto::reapi::{ActionResult, OutputFile};

use crate::digest::BlobDigest;
use crate::service::test_support::TestStorage;

/// A node whose backing cache is `backing`.
async fn node_backed_by(
    backing: &TestStorage,
) -> (TestStorage, tokio_util::sync::CancellationToken) {
    let (addr, stop) = backing.serve().await;
    let node = TestStorage::open_with(|config| {
        config.backing_cache = Some(format!("grpc://{addr}"));
        config.backing_instance_name = "main".into();
    })
    .await;
    (node, stop)
}

fn data(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_to_the_backing_cache() {
    let backing = TestStorage::open().await;
    let (node, _stop) = node_backed_by(&backing).await;

    let small = data(1000, 3);
    let small_digest = BlobDigest::of_bytes(&small);
    node.cas.write_bytes(&small_digest, small).await.unwrap();
    // Large enough for ByteStream rather than a batch call.
    let large = data(3_300_000, 7);
    let large_digest = BlobDigest::of_bytes(&large);
    let mut upload = node.cas.start_upload(&large_digest).await.unwrap();
    for chunk in large.chunks(500_000) {
        upload.write(chunk).await.unwrap();
    }
    upload.commit().await.unwrap();
    let output = node.cas.scratch_dir().join("output");
    std::fs::write(&output, b"an action output").unwrap();
    let output_digest = node.cas.ingest_file(&output).await.unwrap();

    for digest in [&small_digest, &large_digest, &output_digest] {
        assert!(
            backing.cas.contains_local(digest),
            "{digest} did not reach the backing cache"
        );
    }
    assert_eq!(
        backing.cas.read_bytes(&large_digest).await.unwrap(),
        Some(large)
    );

    let action = BlobDigest::of_bytes(b"action");
    let result = ActionResult {
        output_files: vec![OutputFile {
            path: "out".into(),
            digest: Some(output_digest.to_proto()),
            ..Default::default()
        }],
        ..Default::default()
    };
    node.action_cache.put(&action, &result).await.unwrap();
    assert_eq!(
        backing.action_cache.get(&action).await.unwrap(),
        Some(result)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_through_and_concurrent_fetches_merge() {
    let backing = TestStorage::open().await;
    let (node, _stop) = node_backed_by(&backing).await;
    let blob = data(2_500_000, 11);
    let digest = BlobDigest::of_bytes(&blob);
    backing
        .cas
        .write_bytes(&digest, blob.clone())
        .await
        .unwrap();
    let absent = BlobDigest::of_bytes(b"nowhere");

    assert!(!node.cas.contains_local(&digest));
    let missing = node
        .cas
        .find_missing(&[digest.clone(), absent.clone()])
        .await
        .unwrap();
    assert_eq!(
        missing,
        vec![absent.clone()],
        "missing means missing in both tiers"
    );

    let readers: Vec<_> = (0..10)
        .map(|_| {
            let (cas, digest) = (node.cas.clone(), digest.clone());
            tokio::spawn(async move { cas.read_bytes(&digest).await })
        })
        .collect();
    for reader in readers {
        assert!(reader.await.unwrap().unwrap() == Some(blob.clone()));
    }
    assert_eq!(
        node.metrics.backing_fetches_total.get(),
        1,
        "one fetch for ten readers"
    );
    assert!(
        node.cas.contains_local(&digest),
        "the fetched blob is now local"
    );
    assert_eq!(node.cas.read_bytes(&absent).await.unwrap(), None);

    // The action cache reads through as well, and checks blobs in both tiers.
    let action = BlobDigest::of_bytes(b"remote action");
    let stdout = data(100, 5);
    let stdout_digest = BlobDigest::of_bytes(&stdout);
    backing
        .cas
        .write_bytes(&stdout_digest, stdout)
        .await
        .unwrap();
    let result = ActionResult {
        stdout_digest: Some(stdout_digest.to_proto()),
        exit_code: 0,
        ..Default::default()
    };
    backing.action_cache.put(&action, &result).await.unwrap();
    assert_eq!(node.action_cache.get(&action).await.unwrap(), Some(result));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backing_cache_is_unavailable_not_a_crash() {
    let backing = TestStorage::open().await;
    let (node, stop) = node_backed_by(&backing).await;
    stop.cancel();
    // Poll until the server has really gone (its listener closes asynchronously).
    let digest = BlobDigest::of_bytes(b"whatever");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let error = loop {
        match node.cas.find_missing(std::slice::from_ref(&digest)).await {
            Err(error) => break error,
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "backing cache still answers"
                );
                tokio::task::yield_now().await;
            }
        }
    };
    assert_eq!(tonic::Status::from(error).code(), tonic::Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backing_blob_larger_than_the_local_cas_is_not_fetched() {
    let backing = TestStorage::open().await;
    let (addr, _stop) = backing.serve().await;
    let node = TestStorage::open_with(|config| {
        config.backing_cache = Some(format!("grpc://{addr}"));
        config.cas_max_bytes = 1 << 20;
    })
    .await;
    let large = data(1_500_000, 5);
    let digest = BlobDigest::of_bytes(&large);
    backing.cas.write_bytes(&digest, large).await.unwrap();

    let error = node.cas.read_bytes(&digest).await.unwrap_err();
    assert!(
        matches!(error, super::StorageError::TooLarge { max_bytes, .. } if max_bytes == 1 << 20),
        "{error:?}"
    );
    assert_eq!(
        tonic::Status::from(error).code(),
        tonic::Code::InvalidArgument
    );
    assert!(!node.cas.contains_local(&digest));
    assert_eq!(node.metrics.backing_fetches_total.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_backing_cache_is_read_through_and_never_written() {
    let backing = TestStorage::open().await;
    let (addr, _stop) = backing.serve().await;
    let node = TestStorage::open_with(|config| {
        config.backing_cache = Some(format!("grpc://{addr}"));
        config.backing_read_only = true;
    })
    .await;

    // Every write path: a whole blob, a streamed upload, an ingested output, a result.
    let small = data(1000, 3);
    let small_digest = BlobDigest::of_bytes(&small);
    node.cas.write_bytes(&small_digest, small).await.unwrap();
    let large = data(1_500_000, 7);
    let large_digest = BlobDigest::of_bytes(&large);
    let mut upload = node.cas.start_upload(&large_digest).await.unwrap();
    upload.write(&large).await.unwrap();
    upload.commit().await.unwrap();
    let output = node.cas.scratch_dir().join("output");
    std::fs::write(&output, b"an action output").unwrap();
    let output_digest = node.cas.ingest_file(&output).await.unwrap();
    let action = BlobDigest::of_bytes(b"action");
    let result = ActionResult {
        stdout_digest: Some(output_digest.to_proto()),
        ..Default::default()
    };
    node.action_cache.put(&action, &result).await.unwrap();

    for digest in [&small_digest, &large_digest, &output_digest] {
        assert!(node.cas.contains_local(digest), "{digest} is not local");
        assert!(
            !backing.cas.contains_local(digest),
            "{digest} reached the read-only backing cache"
        );
    }
    assert_eq!(node.action_cache.get(&action).await.unwrap(), Some(result));
    assert_eq!(backing.action_cache.get(&action).await.unwrap(), None);

    // Reads still fall through to it.
    let remote = data(2000, 13);
    let remote_digest = BlobDigest::of_bytes(&remote);
    backing
        .cas
        .write_bytes(&remote_digest, remote.clone())
        .await
        .unwrap();
    let remote_action = BlobDigest::of_bytes(b"remote action");
    let remote_result = ActionResult {
        stdout_digest: Some(remote_digest.to_proto()),
        ..Default::default()
    };
    backing
        .action_cache
        .put(&remote_action, &remote_result)
        .await
        .unwrap();
    assert_eq!(
        node.cas.read_bytes(&remote_digest).await.unwrap(),
        Some(remote)
    );
    assert_eq!(node.metrics.backing_fetches_total.get(), 1);
    assert_eq!(
        node.action_cache.get(&remote_action).await.unwrap(),
        Some(remote_result)
    );
}
