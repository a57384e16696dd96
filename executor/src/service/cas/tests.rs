//! ContentAddressableStorage called directly on the service struct.

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use remesh_proto::reapi::content_addressable_storage_server::ContentAddressableStorage;
use remesh_proto::reapi::{
    BatchReadBlobsRequest, BatchUpdateBlobsRequest, Directory, DirectoryNode, FileNode,
    FindMissingBlobsRequest, GetTreeRequest, GetTreeResponse, batch_update_blobs_request,
};
use tonic::{Code, Request, Status};

use super::CasService;
use crate::digest::BlobDigest;
use crate::service::test_support::TestStorage;

fn entry(digest: &BlobDigest, data: &[u8]) -> batch_update_blobs_request::Request {
    batch_update_blobs_request::Request {
        digest: Some(digest.to_proto()),
        data: data.to_vec(),
        compressor: 0,
    }
}

#[tokio::test]
async fn batch_update_reports_each_blob() {
    let storage = TestStorage::open_with(|config| config.max_batch_bytes = 1000).await;
    let service = CasService::new(&storage.config, storage.cas.clone());
    let good = BlobDigest::of_bytes(b"good");
    let lying = BlobDigest::of_bytes(b"expected");
    let request = BatchUpdateBlobsRequest {
        instance_name: "main".into(),
        requests: vec![entry(&good, b"good"), entry(&lying, b"actually")],
        digest_function: 0,
    };
    let response = service
        .batch_update_blobs(Request::new(request))
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = response
        .responses
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(codes, vec![Code::Ok as i32, Code::InvalidArgument as i32]);
    assert_eq!(response.responses[1].digest, Some(lying.to_proto()));

    let request = FindMissingBlobsRequest {
        instance_name: "main".into(),
        blob_digests: vec![good.to_proto(), lying.to_proto()],
        digest_function: 0,
    };
    let missing = service
        .find_missing_blobs(Request::new(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missing.missing_blob_digests, vec![lying.to_proto()]);

    let big = vec![1u8; 600];
    let request = BatchUpdateBlobsRequest {
        requests: vec![
            entry(&BlobDigest::of_bytes(&big), &big),
            entry(&BlobDigest::of_bytes(&big), &big),
        ],
        ..Default::default()
    };
    let error = service
        .batch_update_blobs(Request::new(request))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let request = FindMissingBlobsRequest {
        blob_digests: vec![remesh_proto::reapi::Digest {
            hash: "../x".into(),
            size_bytes: 1,
        }],
        ..Default::default()
    };
    let error = service
        .find_missing_blobs(Request::new(request))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn batch_read_returns_data_and_per_blob_not_found() {
    let storage = TestStorage::open_with(|config| config.max_batch_bytes = 1000).await;
    let service = CasService::new(&storage.config, storage.cas.clone());
    let present = BlobDigest::of_bytes(b"present");
    storage
        .cas
        .write_bytes(&present, Bytes::from_static(b"present"))
        .await
        .unwrap();
    let absent = BlobDigest::of_bytes(b"absent");
    let request = BatchReadBlobsRequest {
        digests: vec![
            present.to_proto(),
            absent.to_proto(),
            BlobDigest::empty().to_proto(),
        ],
        ..Default::default()
    };
    let response = service
        .batch_read_blobs(Request::new(request))
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<(Vec<u8>, i32)> = response
        .responses
        .into_iter()
        .map(|r| (r.data, r.status.unwrap().code))
        .collect();
    assert_eq!(
        summary,
        vec![
            (b"present".to_vec(), Code::Ok as i32),
            (Vec::new(), Code::NotFound as i32),
            (Vec::new(), Code::Ok as i32),
        ]
    );
    let huge = BlobDigest::parse(present.hash(), "1001").unwrap();
    let request = BatchReadBlobsRequest {
        digests: vec![huge.to_proto()],
        ..Default::default()
    };
    let error = service
        .batch_read_blobs(Request::new(request))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    // Sizes that would overflow a sum are still just "too large".
    let overflow = BlobDigest::parse(present.hash(), &(i64::MAX as u64).to_string()).unwrap();
    let request = BatchReadBlobsRequest {
        digests: vec![overflow.to_proto(), overflow.to_proto()],
        ..Default::default()
    };
    let error = service
        .batch_read_blobs(Request::new(request))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

/// Stores `directory` and returns the node naming it.
async fn put_directory(storage: &TestStorage, name: &str, directory: &Directory) -> DirectoryNode {
    let data = directory.encode_to_vec();
    let digest = BlobDigest::of_bytes(&data);
    storage
        .cas
        .write_bytes(&digest, Bytes::from(data))
        .await
        .unwrap();
    DirectoryNode {
        name: name.into(),
        digest: Some(digest.to_proto()),
    }
}

fn file(name: &str) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(BlobDigest::of_bytes(name.as_bytes()).to_proto()),
        ..Default::default()
    }
}

/// root → {lib, src}; lib → {gen}; src → {gen} (the same directory twice); gen → {}.
async fn three_levels(storage: &TestStorage) -> (BlobDigest, Vec<Directory>) {
    let generated = Directory {
        files: vec![file("gen.rs")],
        ..Default::default()
    };
    let gen_node = put_directory(storage, "gen", &generated).await;
    let lib = Directory {
        files: vec![file("lib.rs")],
        directories: vec![gen_node.clone()],
        ..Default::default()
    };
    let src = Directory {
        files: vec![file("main.rs")],
        directories: vec![gen_node],
        ..Default::default()
    };
    let root = Directory {
        directories: vec![
            put_directory(storage, "lib", &lib).await,
            put_directory(storage, "src", &src).await,
        ],
        ..Default::default()
    };
    let root_node = put_directory(storage, "", &root).await;
    let root_digest = BlobDigest::from_field(root_node.digest.as_ref()).unwrap();
    (root_digest, vec![root, lib, src, generated])
}

async fn get_tree(
    service: &CasService,
    root: &BlobDigest,
    page_size: i32,
    page_token: &str,
) -> Result<Vec<GetTreeResponse>, Status> {
    let request = GetTreeRequest {
        instance_name: "main".into(),
        root_digest: Some(root.to_proto()),
        page_size,
        page_token: page_token.into(),
        digest_function: 0,
    };
    let stream = service.get_tree(Request::new(request)).await?.into_inner();
    stream.collect::<Vec<_>>().await.into_iter().collect()
}

#[tokio::test]
async fn get_tree_pages_a_three_level_tree() {
    let storage = TestStorage::open().await;
    let service = CasService::new(&storage.config, storage.cas.clone());
    let (root, expected) = three_levels(&storage).await;

    let pages = get_tree(&service, &root, 0, "").await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].directories, expected,
        "breadth first, shared directory once"
    );
    assert!(pages[0].next_page_token.is_empty());

    let pages = get_tree(&service, &root, 3, "").await.unwrap();
    let sizes: Vec<usize> = pages.iter().map(|p| p.directories.len()).collect();
    assert_eq!(sizes, vec![3, 1]);
    assert!(!pages[0].next_page_token.is_empty() && pages[1].next_page_token.is_empty());
    // Resuming from the first page's token gives what follows it.
    let resumed = get_tree(&service, &root, 3, &pages[0].next_page_token)
        .await
        .unwrap();
    assert_eq!(resumed[0].directories, expected[3..]);

    let bad_token = get_tree(&service, &root, 3, "v1:1:0000").await.unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    let negative = get_tree(&service, &root, -1, "").await.unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
    let absent = BlobDigest::of_bytes(b"no such directory");
    assert_eq!(
        get_tree(&service, &absent, 0, "").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn get_tree_pages_stay_under_the_message_limit() {
    let storage = TestStorage::open_with(|config| config.max_message_bytes = 4096 + 1000).await;
    let service = CasService::new(&storage.config, storage.cas.clone());
    let mut children = Vec::new();
    for i in 0..12 {
        let leaf = Directory {
            files: (0..4).map(|j| file(&format!("file-{i}-{j}"))).collect(),
            ..Default::default()
        };
        children.push(put_directory(&storage, &format!("d{i:02}"), &leaf).await);
    }
    let root = Directory {
        directories: children,
        ..Default::default()
    };
    let root =
        BlobDigest::from_field(put_directory(&storage, "", &root).await.digest.as_ref()).unwrap();
    let pages = get_tree(&service, &root, 0, "").await.unwrap();
    assert!(
        pages.len() > 1,
        "about 1000 bytes cannot hold 13 directories"
    );
    let limit = storage.config.max_message_bytes;
    assert!(pages.iter().all(|page| page.encoded_len() <= limit));
    // Pages are filled up to the budget, not one directory each.
    assert!(pages.len() < 13, "{} pages", pages.len());
    assert_eq!(pages.iter().map(|p| p.directories.len()).sum::<usize>(), 13);
}

#[tokio::test]
async fn get_tree_refuses_a_blob_that_is_not_a_directory() {
    let storage = TestStorage::open().await;
    let service = CasService::new(&storage.config, storage.cas.clone());
    let junk = b"\xff\xff\xff not a protobuf".to_vec();
    let digest = BlobDigest::of_bytes(&junk);
    storage
        .cas
        .write_bytes(&digest, Bytes::from(junk))
        .await
        .unwrap();
    let error = get_tree(&service, &digest, 0, "").await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn batch_read_of_many_tiny_blobs_stays_under_the_message_limit() {
    let storage = TestStorage::open_with(|config| {
        config.max_batch_bytes = 1000;
        config.max_message_bytes = 70_000;
    })
    .await;
    let service = CasService::new(&storage.config, storage.cas.clone());
    let request = BatchReadBlobsRequest {
        digests: vec![BlobDigest::empty().to_proto(); 1000],
        ..Default::default()
    };
    let error = service
        .batch_read_blobs(Request::new(request))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("split"), "{}", error.message());
    let request = BatchReadBlobsRequest {
        digests: vec![BlobDigest::empty().to_proto(); 100],
        ..Default::default()
    };
    let response = service
        .batch_read_blobs(Request::new(request))
        .await
        .unwrap();
    assert_eq!(response.into_inner().responses.len(), 100);
}
