//! Reads carrying `LOCAL_ONLY_HEADER`, through the services, against a node whose backing
//! cache is a second, in-process executor serving over gRPC: what only the backing cache
//! holds is missing for them, and they never reach the backing cache at all.

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use remesh_proto::bytestream::ReadRequest;
use remesh_proto::bytestream::byte_stream_server::ByteStream;
use remesh_proto::reapi::action_cache_server::ActionCache as _;
use remesh_proto::reapi::content_addressable_storage_server::ContentAddressableStorage;
use remesh_proto::reapi::{
    ActionResult, BatchReadBlobsRequest, Directory, FileNode, FindMissingBlobsRequest,
    GetActionResultRequest, GetTreeRequest,
};
use tonic::{Code, Request, Status};

use super::{ActionCacheService, ByteStreamService, CasService};
use crate::LOCAL_ONLY_HEADER;
use crate::digest::BlobDigest;
use crate::service::test_support::TestStorage;

/// One node's storage services, called directly.
struct Services {
    cas: CasService,
    bytestream: ByteStreamService,
    action_cache: ActionCacheService,
}

impl Services {
    fn of(node: &TestStorage) -> Self {
        Self {
            cas: CasService::new(&node.config, node.cas.clone()),
            bytestream: ByteStreamService::new(node.cas.clone()),
            action_cache: ActionCacheService::new(node.action_cache.clone()),
        }
    }

    async fn find_missing(&self, local_only: bool, digests: &[&BlobDigest]) -> Vec<BlobDigest> {
        let request = FindMissingBlobsRequest {
            blob_digests: digests.iter().map(|digest| digest.to_proto()).collect(),
            ..Default::default()
        };
        let response = self
            .cas
            .find_missing_blobs(request_with(local_only, request))
            .await
            .unwrap()
            .into_inner();
        response
            .missing_blob_digests
            .iter()
            .map(|digest| BlobDigest::from_field(Some(digest)).unwrap())
            .collect()
    }

    async fn bytestream_read(&self, local_only: bool, digest: &BlobDigest) -> Result<Bytes, Code> {
        let request = ReadRequest {
            resource_name: format!("main/blobs/{}/{}", digest.hash(), digest.size()),
            ..Default::default()
        };
        let mut stream = self
            .bytestream
            .read(request_with(local_only, request))
            .await
            .map_err(|status| status.code())?
            .into_inner();
        let mut data = Vec::new();
        while let Some(message) = stream.next().await {
            data.extend(message.map_err(|status| status.code())?.data);
        }
        Ok(Bytes::from(data))
    }

    /// The one entry of a BatchReadBlobs: its data, or its status code.
    async fn batch_read(&self, local_only: bool, digest: &BlobDigest) -> Result<Bytes, Code> {
        let request = BatchReadBlobsRequest {
            digests: vec![digest.to_proto()],
            ..Default::default()
        };
        let response = self
            .cas
            .batch_read_blobs(request_with(local_only, request))
            .await
            .unwrap()
            .into_inner();
        let [entry] = <[_; 1]>::try_from(response.responses).unwrap();
        match entry.status.map_or(0, |status| status.code) {
            0 => Ok(Bytes::from(entry.data)),
            code => Err(Code::from_i32(code)),
        }
    }

    /// The directories of the whole tree, or the call's status code.
    async fn get_tree(&self, local_only: bool, root: &BlobDigest) -> Result<Vec<Directory>, Code> {
        let request = GetTreeRequest {
            root_digest: Some(root.to_proto()),
            ..Default::default()
        };
        let mut stream = self
            .cas
            .get_tree(request_with(local_only, request))
            .await
            .map_err(|status| status.code())?
            .into_inner();
        let mut directories = Vec::new();
        while let Some(page) = stream.next().await {
            directories.extend(page.map_err(|status| status.code())?.directories);
        }
        Ok(directories)
    }

    async fn get_action_result(
        &self,
        local_only: bool,
        action: &BlobDigest,
    ) -> Result<ActionResult, Status> {
        let request = GetActionResultRequest {
            action_digest: Some(action.to_proto()),
            ..Default::default()
        };
        let response = self
            .action_cache
            .get_action_result(request_with(local_only, request))
            .await?;
        Ok(response.into_inner())
    }
}

/// `message` as a request, with the local-only header (and the value the proxy's fill
/// endpoint happens to send: any value counts) or without.
fn request_with<T>(local_only: bool, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if local_only {
        request
            .metadata_mut()
            .insert(LOCAL_ONLY_HEADER, "1".parse().unwrap());
    }
    request
}

/// Blobs, a directory and an action result held by the backing cache only.
struct BackingOnly {
    streamed: (BlobDigest, Bytes),
    batched: (BlobDigest, Bytes),
    tree: (BlobDigest, Directory),
    action: BlobDigest,
    result: ActionResult,
    stdout: BlobDigest,
}

impl BackingOnly {
    async fn store(backing: &TestStorage) -> Self {
        let blob = |text: &'static str| (BlobDigest::of_bytes(text.as_bytes()), Bytes::from(text));
        let streamed = blob("read with ByteStream");
        let batched = blob("read in a batch");
        let stdout = blob("the action's stdout");
        let directory = Directory {
            files: vec![FileNode {
                name: "file".into(),
                digest: Some(batched.0.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let encoded = Bytes::from(directory.encode_to_vec());
        let tree = BlobDigest::of_bytes(&encoded);
        for (digest, data) in [&streamed, &batched, &stdout, &(tree.clone(), encoded)] {
            backing.cas.write_bytes(digest, data.clone()).await.unwrap();
        }
        let action = BlobDigest::of_bytes(b"an action run elsewhere");
        let result = ActionResult {
            stdout_digest: Some(stdout.0.to_proto()),
            ..Default::default()
        };
        backing.action_cache.put(&action, &result).await.unwrap();
        Self {
            streamed,
            batched,
            tree: (tree, directory),
            action,
            result,
            stdout: stdout.0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_reads_never_fall_through_and_plain_reads_still_do() {
    let backing = TestStorage::open().await;
    let (addr, _stop) = backing.serve().await;
    let node = TestStorage::open_with(|config| {
        config.backing_cache = Some(format!("grpc://{addr}"));
        config.backing_instance_name = "main".into();
    })
    .await;
    let held = BackingOnly::store(&backing).await;
    let services = Services::of(&node);
    let (streamed, batched, tree) = (&held.streamed.0, &held.batched.0, &held.tree.0);

    // With the header: everything is missing, and nothing was fetched.
    let all = [streamed, batched, tree, &held.stdout];
    assert_eq!(services.find_missing(true, &all).await.len(), all.len());
    assert_eq!(
        services.bytestream_read(true, streamed).await,
        Err(Code::NotFound)
    );
    assert_eq!(
        services.batch_read(true, batched).await,
        Err(Code::NotFound)
    );
    assert_eq!(services.get_tree(true, tree).await, Err(Code::NotFound));
    let error = services
        .get_action_result(true, &held.action)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    assert_eq!(node.metrics.backing_fetches_total.get(), 0);
    for digest in all {
        assert!(!node.cas.contains_local(digest), "{digest} became local");
    }

    // Without it: the backing cache answers, as it always did.
    assert!(services.find_missing(false, &all).await.is_empty());
    assert_eq!(
        services.bytestream_read(false, streamed).await,
        Ok(held.streamed.1.clone())
    );
    assert_eq!(
        services.batch_read(false, batched).await,
        Ok(held.batched.1.clone())
    );
    assert_eq!(
        services.get_tree(false, tree).await,
        Ok(vec![held.tree.1.clone()])
    );
    assert_eq!(
        services
            .get_action_result(false, &held.action)
            .await
            .unwrap(),
        held.result
    );
    assert_eq!(node.metrics.backing_fetches_total.get(), 3);

    // The result is local now, but its stdout is not: a local-only lookup, whose
    // client could not download that stdout from this node, is still a miss.
    assert!(!node.cas.contains_local(&held.stdout));
    let error = services
        .get_action_result(true, &held.action)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    // What is local is served with the header as without it.
    assert_eq!(
        services.bytestream_read(true, streamed).await,
        Ok(held.streamed.1.clone())
    );
    assert_eq!(
        services.find_missing(true, &all).await,
        vec![held.stdout.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_reads_do_not_need_the_backing_cache_to_be_up() {
    // A port nobody listens on: any backing call fails UNAVAILABLE.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = TestStorage::open_with(|config| {
        config.backing_cache = Some(format!("grpc://{addr}"));
    })
    .await;
    let services = Services::of(&node);
    let absent = BlobDigest::of_bytes(b"nowhere");

    assert_eq!(
        services.find_missing(true, &[&absent]).await,
        vec![absent.clone()]
    );
    assert_eq!(
        services.bytestream_read(true, &absent).await,
        Err(Code::NotFound)
    );
    assert_eq!(
        services.batch_read(true, &absent).await,
        Err(Code::NotFound)
    );
    assert_eq!(services.get_tree(true, &absent).await, Err(Code::NotFound));
    let error = services.get_action_result(true, &absent).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");

    // The same reads without the header do try the backing cache.
    assert_eq!(
        services.bytestream_read(false, &absent).await,
        Err(Code::Unavailable)
    );
    let error = services
        .get_action_result(false, &absent)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
}
