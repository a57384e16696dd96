//! Engine tests against a real disk CAS and action cache in a temporary directory,
//! running real `/bin/sh` commands.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;
use remesh_proto::error_details::PreconditionFailure;
use remesh_proto::reapi::command::EnvironmentVariable;
use remesh_proto::reapi::{
    Action, ActionResult, Command, Digest, Directory, DirectoryNode, FileNode, Tree,
};
use remesh_proto::{protobuf, rpc};

use super::*;
use crate::execution::OperationState;
use crate::execution::error::PRECONDITION_FAILURE_TYPE_URL;

const DONE_TIMEOUT: Duration = Duration::from_secs(60);

struct Harness {
    _dir: tempfile::TempDir,
    cas: Cas,
    action_cache: ActionCache,
    metrics: Metrics,
    engine: Engine,
}

impl Harness {
    async fn new(runners: usize, queue_max: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            runners,
            queue_max,
            ..Config::default()
        };
        let metrics = Metrics::new();
        let cas = Cas::open(&config, metrics.clone()).await.unwrap();
        let action_cache = ActionCache::open(&config, cas.clone()).await.unwrap();
        let engine = Engine::start(&config, cas.clone(), action_cache.clone(), metrics.clone());
        Self {
            _dir: dir,
            cas,
            action_cache,
            metrics,
            engine,
        }
    }

    async fn put(&self, data: impl Into<Bytes>) -> Digest {
        let data = data.into();
        let digest = BlobDigest::of_bytes(&data);
        self.cas.write_bytes(&digest, data).await.unwrap();
        digest.to_proto()
    }

    async fn put_message(&self, message: &impl Message) -> Digest {
        self.put(message.encode_to_vec()).await
    }

    /// Uploads the Command and Action for `script` over `input_root`.
    async fn action(
        &self,
        script: &str,
        input_root: Digest,
        outputs: &[&str],
        dirs: &[&str],
    ) -> ActionSpec {
        ActionSpec {
            command: shell_command(script, outputs, dirs),
            input_root,
            salt: Vec::new(),
            timeout: None,
            do_not_cache: false,
        }
    }

    async fn upload(&self, spec: &ActionSpec) -> BlobDigest {
        let command_digest = self.put_message(&spec.command).await;
        let action = Action {
            command_digest: Some(command_digest),
            input_root_digest: Some(spec.input_root.clone()),
            timeout: spec.timeout.map(|timeout| protobuf::Duration {
                seconds: timeout.as_secs() as i64,
                nanos: 0,
            }),
            do_not_cache: spec.do_not_cache,
            salt: spec.salt.clone(),
            ..Default::default()
        };
        BlobDigest::from_proto(&self.put_message(&action).await).unwrap()
    }

    async fn execute(&self, action: &BlobDigest) -> Arc<Operation> {
        self.engine
            .execute(&request(action, false))
            .await
            .expect("Execute accepted")
    }

    async fn run(&self, spec: &ActionSpec) -> ExecuteResponse {
        let digest = self.upload(spec).await;
        done(&self.execute(&digest).await).await
    }

    async fn read(&self, digest: &Digest) -> Bytes {
        let digest = BlobDigest::from_proto(digest).unwrap();
        self.cas
            .read_bytes(&digest)
            .await
            .unwrap()
            .expect("blob stored in the CAS")
    }

    fn work_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.cas.scratch_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(WORK_DIR_PREFIX))
            .collect()
    }
}

struct ActionSpec {
    command: Command,
    input_root: Digest,
    salt: Vec<u8>,
    timeout: Option<Duration>,
    do_not_cache: bool,
}

#[allow(deprecated)] // Bazel 4 sends output_files / output_directories
fn shell_command(script: &str, outputs: &[&str], dirs: &[&str]) -> Command {
    Command {
        arguments: vec!["/bin/sh".into(), "-c".into(), script.into()],
        environment_variables: vec![EnvironmentVariable {
            name: "PATH".into(),
            value: "/usr/bin:/bin".into(),
        }],
        output_files: outputs.iter().map(|o| o.to_string()).collect(),
        output_directories: dirs.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

fn request(action: &BlobDigest, skip_cache_lookup: bool) -> ExecuteRequest {
    ExecuteRequest {
        instance_name: "main".into(),
        action_digest: Some(action.to_proto()),
        skip_cache_lookup,
        ..Default::default()
    }
}

async fn done(operation: &Arc<Operation>) -> ExecuteResponse {
    let mut states = operation.subscribe();
    let state = tokio::time::timeout(DONE_TIMEOUT, states.wait_for(OperationState::is_done))
        .await
        .expect("operation should finish")
        .unwrap()
        .clone();
    (*state.response.unwrap()).clone()
}

async fn wait_stage(operation: &Arc<Operation>, stage: Stage) {
    let mut states = operation.subscribe();
    tokio::time::timeout(DONE_TIMEOUT, states.wait_for(|state| state.stage >= stage))
        .await
        .expect("stage reached")
        .unwrap();
}

fn code(response: &ExecuteResponse) -> tonic::Code {
    tonic::Code::from(response.status.as_ref().map_or(0, |status| status.code))
}

fn result(response: &ExecuteResponse) -> &ActionResult {
    response.result.as_ref().expect("response has a result")
}

fn missing_subjects(status: &rpc::Status) -> Vec<String> {
    let detail = status
        .details
        .iter()
        .find(|any| any.type_url == PRECONDITION_FAILURE_TYPE_URL)
        .expect("a PreconditionFailure detail");
    let failure = PreconditionFailure::decode(detail.value.as_slice()).unwrap();
    let mut subjects: Vec<String> = failure
        .violations
        .iter()
        .inspect(|violation| assert_eq!(violation.r#type, "MISSING"))
        .map(|violation| violation.subject.clone())
        .collect();
    subjects.sort();
    subjects
}

fn file_node(name: &str, digest: Digest, is_executable: bool) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(digest),
        is_executable,
        ..Default::default()
    }
}

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
async fn timeout_is_deadline_exceeded_with_partial_output() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let mut spec = h.action("echo partial; sleep 60", root, &[], &[]).await;
    spec.timeout = Some(Duration::from_secs(1));
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::DeadlineExceeded);
    assert_eq!(
        h.read(result(&response).stdout_digest.as_ref().unwrap())
            .await,
        "partial\n"
    );
    assert!(h.work_dirs().is_empty());
}

#[tokio::test]
async fn identical_actions_merge_into_one_run() {
    let h = Harness::new(2, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let action = h
        .upload(&h.action("sleep 1; date +%s%N", root, &[], &[]).await)
        .await;
    let first = h.execute(&action).await;
    let second = h.execute(&action).await;
    assert_eq!(first.name(), second.name());
    assert_eq!(done(&first).await, done(&second).await);
    assert!(h.metrics.render().contains("outcome=\"merged\"} 1"));
}

#[tokio::test]
async fn a_full_queue_is_resource_exhausted_and_cancel_empties_it() {
    let h = Harness::new(1, 1).await;
    let root = h.put_message(&Directory::default()).await;
    let mut digests = Vec::new();
    for salt in 0..3u8 {
        let mut spec = h.action("sleep 60", root.clone(), &[], &[]).await;
        spec.salt = vec![salt];
        digests.push(h.upload(&spec).await);
    }
    let running = h.execute(&digests[0]).await;
    wait_stage(&running, Stage::Executing).await;
    let queued = h.execute(&digests[1]).await;
    wait_stage(&queued, Stage::Queued).await;
    assert_eq!(h.engine.load().queued, 1);
    let error = h
        .engine
        .execute(&request(&digests[2], false))
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);

    h.engine.cancel(queued.name()).unwrap();
    assert_eq!(code(&done(&queued).await), tonic::Code::Cancelled);
    assert_eq!(h.engine.load().queued, 0);

    let started = std::time::Instant::now();
    h.engine.cancel(running.name()).unwrap();
    assert_eq!(code(&done(&running).await), tonic::Code::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancel killed the process"
    );
    assert!(h.work_dirs().is_empty());
}

#[tokio::test]
async fn drain_refuses_new_work_and_kills_after_the_grace() {
    let h = Harness::new(1, 10).await;
    let root = h.put_message(&Directory::default()).await;
    let running = h
        .execute(
            &h.upload(&h.action("sleep 60", root.clone(), &[], &[]).await)
                .await,
        )
        .await;
    wait_stage(&running, Stage::Executing).await;
    let late = h.upload(&h.action("true", root, &[], &[]).await).await;

    h.engine.drain(Duration::from_millis(200)).await;
    assert_eq!(code(&done(&running).await), tonic::Code::Unavailable);
    let error = h.engine.execute(&request(&late, false)).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable);
    assert!(h.work_dirs().is_empty());
}
