//! A harness for engine tests: a real disk CAS and action cache in a temporary
//! directory, an engine on it, and helpers to upload actions and await results.

use bytes::Bytes;
use prost::Message;
use remesh_proto::error_details::PreconditionFailure;
use remesh_proto::reapi::command::EnvironmentVariable;
use remesh_proto::reapi::{Action, ActionResult, Command, Digest, FileNode};
use remesh_proto::{protobuf, rpc};

use std::sync::Arc;
use std::time::Duration;

use remesh_proto::reapi::{ExecuteRequest, ExecuteResponse};

use crate::config::Config;
use crate::digest::BlobDigest;
use crate::execution::Engine;
use crate::execution::OperationState;
use crate::execution::error::PRECONDITION_FAILURE_TYPE_URL;
use crate::execution::operations::{Operation, Stage};
use crate::execution::runner::WORK_DIR_PREFIX;
use crate::metrics::Metrics;
use crate::storage::{ActionCache, Cas};

pub(crate) const DONE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) cas: Cas,
    pub(crate) action_cache: ActionCache,
    pub(crate) metrics: Metrics,
    pub(crate) engine: Engine,
}

impl Harness {
    pub(crate) async fn new(runners: usize, queue_max: usize) -> Self {
        Self::with_config(runners, queue_max, |_| {}).await
    }

    /// Like `new`, with `adjust` changing the configuration before the engine starts.
    pub(crate) async fn with_config(
        runners: usize,
        queue_max: usize,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            runners,
            queue_max,
            ..Config::default()
        };
        adjust(&mut config);
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

    pub(crate) async fn put(&self, data: impl Into<Bytes>) -> Digest {
        let data = data.into();
        let digest = BlobDigest::of_bytes(&data);
        self.cas.write_bytes(&digest, data).await.unwrap();
        digest.to_proto()
    }

    pub(crate) async fn put_message(&self, message: &impl Message) -> Digest {
        self.put(message.encode_to_vec()).await
    }

    /// Uploads the Command and Action for `script` over `input_root`.
    pub(crate) async fn action(
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

    pub(crate) async fn upload(&self, spec: &ActionSpec) -> BlobDigest {
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

    pub(crate) async fn execute(&self, action: &BlobDigest) -> Arc<Operation> {
        self.engine
            .execute(&request(action, false))
            .await
            .expect("Execute accepted")
    }

    pub(crate) async fn run(&self, spec: &ActionSpec) -> ExecuteResponse {
        let digest = self.upload(spec).await;
        done(&self.execute(&digest).await).await
    }

    pub(crate) async fn read(&self, digest: &Digest) -> Bytes {
        let digest = BlobDigest::from_proto(digest).unwrap();
        self.cas
            .read_bytes(&digest)
            .await
            .unwrap()
            .expect("blob stored in the CAS")
    }

    pub(crate) fn work_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.cas.scratch_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(WORK_DIR_PREFIX))
            .collect()
    }
}

pub(crate) struct ActionSpec {
    pub(crate) command: Command,
    pub(crate) input_root: Digest,
    pub(crate) salt: Vec<u8>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) do_not_cache: bool,
}

#[allow(deprecated)] // Bazel 4 sends output_files / output_directories
pub(crate) fn shell_command(script: &str, outputs: &[&str], dirs: &[&str]) -> Command {
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

pub(crate) fn request(action: &BlobDigest, skip_cache_lookup: bool) -> ExecuteRequest {
    ExecuteRequest {
        instance_name: "main".into(),
        action_digest: Some(action.to_proto()),
        skip_cache_lookup,
        ..Default::default()
    }
}

pub(crate) async fn done(operation: &Arc<Operation>) -> ExecuteResponse {
    let mut states = operation.subscribe();
    let state = tokio::time::timeout(DONE_TIMEOUT, states.wait_for(OperationState::is_done))
        .await
        .expect("operation should finish")
        .unwrap()
        .clone();
    (*state.response.unwrap()).clone()
}

pub(crate) async fn wait_stage(operation: &Arc<Operation>, stage: Stage) {
    let mut states = operation.subscribe();
    tokio::time::timeout(DONE_TIMEOUT, states.wait_for(|state| state.stage >= stage))
        .await
        .expect("stage reached")
        .unwrap();
}

pub(crate) fn code(response: &ExecuteResponse) -> tonic::Code {
    tonic::Code::from(response.status.as_ref().map_or(0, |status| status.code))
}

pub(crate) fn result(response: &ExecuteResponse) -> &ActionResult {
    response.result.as_ref().expect("response has a result")
}

pub(crate) fn missing_subjects(status: &rpc::Status) -> Vec<String> {
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

pub(crate) fn file_node(name: &str, digest: Digest, is_executable: bool) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(digest),
        is_executable,
        ..Default::default()
    }
}
