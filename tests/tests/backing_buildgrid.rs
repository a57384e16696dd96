//! BuildGrid, a REAPI server remesh did not write, as the backing cache (tier 2) two
//! executors share: what one writes, BuildGrid holds and the other reads back.

use bytes::Bytes;
use remesh_proto::reapi::{
    ActionResult, GetActionResultRequest, OutputFile, UpdateActionResultRequest,
};
use remesh_tests::buildgrid::BUILDGRID_INSTANCE;
use remesh_tests::{BuildGridServer, ExecutorOptions, blob_digest};

#[tokio::test]
async fn two_executors_share_blobs_and_action_results_through_buildgrid() -> anyhow::Result<()> {
    let buildgrid = BuildGridServer::start()?;
    let writer = ExecutorOptions::new()
        .backing_cache(buildgrid.addr(), BUILDGRID_INSTANCE)
        .spawn()?;
    let writer_clients = writer.clients("main").await?;

    // One blob small enough for a batch, one that only ByteStream carries.
    let small = Bytes::from_static(b"small blob written through executor A");
    let large: Bytes = (0..6_000_000u32).map(|i| (i % 241) as u8).collect();
    let small_digest = writer_clients
        .upload_messages(vec![small.clone()])
        .await?
        .remove(0);
    let large_digest = writer_clients.upload(large.clone()).await?;

    // Straight to BuildGrid: the writes went through to tier 2.
    let buildgrid_clients = buildgrid.clients().await?;
    let missing_in_buildgrid = buildgrid_clients
        .find_missing(&[small_digest.clone(), large_digest.clone()])
        .await?;
    assert!(
        missing_in_buildgrid.is_empty(),
        "BuildGrid lacks {missing_in_buildgrid:?} after writes through executor A"
    );
    assert!(buildgrid_clients.download(&large_digest).await? == large);

    // An action result written through A.
    let action_digest = blob_digest(b"action shared through the backing cache");
    let result = ActionResult {
        output_files: vec![OutputFile {
            path: "out/small.txt".into(),
            digest: Some(small_digest.clone()),
            ..OutputFile::default()
        }],
        exit_code: 0,
        ..ActionResult::default()
    };
    writer_clients
        .action_cache
        .clone()
        .update_action_result(UpdateActionResultRequest {
            instance_name: "main".into(),
            action_digest: Some(action_digest.clone()),
            action_result: Some(result.clone()),
            ..UpdateActionResultRequest::default()
        })
        .await?;

    // A second executor with an empty data dir and the same backing cache.
    let reader = ExecutorOptions::new()
        .backing_cache(buildgrid.addr(), BUILDGRID_INSTANCE)
        .spawn()?;
    let reader_clients = reader.clients("main").await?;
    let missing = reader_clients
        .find_missing(&[small_digest.clone(), large_digest.clone()])
        .await?;
    assert!(missing.is_empty(), "executor B does not see {missing:?}");
    assert_eq!(reader_clients.download(&small_digest).await?, small);
    assert!(
        reader_clients.download(&large_digest).await? == large,
        "the large blob read through executor B differs"
    );
    let read = reader_clients
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
    Ok(())
}
