//! Tests of the local tiers through the public `Cas` and `ActionCache` API: what the
//! services and the execution engine rely on.

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use remesh_proto::reapi::{ActionResult, OutputFile};

use super::*;

fn config(dir: &Path, cas_max_bytes: u64) -> Config {
    Config {
        data_dir: dir.to_owned(),
        cas_max_bytes,
        ..Config::default()
    }
}

async fn open(dir: &Path, cas_max_bytes: u64) -> (Cas, Metrics) {
    let metrics = Metrics::new();
    let cas = Cas::open(&config(dir, cas_max_bytes), metrics.clone())
        .await
        .unwrap();
    (cas, metrics)
}

fn blob(fill: u8, len: usize) -> (BlobDigest, Bytes) {
    let data = Bytes::from(vec![fill; len]);
    (BlobDigest::of_bytes(&data), data)
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("tmp"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn written_blobs_read_back_and_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, metrics) = open(dir.path(), 1 << 30).await;
    let (digest, data) = blob(7, 1000);
    assert_eq!(
        cas.find_missing(std::slice::from_ref(&digest))
            .await
            .unwrap(),
        vec![digest.clone()]
    );
    cas.write_bytes(&digest, data.clone()).await.unwrap();
    assert_eq!(cas.read_bytes(&digest).await.unwrap(), Some(data));
    assert!(
        cas.find_missing(&[digest.clone(), BlobDigest::empty()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cas.read_bytes(&BlobDigest::empty()).await.unwrap(),
        Some(Bytes::new())
    );
    let path = dir
        .path()
        .join("cas")
        .join(&digest.hash()[..2])
        .join(digest.hash());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(
        (metrics.cas_blobs.get(), metrics.cas_bytes.get()),
        (1, 1000)
    );
    // Same hash, other size: a different (absent) blob.
    let lying = BlobDigest::parse(digest.hash(), "999").unwrap();
    assert_eq!(cas.read_bytes(&lying).await.unwrap(), None);
}

#[tokio::test]
async fn a_mismatching_write_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, _) = open(dir.path(), 1 << 30).await;
    let (digest, _) = blob(1, 64);
    let error = cas
        .write_bytes(&digest, Bytes::from(vec![2; 64]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::DigestMismatch { .. }),
        "{error}"
    );
    assert_eq!(
        tonic::Status::from(error).code(),
        tonic::Code::InvalidArgument
    );

    let mut upload = cas.start_upload(&digest).await.unwrap();
    upload.write(&[1; 32]).await.unwrap();
    upload.write(&[3; 32]).await.unwrap();
    assert_eq!(upload.written(), 64);
    assert!(matches!(
        upload.commit().await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert_eq!(
        cas.find_missing(std::slice::from_ref(&digest))
            .await
            .unwrap(),
        vec![digest]
    );
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );
}

#[tokio::test]
async fn evicts_least_recently_used_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, metrics) = open(dir.path(), 100).await;
    let blobs: Vec<_> = (0..4)
        .map(|i| blob(i, if i < 3 { 30 } else { 50 }))
        .collect();
    for (digest, data) in &blobs[..3] {
        cas.write_bytes(digest, data.clone()).await.unwrap();
    }
    // Reading blob 0 makes it recent; 1 and 2 are the oldest now.
    assert!(cas.read_bytes(&blobs[0].0).await.unwrap().is_some());
    cas.write_bytes(&blobs[3].0, blobs[3].1.clone())
        .await
        .unwrap();
    let all: Vec<_> = blobs.iter().map(|(digest, _)| digest.clone()).collect();
    assert_eq!(
        cas.find_missing(&all).await.unwrap(),
        vec![all[1].clone(), all[2].clone()]
    );
    assert_eq!(metrics.cas_evictions_total.get(), 2);
    assert_eq!((metrics.cas_blobs.get(), metrics.cas_bytes.get()), (2, 80));
    assert!(
        !dir.path()
            .join("cas")
            .join(&all[1].hash()[..2])
            .join(all[1].hash())
            .exists()
    );
}

#[tokio::test]
async fn content_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (digest, data) = blob(9, 5000);
    {
        let (cas, _) = open(dir.path(), 1 << 30).await;
        cas.write_bytes(&digest, data.clone()).await.unwrap();
        // A temporary file left by a crash is cleaned at the next start.
        std::fs::write(dir.path().join("tmp/blob-stale"), b"partial").unwrap();
    }
    let (cas, metrics) = open(dir.path(), 1 << 30).await;
    assert_eq!(cas.read_bytes(&digest).await.unwrap(), Some(data));
    assert_eq!(
        (metrics.cas_blobs.get(), metrics.cas_bytes.get()),
        (1, 5000)
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_blob_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, metrics) = open(dir.path(), 1 << 30).await;
    let (digest, data) = blob(5, 300_000);
    let mut writers = Vec::new();
    for i in 0..8 {
        let (cas, digest, data) = (cas.clone(), digest.clone(), data.clone());
        writers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                return cas.write_bytes(&digest, data).await;
            }
            let mut upload = cas.start_upload(&digest).await?;
            for chunk in data.chunks(70_000) {
                upload.write(chunk).await?;
            }
            upload.commit().await
        }));
    }
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    assert_eq!(cas.read_bytes(&digest).await.unwrap(), Some(data));
    assert_eq!(
        (metrics.cas_blobs.get(), metrics.cas_bytes.get()),
        (1, 300_000)
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test]
async fn materialize_copies_with_the_asked_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, _) = open(dir.path(), 1 << 30).await;
    let (digest, data) = blob(4, 2000);
    cas.write_bytes(&digest, data.clone()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (tool, input) = (work.path().join("tool"), work.path().join("input"));
    cas.materialize(&digest, &tool, true).await.unwrap();
    cas.materialize(&digest, &input, false).await.unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&tool), mode(&input)), (0o555, 0o444));
    assert_eq!(std::fs::read(&tool).unwrap(), data);
    // A copy, not a link: changing it leaves the CAS intact.
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&input, b"clobbered").unwrap();
    assert_eq!(cas.read_bytes(&digest).await.unwrap(), Some(data));
    let empty = work.path().join("empty");
    cas.materialize(&BlobDigest::empty(), &empty, false)
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    let absent = blob(8, 10).0;
    let error = cas
        .materialize(&absent, &work.path().join("x"), false)
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::NotFound(_)), "{error}");
}

#[tokio::test]
async fn ingest_moves_an_output_into_the_cas() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, _) = open(dir.path(), 1 << 30).await;
    let output = cas.scratch_dir().join("work-1-output");
    std::fs::write(&output, b"compiled output").unwrap();
    let digest = cas.ingest_file(&output).await.unwrap();
    assert_eq!(digest, BlobDigest::of_bytes(b"compiled output"));
    assert!(!output.exists(), "the output was moved, not copied");
    assert_eq!(
        cas.read_bytes(&digest).await.unwrap().unwrap(),
        &b"compiled output"[..]
    );

    let link = cas.scratch_dir().join("work-1-link");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    assert!(
        cas.ingest_file(&link).await.is_err(),
        "a symlink is not a file output"
    );
}

#[tokio::test]
async fn action_results_are_served_only_while_their_blobs_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, _) = open(dir.path(), 1 << 30).await;
    let ac = ActionCache::open(&config(dir.path(), 1 << 30), cas.clone())
        .await
        .unwrap();
    let action = blob(1, 10).0;
    assert_eq!(ac.get(&action).await.unwrap(), None);

    let (output, data) = blob(2, 10);
    let result = ActionResult {
        output_files: vec![OutputFile {
            path: "out".into(),
            digest: Some(output.to_proto()),
            ..Default::default()
        }],
        exit_code: 0,
        ..Default::default()
    };
    ac.put(&action, &result).await.unwrap();
    assert_eq!(
        ac.get(&action).await.unwrap(),
        None,
        "the output blob is missing"
    );
    cas.write_bytes(&output, data).await.unwrap();
    assert_eq!(ac.get(&action).await.unwrap(), Some(result.clone()));

    // Entries survive a restart.
    let ac = ActionCache::open(&config(dir.path(), 1 << 30), cas)
        .await
        .unwrap();
    assert_eq!(ac.get(&action).await.unwrap(), Some(result));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_and_disk_agree_after_concurrent_writes_reads_and_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, metrics) = open(dir.path(), 8000).await;
    let blobs: Vec<_> = (0..30).map(|i| blob(i, 1000)).collect();
    let mut workers = Vec::new();
    for worker in 0..4usize {
        let (cas, blobs) = (cas.clone(), blobs.clone());
        workers.push(tokio::spawn(async move {
            for step in 0..150usize {
                let (digest, data) = &blobs[(step * 7 + worker * 13) % blobs.len()];
                if step % 3 == 0 {
                    if let Some(read) = cas.read_bytes(digest).await.unwrap() {
                        assert_eq!(&read, data, "a read returned other content");
                    }
                } else {
                    cas.write_bytes(digest, data.clone()).await.unwrap();
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let on_disk: Vec<String> = walk_cas(dir.path());
    let all: Vec<BlobDigest> = blobs.iter().map(|(digest, _)| digest.clone()).collect();
    let missing = cas.find_missing(&all).await.unwrap();
    let present: Vec<&BlobDigest> = all.iter().filter(|d| !missing.contains(d)).collect();
    assert_eq!(present.len() as i64, metrics.cas_blobs.get());
    assert!(
        metrics.cas_bytes.get() <= 8000,
        "{} bytes kept",
        metrics.cas_bytes.get()
    );
    let mut indexed: Vec<String> = present.iter().map(|d| d.hash().to_owned()).collect();
    indexed.sort();
    assert_eq!(
        indexed, on_disk,
        "every indexed blob has a file and no file is unindexed"
    );
    for digest in present {
        let data = cas.read_bytes(digest).await.unwrap().unwrap();
        assert_eq!(&BlobDigest::of_bytes(&data), digest);
    }
}

/// Hashes of the blob files under `cas/`, sorted, without the always-present empty blob.
fn walk_cas(dir: &Path) -> Vec<String> {
    let mut hashes = Vec::new();
    for fan_out in std::fs::read_dir(dir.join("cas")).unwrap() {
        for entry in std::fs::read_dir(fan_out.unwrap().path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name != crate::digest::EMPTY_SHA256 {
                hashes.push(name);
            }
        }
    }
    hashes.sort();
    hashes
}
