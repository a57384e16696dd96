//! Hostile inputs, shared by the suites that send them to an executor alone and to a
//! proxy in front of one (`tests/hostile_*.rs`). Each case sends bytes a well-behaved
//! client never would and asserts the exact gRPC status a user would check.
//!
//! Both fronts put the fault on the client: undecodable protobuf and broken framing are
//! INVALID_ARGUMENT, an oversized message RESOURCE_EXHAUSTED (the executor rewrites
//! tonic's INTERNAL and OUT_OF_RANGE, see `remesh_executor::decode_status`; the proxy
//! passes storage calls through untouched and reads the first message of an Execute
//! itself, see `remesh_proxy::edge::status_of`). Where they still differ, the reason is
//! that the proxy reads an Execute with its own rules.

use std::net::SocketAddr;

use anyhow::{Context, ensure};
use bytes::Bytes;
use prost::Message;
use remesh_proto::bytestream::WriteRequest;
use remesh_proto::reapi::{
    Action, BatchReadBlobsRequest, BatchUpdateBlobsRequest, Command, Digest, Directory,
    DirectoryNode, ExecuteRequest, FileNode, FindMissingBlobsRequest, SymlinkNode,
    batch_update_blobs_request,
};
use tonic::Code;

use crate::raw_h2::{self, RawReply, grpc_frame, grpc_frame_with};
use crate::reapi_client::{Clients, blob_digest};

pub const FIND_MISSING: &str =
    "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs";
pub const BATCH_UPDATE: &str =
    "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs";
pub const EXECUTE: &str = "/build.bazel.remote.execution.v2.Execution/Execute";
pub const WRITE: &str = "/google.bytestream.ByteStream/Write";
pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// The message limits both fronts run with in these suites (small, so an oversized
/// message costs little to send).
pub const MAX_BATCH_BYTES: usize = 256 << 10;
pub const MAX_MESSAGE_BYTES: usize = 512 << 10;

/// The flags that set those limits on the executor.
pub fn executor_limit_args() -> Vec<String> {
    vec![
        "--max-batch-bytes".into(),
        MAX_BATCH_BYTES.to_string(),
        "--max-message-bytes".into(),
        MAX_MESSAGE_BYTES.to_string(),
    ]
}

/// Fails with the reply in the message unless it carries `code`.
pub fn expect_code(reply: &RawReply, code: Code, what: &str) -> anyhow::Result<()> {
    ensure!(
        reply.code() == code,
        "{what}: expected {code:?}, got {reply:?}"
    );
    Ok(())
}

async fn raw(addr: SocketAddr, path: &str, chunks: Vec<Bytes>) -> anyhow::Result<RawReply> {
    raw_h2::call(addr, path, &[], chunks).await
}

/// A length-delimited field 1 whose length varint says ~2^35 bytes.
const MALFORMED: &[u8] = &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x'];

/// Protobuf that does not parse, in a correctly framed gRPC message.
pub async fn malformed_protobuf(addr: SocketAddr) -> anyhow::Result<()> {
    let reply = raw(addr, FIND_MISSING, vec![grpc_frame(MALFORMED)]).await?;
    expect_code(&reply, Code::InvalidArgument, "malformed FindMissingBlobs")?;
    ensure!(
        reply.grpc_message.contains("decode"),
        "malformed FindMissingBlobs: {reply:?}"
    );
    let reply = raw(addr, EXECUTE, vec![grpc_frame(MALFORMED)]).await?;
    expect_code(&reply, Code::InvalidArgument, "malformed Execute")?;
    // Well-formed protobuf carrying a digest that is not one.
    let request = FindMissingBlobsRequest {
        blob_digests: vec![Digest {
            hash: "../../etc/passwd".into(),
            size_bytes: -1,
        }],
        ..Default::default()
    };
    let reply = raw(
        addr,
        FIND_MISSING,
        vec![grpc_frame(&request.encode_to_vec())],
    )
    .await?;
    expect_code(
        &reply,
        Code::InvalidArgument,
        "FindMissingBlobs of a bad digest",
    )
}

/// A length prefix larger than the data that follows, then END_STREAM; a prefix cut
/// short; a whole message followed by a cut one; no message at all.
pub async fn truncated_frames(addr: SocketAddr) -> anyhow::Result<()> {
    let cut = grpc_frame_with(0, 100, &[0x0a, 0x02, b'a']);
    let reply = raw(addr, FIND_MISSING, vec![cut.clone()]).await?;
    expect_code(&reply, Code::InvalidArgument, "truncated FindMissingBlobs")?;
    let reply = raw(addr, EXECUTE, vec![cut.clone()]).await?;
    expect_code(&reply, Code::InvalidArgument, "truncated Execute")?;
    // Only part of the 5-byte prefix.
    let reply = raw(addr, EXECUTE, vec![Bytes::from_static(&[0, 0, 0])]).await?;
    expect_code(&reply, Code::InvalidArgument, "Execute with a cut prefix")?;
    let whole = grpc_frame(&FindMissingBlobsRequest::default().encode_to_vec());
    let reply = raw(addr, FIND_MISSING, vec![whole, cut]).await?;
    expect_code(
        &reply,
        Code::InvalidArgument,
        "FindMissingBlobs, then a truncated message",
    )?;
    let reply = raw(addr, FIND_MISSING, vec![Bytes::new()]).await?;
    expect_code(
        &reply,
        Code::InvalidArgument,
        "FindMissingBlobs without a message",
    )
}

/// Messages past the configured limits, announced and actually sent.
pub async fn oversized_messages(addr: SocketAddr) -> anyhow::Result<()> {
    let blob = vec![7u8; MAX_MESSAGE_BYTES + 1];
    let request = BatchUpdateBlobsRequest {
        requests: vec![batch_update_blobs_request::Request {
            digest: Some(blob_digest(&blob)),
            data: blob,
            compressor: 0,
        }],
        ..Default::default()
    };
    let message = request.encode_to_vec();
    let reply = raw(addr, BATCH_UPDATE, vec![grpc_frame(&message)]).await?;
    expect_code(
        &reply,
        Code::ResourceExhausted,
        "oversized BatchUpdateBlobs",
    )?;
    ensure!(
        reply.grpc_message.contains(&message.len().to_string())
            && reply.grpc_message.contains(&MAX_MESSAGE_BYTES.to_string()),
        "oversized BatchUpdateBlobs: size or limit not named: {reply:?}"
    );
    // An Execute whose prefix alone announces 4 GiB.
    let reply = raw(addr, EXECUTE, vec![grpc_frame_with(0, u32::MAX, b"\x0a")]).await?;
    let code = Code::ResourceExhausted;
    expect_code(&reply, code, "Execute announcing 4 GiB")?;
    let padding = ExecuteRequest {
        instance_name: "x".repeat(MAX_MESSAGE_BYTES + 1),
        ..Default::default()
    };
    let reply = raw(addr, EXECUTE, vec![grpc_frame(&padding.encode_to_vec())]).await?;
    expect_code(&reply, code, "oversized Execute")
}

/// The compressed flag without any `grpc-encoding` header (a client fault), the same
/// with `grpc-encoding: gzip` (an encoding neither front decodes), and a flag that is
/// neither 0 nor 1. The executor and the proxy answer each alike.
pub async fn compression_flags(addr: SocketAddr) -> anyhow::Result<()> {
    let body = FindMissingBlobsRequest::default().encode_to_vec();
    let flagged = grpc_frame_with(1, body.len() as u32, &body);
    let reply = raw(addr, FIND_MISSING, vec![flagged.clone()]).await?;
    expect_code(&reply, Code::InvalidArgument, "compressed FindMissingBlobs")?;
    let reply = raw(addr, EXECUTE, vec![flagged.clone()]).await?;
    expect_code(&reply, Code::InvalidArgument, "compressed Execute")?;
    // With the encoding declared, the message is well formed but in an encoding
    // neither front decodes: UNIMPLEMENTED, as gRPC servers answer it.
    let gzip = [("grpc-encoding", "gzip")];
    let reply = raw_h2::call(addr, EXECUTE, &gzip, vec![flagged]).await?;
    expect_code(&reply, Code::Unimplemented, "gzip Execute")?;
    let flag_two = grpc_frame_with(2, body.len() as u32, &body);
    let reply = raw(addr, FIND_MISSING, vec![flag_two.clone()]).await?;
    expect_code(
        &reply,
        Code::InvalidArgument,
        "FindMissingBlobs with flag 2",
    )?;
    let reply = raw(addr, EXECUTE, vec![flag_two]).await?;
    expect_code(&reply, Code::InvalidArgument, "Execute with flag 2")
}

/// A ByteStream Write whose first message is valid and whose next frame is broken: the
/// call ends with the precise status and the blob is not stored.
pub async fn broken_write_streams(addr: SocketAddr, clients: &Clients) -> anyhow::Result<()> {
    // `finish_write: true`, the message that would have committed the upload.
    let finish = [0x18, 0x01];
    let cases = [
        ("undecodable", grpc_frame(MALFORMED), Code::InvalidArgument),
        (
            "truncated",
            grpc_frame_with(0, 100, &finish),
            Code::InvalidArgument,
        ),
        (
            "compressed without encoding",
            grpc_frame_with(1, 2, &finish),
            Code::InvalidArgument,
        ),
        (
            "flag 2",
            grpc_frame_with(2, 2, &finish),
            Code::InvalidArgument,
        ),
        (
            "announcing 4 GiB",
            grpc_frame_with(0, u32::MAX, &finish),
            Code::ResourceExhausted,
        ),
    ];
    for (index, (what, bad, code)) in cases.into_iter().enumerate() {
        // A blob of its own per case: 2,000 bytes, of which the first message sends half.
        let mut blob = vec![index as u8; 2000];
        blob[1999] = 0xff;
        let digest = blob_digest(&blob);
        let opening = WriteRequest {
            resource_name: format!(
                "uploads/{}/blobs/{}/{}",
                uuid::Uuid::new_v4(),
                digest.hash,
                digest.size_bytes
            ),
            write_offset: 0,
            finish_write: false,
            data: blob[..1000].to_vec(),
        };
        let chunks = vec![grpc_frame(&opening.encode_to_vec()), bad];
        let reply = raw(addr, WRITE, chunks).await?;
        expect_code(&reply, code, &format!("ByteStream Write, then {what}"))?;
        let missing = clients.find_missing(std::slice::from_ref(&digest)).await?;
        ensure!(
            missing.len() == 1,
            "ByteStream Write, then {what}: the blob was stored"
        );
    }
    Ok(())
}

/// Blobs sent under a digest that is not theirs; none of them may be stored.
pub async fn wrong_digests(clients: &Clients) -> anyhow::Result<()> {
    let data = Bytes::from_static(b"the real content");
    let other = blob_digest(b"some other content");
    let short = Digest {
        size_bytes: data.len() as i64 - 1,
        ..blob_digest(&data)
    };
    let response = clients
        .batch_update(vec![
            (other.clone(), data.clone()),
            (short.clone(), data.clone()),
        ])
        .await
        .context("BatchUpdateBlobs itself must succeed")?;
    for entry in &response.responses {
        let code = entry.status.as_ref().map_or(0, |status| status.code);
        ensure!(
            code == Code::InvalidArgument as i32,
            "BatchUpdateBlobs entry {:?}: code {code}",
            entry.digest
        );
    }
    ensure!(response.responses.len() == 2, "{response:?}");
    for digest in [&other, &short] {
        let error = clients
            .upload_as(digest, data.clone())
            .await
            .err()
            .context("ByteStream Write under a wrong digest succeeded")?;
        let status = error
            .downcast_ref::<tonic::Status>()
            .with_context(|| format!("not a gRPC status: {error:#}"))?;
        ensure!(
            status.code() == Code::InvalidArgument,
            "ByteStream Write under {digest:?}: {status:?}"
        );
    }
    let missing = clients
        .find_missing(&[other.clone(), short.clone()])
        .await?;
    ensure!(missing.len() == 2, "a wrong digest was stored: {missing:?}");
    Ok(())
}

/// Batches past the limits in total size and in count.
pub async fn enormous_batches(clients: &Clients) -> anyhow::Result<()> {
    let mut cas = clients.cas.clone();
    // Total size: 270 blobs of 1,000 bytes, past the 256 KiB batch limit.
    let requests = (0..270u32)
        .map(|i| {
            let mut data = vec![0u8; 1000];
            data[..4].copy_from_slice(&i.to_be_bytes());
            batch_update_blobs_request::Request {
                digest: Some(blob_digest(&data)),
                data,
                compressor: 0,
            }
        })
        .collect();
    let status = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: clients.instance_name.clone(),
            requests,
            digest_function: 0,
        })
        .await
        .err()
        .context("an over-limit BatchUpdateBlobs succeeded")?;
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    // Count: 6,000 one-byte reads, whose response would pass the message limit.
    let digests: Vec<Digest> = (0..6000u32)
        .map(|i| Digest {
            hash: format!("{:064x}", i),
            size_bytes: 1,
        })
        .collect();
    let status = cas
        .batch_read_blobs(BatchReadBlobsRequest {
            instance_name: clients.instance_name.clone(),
            digests: digests.clone(),
            ..Default::default()
        })
        .await
        .err()
        .context("a BatchReadBlobs of 6,000 blobs succeeded")?;
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    ensure!(!status.message().contains("  "), "{status:?}");
    // Count past the message limit itself: refused before decoding.
    let many: Vec<Digest> = (0..12_000u32)
        .map(|i| Digest {
            hash: format!("{:064x}", i),
            size_bytes: 1,
        })
        .collect();
    let status = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            instance_name: clients.instance_name.clone(),
            blob_digests: many,
            digest_function: 0,
        })
        .await
        .err()
        .context("a FindMissingBlobs past the message limit succeeded")?;
    ensure!(status.code() == Code::ResourceExhausted, "{status:?}");
    // Within the limits, the same count is answered.
    let missing = clients.find_missing(&digests).await?;
    ensure!(missing.len() == digests.len(), "{} missing", missing.len());
    Ok(())
}

/// Runs an action with `input_root` and `command`; returns the code of the Execute
/// call's error, or of the final ExecuteResponse's status.
pub async fn execute_code(
    clients: &Clients,
    input_root: Vec<Bytes>,
    command: &Command,
) -> anyhow::Result<(Code, Option<remesh_proto::reapi::ActionResult>)> {
    let command_bytes = Bytes::from(command.encode_to_vec());
    let root_digest = blob_digest(input_root.first().context("no root")?);
    let mut blobs = input_root;
    blobs.push(command_bytes.clone());
    clients.upload_messages(blobs).await?;
    let action = Action {
        command_digest: Some(blob_digest(&command_bytes)),
        input_root_digest: Some(root_digest),
        do_not_cache: true,
        ..Default::default()
    };
    let action_bytes = Bytes::from(action.encode_to_vec());
    let digests = clients.upload_messages(vec![action_bytes]).await?;
    match clients.execute(&digests[0], true).await {
        Ok(response) => {
            let code = response.status.as_ref().map_or(0, |status| status.code);
            Ok((Code::from_i32(code), response.result))
        }
        Err(error) => match error.downcast_ref::<tonic::Status>() {
            Some(status) => Ok((status.code(), None)),
            None => Err(error),
        },
    }
}

fn command(argv: &[&str], output_paths: &[&str]) -> Command {
    Command {
        arguments: argv.iter().map(|arg| arg.to_string()).collect(),
        output_paths: output_paths.iter().map(|path| path.to_string()).collect(),
        ..Default::default()
    }
}

/// Input trees and output paths that point outside the work directory.
pub async fn path_traversal(clients: &Clients) -> anyhow::Result<()> {
    let content = Bytes::from_static(b"payload");
    let content_digest = blob_digest(&content);
    clients.upload_messages(vec![content]).await?;
    let plain = command(&["true"], &[]);
    let file = |name: &str| FileNode {
        name: name.into(),
        digest: Some(content_digest.clone()),
        ..Default::default()
    };
    for name in ["..", ".", "/abs", "a/../../x", "", "a/b"] {
        let root = Directory {
            files: vec![file(name)],
            ..Default::default()
        };
        let (code, _) =
            execute_code(clients, vec![Bytes::from(root.encode_to_vec())], &plain).await?;
        ensure!(
            code == Code::InvalidArgument,
            "input file {name:?}: {code:?}"
        );
    }
    let empty = Bytes::from(Directory::default().encode_to_vec());
    let child = DirectoryNode {
        name: "..".into(),
        digest: Some(blob_digest(&empty)),
    };
    let root = Directory {
        directories: vec![child],
        ..Default::default()
    };
    let blobs = vec![Bytes::from(root.encode_to_vec()), empty.clone()];
    let (code, _) = execute_code(clients, blobs, &plain).await?;
    ensure!(
        code == Code::InvalidArgument,
        "input directory \"..\": {code:?}"
    );
    for target in ["/etc/passwd", "../../../sentinel", "a/../../x"] {
        let root = Directory {
            symlinks: vec![SymlinkNode {
                name: "link".into(),
                target: target.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let blobs = vec![Bytes::from(root.encode_to_vec())];
        let (code, _) = execute_code(clients, blobs, &plain).await?;
        ensure!(
            code == Code::InvalidArgument,
            "input symlink to {target:?}: {code:?}"
        );
    }
    for output in ["../escape", "/abs/out", "a/../../x", "..", ""] {
        let (code, _) =
            execute_code(clients, vec![empty.clone()], &command(&["true"], &[output])).await?;
        ensure!(
            code == Code::InvalidArgument,
            "output path {output:?}: {code:?}"
        );
    }
    Ok(())
}

/// An action that turns its outputs into symlinks pointing out of its work directory:
/// the executor may report them as symlinks, never upload what they point at.
pub async fn symlink_escapes(clients: &Clients, sentinel: &std::path::Path) -> anyhow::Result<()> {
    let empty = Bytes::from(Directory::default().encode_to_vec());
    let sentinel = sentinel.to_str().context("non-UTF-8 temp path")?;
    let sentinel_dir = std::path::Path::new(sentinel)
        .parent()
        .and_then(|dir| dir.to_str())
        .context("sentinel has no parent")?;
    let script = format!("ln -s {sentinel} out && mkdir d && ln -s {sentinel_dir} d/up");
    let (code, result) = execute_code(
        clients,
        vec![empty],
        &command(&["/bin/sh", "-c", &script], &["out", "d"]),
    )
    .await?;
    ensure!(code == Code::Ok, "symlink outputs: {code:?}");
    let result = result.context("no ActionResult")?;
    ensure!(result.exit_code == 0, "exit code {}", result.exit_code);
    let leaked = blob_digest(crate::integrity::SENTINEL_CONTENT);
    ensure!(
        result
            .output_files
            .iter()
            .all(|f| f.digest.as_ref() != Some(&leaked)),
        "the sentinel's content was uploaded as an output file: {result:?}"
    );
    let missing = clients.find_missing(&[leaked]).await?;
    ensure!(missing.len() == 1, "the sentinel's content is in the CAS");
    Ok(())
}

/// The executor's gRPC health answers SERVING (status OK).
pub async fn health_ok(executor: SocketAddr) -> anyhow::Result<()> {
    let reply = raw(executor, HEALTH_CHECK, vec![grpc_frame(&[])]).await?;
    expect_code(&reply, Code::Ok, "health check")
}
