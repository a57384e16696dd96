//! Engine tests of what a run produces: outputs, stdout/stderr, cache entries, and
//! precise statuses for missing or hostile inputs. Real CAS, real `/bin/sh`.

use std::collections::HashMap;

use prost::Message;
use remesh_proto::reapi::{Action, Directory, DirectoryNode, Tree};
use remesh_proto::rpc;

use super::*;
use crate::execution::test_harness::*;

#[tokio::test]
async fn runs_a_command_and_collects_every_kind_of_output() {
    let h = Harness::new(2, 10).await;
    let input = h.put("from the input tree\n").await;
    let tool = h.put("#!/bin/sh\necho tool ran\n").await;
    let bin = h
        .put_message(&Directory {
            files: vec![file_node("tool", tool, true)],
            ..Default::default()
        })
        .await;
    let root = h
        .put_message(&Directory {
            files: vec![file_node("input.txt", input.clone(), false)],
            directories: vec![DirectoryNode {
                name: "bin".into(),
                digest: Some(bin),
            }],
            ..Default::default()
        })
        .await;
    let script = "echo hello; echo warn >&2; bin/tool > out/tool.txt; \
        cat input.txt > out/copy; printf x > out/exe; chmod +x out/exe; \
        mkdir -p out/dir/sub; printf y > out/dir/sub/f; ln -s f out/dir/sub/l; \
        ln -s exe out/link";
    let spec = h
        .action(
            script,
            root,
            &[
                "out/copy",
                "out/exe",
                "out/link",
                "out/tool.txt",
                "out/missing",
            ],
            &["out/dir"],
        )
        .await;
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
    assert!(!response.cached_result);
    let result = result(&response);
    assert_eq!(result.exit_code, 0);
    assert_eq!(
        h.read(result.stdout_digest.as_ref().unwrap()).await,
        "hello\n"
    );
    assert_eq!(
        h.read(result.stderr_digest.as_ref().unwrap()).await,
        "warn\n"
    );

    let files: HashMap<&str, _> = result
        .output_files
        .iter()
        .map(|file| (file.path.as_str(), file))
        .collect();
    assert_eq!(files.len(), 3, "{:?}", result.output_files);
    assert_eq!(files["out/copy"].digest.as_ref(), Some(&input));
    assert!(!files["out/copy"].is_executable);
    assert!(files["out/exe"].is_executable);
    assert_eq!(h.read(files["out/exe"].digest.as_ref().unwrap()).await, "x");
    assert_eq!(
        h.read(files["out/tool.txt"].digest.as_ref().unwrap()).await,
        "tool ran\n"
    );

    #[allow(deprecated)]
    let file_symlinks = &result.output_file_symlinks;
    assert_eq!(file_symlinks.len(), 1);
    assert_eq!(
        (
            file_symlinks[0].path.as_str(),
            file_symlinks[0].target.as_str()
        ),
        ("out/link", "exe")
    );
    assert_eq!(&result.output_symlinks, file_symlinks);

    assert_eq!(result.output_directories.len(), 1);
    let output_dir = &result.output_directories[0];
    assert_eq!(output_dir.path, "out/dir");
    let tree = Tree::decode(h.read(output_dir.tree_digest.as_ref().unwrap()).await).unwrap();
    let tree_root = tree.root.unwrap();
    assert_eq!(
        Some(BlobDigest::of_message(&tree_root).to_proto()),
        output_dir.root_directory_digest
    );
    assert_eq!(tree_root.directories.len(), 1);
    assert_eq!(tree_root.directories[0].name, "sub");
    let sub = tree
        .children
        .iter()
        .find(|child| {
            Some(BlobDigest::of_message(*child).to_proto()) == tree_root.directories[0].digest
        })
        .expect("the subdirectory is among the Tree's children");
    assert_eq!(sub.files.len(), 1);
    assert_eq!(sub.files[0].name, "f");
    assert_eq!(h.read(sub.files[0].digest.as_ref().unwrap()).await, "y");
    assert_eq!(
        (
            sub.symlinks[0].name.as_str(),
            sub.symlinks[0].target.as_str()
        ),
        ("l", "f")
    );

    let metadata = result.execution_metadata.as_ref().unwrap();
    assert!(!metadata.worker.is_empty());
    assert!(
        metadata.execution_start_timestamp.is_some()
            && metadata.worker_completed_timestamp.is_some()
    );
    assert!(
        h.work_dirs().is_empty(),
        "work directory left behind: {:?}",
        h.work_dirs()
    );
}

#[tokio::test]
async fn success_is_cached_and_served_from_the_cache() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let spec = h
        .action("date +%s%N; printf a > out", root, &["out"], &[])
        .await;
    let action = h.upload(&spec).await;
    let first = done(&h.execute(&action).await).await;
    assert_eq!(code(&first), tonic::Code::Ok);
    let cached = h
        .action_cache
        .get(&action)
        .await
        .unwrap()
        .expect("success is cached");
    assert_eq!(&cached, result(&first));

    let second = done(&h.execute(&action).await).await;
    assert!(second.cached_result);
    assert_eq!(
        result(&second),
        result(&first),
        "the cached run, not a new one"
    );

    // skip_cache_lookup runs again.
    let operation = h.engine.execute(&request(&action, true)).await.unwrap();
    let third = done(&operation).await;
    assert!(!third.cached_result);
    assert_ne!(result(&third).stdout_digest, result(&first).stdout_digest);
}

#[tokio::test]
async fn nonzero_exit_and_do_not_cache_are_not_cached() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let spec = h
        .action("echo out; echo bad >&2; exit 3", root.clone(), &[], &[])
        .await;
    let action = h.upload(&spec).await;
    let response = done(&h.execute(&action).await).await;
    assert_eq!(
        code(&response),
        tonic::Code::Ok,
        "a failing command is not a failed execution"
    );
    assert_eq!(result(&response).exit_code, 3);
    assert_eq!(
        h.read(result(&response).stderr_digest.as_ref().unwrap())
            .await,
        "bad\n"
    );
    assert_eq!(h.action_cache.get(&action).await.unwrap(), None);
    assert!(!done(&h.execute(&action).await).await.cached_result);

    let mut uncacheable = h.action("true", root, &[], &[]).await;
    uncacheable.do_not_cache = true;
    let action = h.upload(&uncacheable).await;
    assert_eq!(result(&done(&h.execute(&action).await).await).exit_code, 0);
    assert_eq!(h.action_cache.get(&action).await.unwrap(), None);
}

#[tokio::test]
async fn missing_inputs_are_failed_precondition_listing_every_blob() {
    let h = Harness::new(1, 10).await;
    let absent_file = BlobDigest::of_bytes(b"never uploaded");
    let absent_dir = BlobDigest::of_bytes(b"no such directory");
    let root = h
        .put_message(&Directory {
            files: vec![file_node("a", absent_file.to_proto(), false)],
            directories: vec![DirectoryNode {
                name: "d".into(),
                digest: Some(absent_dir.to_proto()),
            }],
            ..Default::default()
        })
        .await;
    let spec = h.action("cat a", root, &[], &[]).await;
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::FailedPrecondition);
    let mut expected = vec![absent_file.subject(), absent_dir.subject()];
    expected.sort();
    assert_eq!(
        missing_subjects(response.status.as_ref().unwrap()),
        expected
    );
    assert!(h.work_dirs().is_empty());
}

#[tokio::test]
async fn missing_action_or_command_fails_execute_with_details() {
    let h = Harness::new(1, 10).await;
    let absent_action = BlobDigest::of_bytes(b"no action");
    let status = h
        .engine
        .execute(&request(&absent_action, false))
        .await
        .unwrap_err();
    let status = tonic::Status::from(status);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let details = rpc::Status::decode(status.details()).unwrap();
    assert_eq!(missing_subjects(&details), vec![absent_action.subject()]);

    let absent_command = BlobDigest::of_bytes(b"no command");
    let action = Action {
        command_digest: Some(absent_command.to_proto()),
        input_root_digest: Some(BlobDigest::empty().to_proto()),
        ..Default::default()
    };
    let action = BlobDigest::from_proto(&h.put_message(&action).await).unwrap();
    let status = tonic::Status::from(
        h.engine
            .execute(&request(&action, false))
            .await
            .unwrap_err(),
    );
    let details = rpc::Status::decode(status.details()).unwrap();
    assert_eq!(missing_subjects(&details), vec![absent_command.subject()]);

    let bad = ExecuteRequest::default();
    let error = h.engine.execute(&bad).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn hostile_trees_and_paths_are_invalid_argument() {
    let h = Harness::new(1, 10).await;
    let dot_dot = h
        .put_message(&Directory {
            files: vec![file_node("..", BlobDigest::empty().to_proto(), false)],
            ..Default::default()
        })
        .await;
    let response = h.run(&h.action("true", dot_dot, &[], &[]).await).await;
    assert_eq!(
        code(&response),
        tonic::Code::InvalidArgument,
        "{response:?}"
    );

    let root = h.put_message(&Directory::default()).await;
    let escaping = h
        .upload(&h.action("true", root, &["../../etc/passwd"], &[]).await)
        .await;
    let error = h
        .engine
        .execute(&request(&escaping, false))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn an_output_parent_turned_symlink_is_not_followed() {
    let h = Harness::new(1, 10).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x"), "precious").unwrap();
    let root = h.put_message(&Directory::default()).await;
    let script = format!("rmdir out && ln -s {} out", outside.path().display());
    let response = h.run(&h.action(&script, root, &["out/x"], &[]).await).await;
    assert_eq!(
        code(&response),
        tonic::Code::FailedPrecondition,
        "{response:?}"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("x")).unwrap(),
        "precious"
    );
}

#[tokio::test]
async fn output_paths_are_relative_to_the_working_directory() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let mut spec = h
        .action(
            "pwd > f; mkdir d; printf z > d/g; ln -s f l",
            root,
            &[],
            &[],
        )
        .await;
    spec.command.working_directory = "pkg/sub".into();
    spec.command.output_paths = vec!["f".into(), "d".into(), "l".into()];
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
    let result = result(&response);
    assert_eq!(result.output_files.len(), 1);
    assert_eq!(result.output_files[0].path, "f");
    let pwd = h
        .read(result.output_files[0].digest.as_ref().unwrap())
        .await;
    assert!(
        String::from_utf8_lossy(&pwd)
            .trim_end()
            .ends_with("/root/pkg/sub"),
        "ran in {pwd:?}"
    );
    assert_eq!(result.output_directories[0].path, "d");
    assert_eq!(result.output_symlinks[0].path, "l");
    #[allow(deprecated)]
    let legacy = (
        &result.output_file_symlinks,
        &result.output_directory_symlinks,
    );
    assert!(
        legacy.0.is_empty() && legacy.1.is_empty(),
        "v2.1 requests get output_symlinks only"
    );
}

#[tokio::test]
async fn inputs_are_materialised_with_symlinks_empty_dirs_and_modes() {
    let h = Harness::new(1, 10).await;
    let data = h.put("payload\n").await;
    let empty = h.put_message(&Directory::default()).await;
    let root = h
        .put_message(&Directory {
            files: vec![
                file_node("data.txt", data.clone(), false),
                file_node("empty.txt", BlobDigest::empty().to_proto(), true),
            ],
            directories: vec![DirectoryNode {
                name: "nothing".into(),
                digest: Some(empty),
            }],
            symlinks: vec![remesh_proto::reapi::SymlinkNode {
                name: "link".into(),
                target: "data.txt".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await;
    let script = "test -d nothing && test -L link && test -x empty.txt && test ! -x data.txt \
        && test ! -s empty.txt && cat link";
    let response = h.run(&h.action(script, root, &[], &[]).await).await;
    assert_eq!(result(&response).exit_code, 0, "{response:?}");
    assert_eq!(
        h.read(result(&response).stdout_digest.as_ref().unwrap())
            .await,
        "payload\n"
    );
}

#[tokio::test]
async fn an_output_of_the_wrong_kind_is_failed_precondition() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let response = h
        .run(
            &h.action(
                "echo why >&2; mkdir -p out/f; printf x > out/d",
                root,
                &["out/f"],
                &["out/d"],
            )
            .await,
        )
        .await;
    assert_eq!(
        code(&response),
        tonic::Code::FailedPrecondition,
        "{response:?}"
    );
    assert!(response.message.contains("out/f"), "{}", response.message);
    // The run's stderr is kept: it usually explains the bad output.
    let stderr = result(&response).stderr_digest.clone().unwrap();
    assert_eq!(h.read(&stderr).await, "why\n");
}
