//! ByteStream called directly on the service struct, as a client would use it.

use bytes::Bytes;
use futures::StreamExt;
use remesh_proto::bytestream::byte_stream_server::ByteStream;
use remesh_proto::bytestream::{ReadRequest, WriteRequest};
use tonic::{Code, Request, Status};

use super::ByteStreamService;
use crate::digest::BlobDigest;
use crate::service::test_support::TestStorage;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn message(name: &str, offset: usize, data: &[u8], finish: bool) -> Result<WriteRequest, Status> {
    Ok(WriteRequest {
        resource_name: name.to_owned(),
        write_offset: offset as i64,
        finish_write: finish,
        data: data.to_vec(),
    })
}

fn upload_name(digest: &BlobDigest) -> String {
    format!("main/uploads/5f0c7f44-1b7e-4c39-9d67-3cb1d29e0b1a/blobs/{digest}")
}

async fn read_all(
    service: &ByteStreamService,
    name: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<u8>, Vec<usize>), Status> {
    let request = Request::new(ReadRequest {
        resource_name: name.to_owned(),
        read_offset: offset,
        read_limit: limit,
    });
    let mut stream = service.read(request).await?.into_inner();
    let (mut all, mut sizes) = (Vec::new(), Vec::new());
    while let Some(message) = stream.next().await {
        let message = message?;
        sizes.push(message.data.len());
        all.extend(message.data);
    }
    Ok((all, sizes))
}

#[tokio::test]
async fn an_interrupted_upload_resumes_where_it_stopped() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    let blob = data(3_000_000);
    let digest = BlobDigest::of_bytes(&blob);
    let name = upload_name(&digest);

    // First stream: two chunks, then the connection breaks.
    let first = futures::stream::iter(vec![
        message(&name, 0, &blob[..1_000_000], false),
        message("", 1_000_000, &blob[1_000_000..1_800_000], false),
        Err(Status::cancelled("client went away")),
    ]);
    let error = service.write_stream(first).await.unwrap_err();
    assert_eq!(error.code(), Code::Cancelled);
    let status = service.write_status(&name).unwrap();
    assert_eq!((status.committed_size, status.complete), (1_800_000, false));

    // Resuming from the wrong place is refused and keeps the partial upload.
    let wrong = futures::stream::iter(vec![message(&name, 5, &blob[5..10], false)]);
    assert_eq!(
        service.write_stream(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        service.write_status(&name).unwrap().committed_size,
        1_800_000
    );

    let second = futures::stream::iter(vec![
        message(&name, 1_800_000, &blob[1_800_000..2_900_000], false),
        message("", 2_900_000, &blob[2_900_000..], true),
    ]);
    let response = service.write_stream(second).await.unwrap();
    assert_eq!(response.committed_size, 3_000_000);
    let status = service.write_status(&name).unwrap();
    assert_eq!((status.committed_size, status.complete), (3_000_000, true));
    let (read, _) = read_all(&service, &format!("main/blobs/{digest}"), 0, 0)
        .await
        .unwrap();
    assert!(read == blob, "read back differs from what was written");
}

#[tokio::test]
async fn a_stream_ending_without_finish_write_can_be_resumed() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    let blob = data(1000);
    let digest = BlobDigest::of_bytes(&blob);
    let name = upload_name(&digest);
    let first = futures::stream::iter(vec![message(&name, 0, &blob[..400], false)]);
    let error = service.write_stream(first).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("finish_write"),
        "{}",
        error.message()
    );
    let second = futures::stream::iter(vec![message(&name, 400, &blob[400..], true)]);
    assert_eq!(
        service.write_stream(second).await.unwrap().committed_size,
        1000
    );
    assert!(storage.cas.contains_local(&digest));
}

#[tokio::test]
async fn a_wrong_digest_is_refused_and_nothing_is_stored() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    let blob = data(5000);
    let digest = BlobDigest::of_bytes(&blob);
    let name = upload_name(&digest);
    let mut corrupted = blob.clone();
    corrupted[4000] ^= 1;
    let stream = futures::stream::iter(vec![message(&name, 0, &corrupted, true)]);
    let error = service.write_stream(stream).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(!storage.cas.contains_local(&digest));
    assert_eq!(
        service.write_status(&name).unwrap_err().code(),
        Code::NotFound
    );

    // More data than the digest names is refused before it is written.
    let stream = futures::stream::iter(vec![message(&name, 0, &data(6000), true)]);
    assert_eq!(
        service.write_stream(stream).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // A malformed resource name says what is wrong.
    let stream = futures::stream::iter(vec![message("uploads/x/blobs/abc/1", 0, b"a", true)]);
    let error = service.write_stream(stream).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("hash"), "{}", error.message());
}

#[tokio::test]
async fn writing_a_present_blob_returns_at_once() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    let blob = data(2048);
    let digest = BlobDigest::of_bytes(&blob);
    storage
        .cas
        .write_bytes(&digest, Bytes::from(blob.clone()))
        .await
        .unwrap();
    // Only the first chunk is sent and no finish_write: the server must not wait.
    let stream = futures::stream::iter(vec![message(&upload_name(&digest), 0, &blob[..10], false)])
        .chain(futures::stream::pending());
    let response = service.write_stream(Box::pin(stream)).await.unwrap();
    assert_eq!(response.committed_size, 2048);
    let zstd_name = format!("uploads/u2/compressed-blobs/zstd/{digest}");
    let stream = futures::stream::iter(vec![message(&zstd_name, 0, b"x", false)]);
    assert_eq!(
        service.write_stream(stream).await.unwrap().committed_size,
        -1
    );
}

#[tokio::test]
async fn reads_honour_offset_and_limit_in_bounded_chunks() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    let blob = data(2_500_000);
    let digest = BlobDigest::of_bytes(&blob);
    storage
        .cas
        .write_bytes(&digest, Bytes::from(blob.clone()))
        .await
        .unwrap();
    let name = format!("blobs/{digest}");

    let (all, sizes) = read_all(&service, &name, 0, 0).await.unwrap();
    assert!(all == blob);
    assert!(sizes.iter().all(|size| *size <= 1 << 20), "{sizes:?}");
    let (part, _) = read_all(&service, &name, 1_048_570, 20).await.unwrap();
    assert_eq!(part, &blob[1_048_570..1_048_590]);
    let (tail, _) = read_all(&service, &name, 2_499_990, 1000).await.unwrap();
    assert_eq!(tail, &blob[2_499_990..]);
    let (nothing, _) = read_all(&service, &name, 2_500_000, 0).await.unwrap();
    assert!(nothing.is_empty());

    let code = |result: Result<(Vec<u8>, Vec<usize>), Status>| result.unwrap_err().code();
    assert_eq!(
        code(read_all(&service, &name, 2_500_001, 0).await),
        Code::OutOfRange
    );
    assert_eq!(
        code(read_all(&service, &name, -1, 0).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(read_all(&service, &name, 0, -1).await),
        Code::InvalidArgument
    );
    let absent = BlobDigest::of_bytes(b"absent");
    assert_eq!(
        code(read_all(&service, &format!("blobs/{absent}"), 0, 0).await),
        Code::NotFound
    );
    assert_eq!(
        code(read_all(&service, "blobs/../../etc/passwd/1", 0, 0).await),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn zstd_uploads_and_reads_round_trip() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    let blob: Vec<u8> = b"remesh compresses repetitive build outputs well. "
        .repeat(60_000)
        .into_iter()
        .chain(data(500_000))
        .collect();
    let digest = BlobDigest::of_bytes(&blob);
    let compressed = zstd::encode_all(blob.as_slice(), 3).unwrap();
    assert!(compressed.len() < blob.len() / 2);
    let name = format!("main/uploads/u1/compressed-blobs/zstd/{digest}");
    let chunk = compressed.len() / 3 + 1;
    let messages: Vec<_> = compressed
        .chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let last = (i + 1) * chunk >= compressed.len();
            message(if i == 0 { &name } else { "" }, i * chunk, piece, last)
        })
        .collect();
    let response = service
        .write_stream(futures::stream::iter(messages))
        .await
        .unwrap();
    assert_eq!(response.committed_size, compressed.len() as i64);
    assert!(storage.cas.contains_local(&digest));

    let read_name = format!("main/compressed-blobs/zstd/{digest}");
    let (read, sizes) = read_all(&service, &read_name, 0, 0).await.unwrap();
    assert!(sizes.iter().all(|size| *size <= 1 << 20));
    assert!(zstd::decode_all(read.as_slice()).unwrap() == blob);
    // Offsets count compressed bytes: resuming a compressed read continues the stream.
    let (rest, _) = read_all(&service, &read_name, 100, 0).await.unwrap();
    assert_eq!(rest, &read[100..]);
    let (plain, _) = read_all(&service, &format!("blobs/{digest}"), 0, 0)
        .await
        .unwrap();
    assert!(plain == blob);
}

#[tokio::test]
async fn bad_zstd_uploads_are_refused() {
    let storage = TestStorage::open().await;
    let service = ByteStreamService::new(storage.cas.clone());
    // A small digest with a payload that inflates far beyond it.
    let bomb = zstd::encode_all(vec![0u8; 50 << 20].as_slice(), 19).unwrap();
    let small = BlobDigest::of_bytes(&[0u8; 100]);
    let name = format!("uploads/u/compressed-blobs/zstd/{small}");
    let error = service
        .write_stream(futures::stream::iter(vec![message(&name, 0, &bomb, true)]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(!storage.cas.contains_local(&small));

    let blob = data(10_000);
    let digest = BlobDigest::of_bytes(&blob);
    let compressed = zstd::encode_all(blob.as_slice(), 3).unwrap();
    let name = format!("uploads/u/compressed-blobs/zstd/{digest}");
    let truncated = &compressed[..compressed.len() - 4];
    let error = service
        .write_stream(futures::stream::iter(vec![message(
            &name, 0, truncated, true,
        )]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let garbage = futures::stream::iter(vec![message(&name, 0, b"not zstd at all", true)]);
    assert_eq!(
        service.write_stream(garbage).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert!(!storage.cas.contains_local(&digest));
}
