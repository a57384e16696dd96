//! `max_output_bytes` through the whole engine, and a sandboxed engine run: what a
//! client gets back, and what is (not) cached.

use remesh_proto::reapi::Directory;

use crate::config::SandboxMode;
use crate::execution::test_harness::{Harness, code, result};

const BOUND: u64 = 64 << 10;

async fn bounded() -> Harness {
    Harness::with_config(1, 10, |config| config.max_output_bytes = BOUND).await
}

#[tokio::test]
async fn an_output_file_past_the_bound_is_resource_exhausted_and_not_cached() {
    let h = bounded().await;
    let root = h.put_message(&Directory::default()).await;
    let spec = h
        .action(
            &format!("head -c {} /dev/zero > big; echo done", BOUND + 1),
            root,
            &["big"],
            &[],
        )
        .await;
    let digest = h.upload(&spec).await;
    let response = h.run(&spec).await;
    assert_eq!(
        code(&response),
        tonic::Code::ResourceExhausted,
        "{response:?}"
    );
    let status = response.status.as_ref().unwrap();
    assert!(status.message.contains("max_output_bytes"), "{status:?}");
    // The exit code and stdout still explain what the action did.
    let result = result(&response);
    assert_eq!(result.exit_code, 0);
    assert_eq!(
        &h.read(result.stdout_digest.as_ref().unwrap()).await[..],
        b"done\n"
    );
    assert!(result.output_files.is_empty());
    assert_eq!(h.action_cache.get(&digest).await.unwrap(), None);
    assert!(h.work_dirs().is_empty(), "the work directory is removed");
}

#[tokio::test]
async fn stdout_and_stderr_count_towards_the_bound_with_the_outputs() {
    let h = bounded().await;
    let root = h.put_message(&Directory::default()).await;
    // Half the bound printed, half plus one in a file: each alone would fit.
    let half = BOUND / 2;
    let script = format!(
        "head -c {half} /dev/zero; head -c {} /dev/zero > out",
        half + 1
    );
    let spec = h.action(&script, root, &["out"], &[]).await;
    let response = h.run(&spec).await;
    assert_eq!(
        code(&response),
        tonic::Code::ResourceExhausted,
        "{response:?}"
    );
}

#[tokio::test]
async fn printing_past_the_bound_kills_the_action_and_keeps_the_output_bounded() {
    let h = bounded().await;
    let root = h.put_message(&Directory::default()).await;
    let spec = h.action("yes; echo never", root, &[], &[]).await;
    let digest = h.upload(&spec).await;
    let response = h.run(&spec).await;
    assert_eq!(
        code(&response),
        tonic::Code::ResourceExhausted,
        "{response:?}"
    );
    let result = result(&response);
    assert_eq!(result.exit_code, 137, "killed");
    let stdout = result.stdout_digest.as_ref().unwrap();
    assert_eq!(
        stdout.size_bytes as u64, BOUND,
        "stdout is cut at the bound"
    );
    assert_eq!(h.action_cache.get(&digest).await.unwrap(), None);
}

#[tokio::test]
async fn outputs_up_to_the_bound_are_fine_and_cached() {
    let h = bounded().await;
    let root = h.put_message(&Directory::default()).await;
    let spec = h
        .action(
            &format!("head -c {BOUND} /dev/zero > out"),
            root,
            &["out"],
            &[],
        )
        .await;
    let digest = h.upload(&spec).await;
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
    assert_eq!(result(&response).output_files.len(), 1);
    assert!(h.action_cache.get(&digest).await.unwrap().is_some());
}

#[tokio::test]
async fn a_sandboxed_engine_runs_actions_and_collects_their_outputs() {
    assert!(
        std::path::Path::new("/usr/bin/bwrap").is_file(),
        "/usr/bin/bwrap is missing: install Debian's bubblewrap package"
    );
    let h = Harness::with_config(1, 10, |config| config.sandbox = SandboxMode::Required).await;
    let root = h.put_message(&Directory::default()).await;
    let spec = h
        .action(
            "mkdir -p out && hostname > out/host && pwd",
            root,
            &["out/host"],
            &[],
        )
        .await;
    let response = h.run(&spec).await;
    assert_eq!(code(&response), tonic::Code::Ok, "{response:?}");
    let result = result(&response);
    assert_eq!(result.exit_code, 0);
    let host = result.output_files[0].digest.as_ref().unwrap();
    assert_eq!(&h.read(host).await[..], b"remesh-sandbox\n");
    let pwd = result.stdout_digest.as_ref().unwrap();
    assert_eq!(&h.read(pwd).await[..], b"/execroot\n");
}
