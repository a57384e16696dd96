//! The storage contract of one real executor over gRPC: Capabilities, ByteStream,
//! BatchUpdateBlobs digest checking, FindMissingBlobs and the action cache.

use bytes::Bytes;
use remesh_proto::bytestream::ReadRequest;
use remesh_proto::reapi::{
    ActionResult, GetActionResultRequest, GetCapabilitiesRequest, OutputFile,
    UpdateActionResultRequest, digest_function,
};
use remesh_tests::{ExecutorOptions, ExecutorProcess, blob_digest};
use tonic::Code;

/// Deterministic, non-repeating-looking content of `len` bytes.
fn patterned(len: usize, seed: u32) -> Bytes {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[tokio::test]
async fn capabilities_advertise_sha256_execution_and_the_configured_batch_limit()
-> anyhow::Result<()> {
    let executor = ExecutorOptions::new()
        .arg("--max-batch-bytes")
        .arg("1048576")
        .spawn()?;
    let clients = executor.clients("main").await?;
    let capabilities = clients
        .capabilities
        .clone()
        .get_capabilities(GetCapabilitiesRequest {
            instance_name: "main".into(),
        })
        .await?
        .into_inner();
    let cache = capabilities
        .cache_capabilities
        .expect("cache_capabilities must be present");
    assert!(
        cache
            .digest_functions
            .contains(&(digest_function::Value::Sha256 as i32)),
        "{:?}",
        cache.digest_functions
    );
    assert_eq!(cache.max_batch_total_size_bytes, 1_048_576);
    assert!(
        cache
            .action_cache_update_capabilities
            .is_some_and(|update| update.update_enabled),
        "clients must be allowed to upload action results"
    );
    let execution = capabilities
        .execution_capabilities
        .expect("execution_capabilities must be present");
    assert!(execution.exec_enabled);
    assert_eq!(
        execution.digest_function,
        digest_function::Value::Sha256 as i32
    );
    let high = capabilities.high_api_version.expect("high_api_version");
    assert_eq!(high.major, 2, "{high:?}");
    Ok(())
}

#[tokio::test]
async fn a_bytestream_upload_reads_back_whole_and_in_part() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    // Several ByteStream chunks, and a size that is not a multiple of any chunk size.
    let data = patterned(5 * 1024 * 1024 + 17, 1);
    let digest = clients.upload(data.clone()).await?;
    assert_eq!(digest, blob_digest(&data));

    let read = clients.download(&digest).await?;
    assert_eq!(read.len(), data.len());
    assert!(
        read == data,
        "the blob read back differs from the one written"
    );

    let mut partial = clients
        .bytestream
        .clone()
        .read(ReadRequest {
            resource_name: format!("main/blobs/{}/{}", digest.hash, digest.size_bytes),
            read_offset: 1_000_000,
            read_limit: 3_000,
        })
        .await?
        .into_inner();
    let mut window = Vec::new();
    while let Some(chunk) = partial.message().await? {
        window.extend_from_slice(&chunk.data);
    }
    assert_eq!(window, data[1_000_000..1_003_000]);

    let absent = blob_digest(b"never uploaded");
    let missing = clients
        .find_missing(&[digest.clone(), absent.clone()])
        .await?;
    assert_eq!(missing, vec![absent.clone()]);
    let error = clients.download(&absent).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    Ok(())
}

#[tokio::test]
async fn batch_update_with_a_wrong_digest_is_refused_and_stores_nothing() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    let claimed = blob_digest(b"what the client claims to send");
    let sent = Bytes::from_static(b"what the client really sends");
    let honest = Bytes::from_static(b"an honest blob in the same batch");
    let honest_digest = blob_digest(&honest);

    match clients
        .batch_update(vec![
            (claimed.clone(), sent),
            (honest_digest.clone(), honest.clone()),
        ])
        .await
    {
        // Per-blob statuses: the liar is refused, the honest blob stored.
        Ok(response) => {
            let status_of = |digest: &remesh_proto::reapi::Digest| {
                response
                    .responses
                    .iter()
                    .find(|entry| entry.digest.as_ref() == Some(digest))
                    .map(|entry| entry.status.as_ref().map_or(0, |status| status.code))
            };
            assert_eq!(status_of(&claimed), Some(Code::InvalidArgument as i32));
            assert_eq!(status_of(&honest_digest), Some(Code::Ok as i32));
            assert_eq!(clients.download(&honest_digest).await?, honest);
        }
        // Or the whole call refused; then nothing may have been stored under the lie.
        Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?}"),
    }
    let missing = clients.find_missing(std::slice::from_ref(&claimed)).await?;
    assert_eq!(
        missing,
        vec![claimed],
        "a blob that failed its digest check is visible"
    );
    Ok(())
}

#[tokio::test]
async fn an_action_result_written_is_read_back_and_an_unknown_one_is_not_found()
-> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    let output = Bytes::from_static(b"output of a cached action\n");
    let output_digest = clients.upload_messages(vec![output]).await?.remove(0);
    let action_digest = blob_digest(b"an action digest nobody executed");
    let result = ActionResult {
        output_files: vec![OutputFile {
            path: "out/result.txt".into(),
            digest: Some(output_digest),
            is_executable: false,
            ..OutputFile::default()
        }],
        exit_code: 0,
        ..ActionResult::default()
    };

    let unknown = clients
        .action_cache
        .clone()
        .get_action_result(GetActionResultRequest {
            instance_name: "main".into(),
            action_digest: Some(action_digest.clone()),
            ..GetActionResultRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    clients
        .action_cache
        .clone()
        .update_action_result(UpdateActionResultRequest {
            instance_name: "main".into(),
            action_digest: Some(action_digest.clone()),
            action_result: Some(result.clone()),
            ..UpdateActionResultRequest::default()
        })
        .await?;
    let read = clients
        .action_cache
        .clone()
        .get_action_result(GetActionResultRequest {
            instance_name: "main".into(),
            action_digest: Some(action_digest),
            ..GetActionResultRequest::default()
        })
        .await?
        .into_inner();
    assert_eq!(read.output_files, result.output_files);
    assert_eq!(read.exit_code, 0);
    Ok(())
}

#[tokio::test]
async fn a_bytestream_write_that_does_not_match_its_digest_is_refused() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let clients = executor.clients("main").await?;
    let data = patterned(2 * 1024 * 1024 + 5, 7);
    let mut claimed = blob_digest(&data);
    claimed.hash = blob_digest(b"some other content").hash;

    let error = clients
        .upload_as(&claimed, data)
        .await
        .expect_err("a write whose content does not hash to its name must fail");
    let status = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<tonic::Status>())
        .unwrap_or_else(|| panic!("not a gRPC status: {error:#}"));
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let missing = clients.find_missing(std::slice::from_ref(&claimed)).await?;
    assert_eq!(
        missing,
        vec![claimed],
        "a blob that failed its digest check is visible"
    );
    Ok(())
}
