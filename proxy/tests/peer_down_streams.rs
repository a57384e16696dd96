//! A forwarded Execute whose owner vanishes without closing its connections ends as
//! soon as gossip declares the owner down, not when HTTP/2 keep-alive gives up.
//!
//! The owner's proxy is frozen with SIGSTOP: the kernel still acknowledges its TCP
//! segments and nothing answers, as with a host that lost power or its network.
//! The entry node must end the client's stream with UNAVAILABLE once the owner is
//! down (a few seconds of SWIM), then answer NOT_FOUND for the operation, so a
//! client such as Bazel runs the action again elsewhere. Keep-alive alone would
//! take 20-40 s. Its own local stream is not touched.
//!
//! A member that leaves gracefully (SIGTERM) is different: it drains, so the
//! streams forwarded to it run to their end.
//!
//! Real `remesh-proxy serve` processes in generic mode (capacity 1) in front of
//! in-process fake backends whose `hold` instance keeps an Execute open and whose
//! `slow` instance finishes after three seconds.

mod support;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proto::reapi::{Digest, ExecuteRequest, WaitExecutionRequest};
use support::fake_backend::FakeBackend;
use support::secure::ServeProcess;
use support::{cluster, wait_member_state};
use tonic::Code;

const CONVERGE: Duration = Duration::from_secs(30);
/// Gossip declares a frozen member down in about 6 s here; keep-alive would need
/// at least 20 s to notice a silent connection.
const DOWN_BOUND: Duration = Duration::from_secs(18);

fn node_args(backend: SocketAddr, join: Option<SocketAddr>) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--insecure-plaintext-gossip",
        "--backend-mode",
        "generic",
        "--capacity",
        "1",
    ]
    .map(OsString::from)
    .to_vec();
    args.push("--backend".into());
    args.push(format!("grpc://{backend}").into());
    if let Some(seed) = join {
        args.push("--join".into());
        args.push(seed.to_string().into());
    }
    args
}

fn hold(hash: &str) -> ExecuteRequest {
    request("hold", hash)
}

fn request(instance: &str, hash: &str) -> ExecuteRequest {
    ExecuteRequest {
        instance_name: instance.into(),
        action_digest: Some(Digest {
            hash: hash.into(),
            size_bytes: 1,
        }),
        ..Default::default()
    }
}

/// Nodes a and b (b joined through a), a client of a, and an Execute that fills a
/// (capacity 1) and stays open there, so the next one a gets goes to b.
struct TwoNodes {
    a: ServeProcess,
    b: ServeProcess,
    client: ExecutionClient<tonic::transport::Channel>,
    local: tonic::Streaming<remesh_proto::longrunning::Operation>,
    /// Holds the logs: bind it, or they go when the struct is taken apart.
    _dir: tempfile::TempDir,
}

async fn two_nodes(b_backend: FakeBackend) -> TwoNodes {
    let dir = tempfile::tempdir().unwrap();
    let a_backend = FakeBackend::default().start().await;
    let b_backend = b_backend.start().await;
    let a = ServeProcess::start("a", &node_args(a_backend, None), &dir.path().join("a.log")).await;
    let b = ServeProcess::start(
        "b",
        &node_args(b_backend, Some(a.ready.gossip)),
        &dir.path().join("b.log"),
    )
    .await;
    wait_member_state(a.admin(), "b", "alive", CONVERGE).await;
    let mut client = ExecutionClient::connect(format!("http://{}", a.ready.grpc))
        .await
        .unwrap();
    let mut local = client.execute(hold("1")).await.unwrap().into_inner();
    let first = local.message().await.unwrap().expect("an operation");
    assert!(first.name.starts_with("remesh/a/"), "{}", first.name);
    TwoNodes {
        a,
        b,
        client,
        local,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_execute_ends_when_its_owner_is_declared_down() {
    let b_backend = FakeBackend::default();
    let b_recorded = b_backend.recorded.clone();
    let TwoNodes {
        a,
        b,
        mut client,
        mut local,
        _dir,
    } = two_nodes(b_backend).await;
    // a is full: the next Execute goes to b.
    let mut forwarded = client.execute(hold("2")).await.unwrap().into_inner();
    let second = forwarded.message().await.unwrap().expect("an operation");
    assert!(second.name.starts_with("remesh/b/"), "{}", second.name);
    assert_eq!(b_recorded.lock().unwrap().executes, 1);

    let frozen = Instant::now();
    kill(Pid::from_raw(b.pid() as i32), Signal::SIGSTOP).expect("SIGSTOP to b");
    let ended = tokio::time::timeout(DOWN_BOUND, forwarded.message())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the stream forwarded to b still open {DOWN_BOUND:?} after b froze; a's log:\n{}",
                std::fs::read_to_string(&a.log).unwrap_or_default()
            )
        });
    let status = ended.expect_err("the forwarded stream must end with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let took = frozen.elapsed();
    let report = cluster(a.admin()).await.expect("a's /cluster");
    let b_state = report.members.iter().find(|m| m.node_id == "b");
    assert_eq!(
        b_state.map(|m| m.state.as_str()),
        Some("down"),
        "the stream ended before gossip declared b down: {report:?}"
    );

    // The owner is gone: its operation is not found, which tells Bazel to execute anew.
    let wait = client
        .wait_execution(WaitExecutionRequest {
            name: second.name.clone(),
        })
        .await;
    let code = match wait {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Err(status) => status.code(),
            Ok(message) => panic!("WaitExecution for b's operation answered {message:?}"),
        },
    };
    assert_eq!(code, Code::NotFound);

    // a's own operation is untouched.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), local.message())
            .await
            .is_err(),
        "the local stream ended when b went down"
    );
    eprintln!("forwarded stream ended {took:?} after its owner froze");
    // Dropping `b` SIGKILLs it, stopped or not.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_execute_survives_its_owner_leaving_gracefully() {
    // `_local` keeps a full until the end; `_dir` keeps the logs.
    let TwoNodes {
        a,
        b,
        mut client,
        local: _local,
        _dir,
    } = two_nodes(FakeBackend::default()).await;
    let mut forwarded = client
        .execute(request("slow", "2"))
        .await
        .unwrap()
        .into_inner();
    let running = forwarded.message().await.unwrap().expect("an operation");
    assert!(running.name.starts_with("remesh/b/"), "{}", running.name);
    assert!(!running.done);

    kill(Pid::from_raw(b.pid() as i32), Signal::SIGTERM).expect("SIGTERM to b");
    support::eventually("a to see b leave", Duration::from_secs(3), || async {
        let report = cluster(a.admin()).await?;
        let b = report.members.iter().find(|m| m.node_id == "b")?;
        (b.state == "down").then_some(())
    })
    .await;
    // b drains: the operation it runs reaches its end through a.
    let done = tokio::time::timeout(Duration::from_secs(10), forwarded.message())
        .await
        .expect("b's operation did not finish within 10 s of its leave")
        .unwrap_or_else(|status| panic!("the stream forwarded to a leaving b broke: {status:?}"))
        .expect("a final operation");
    assert!(done.done, "{done:?}");
    assert_eq!(done.name, running.name);
    // Its own leave is not reported as being thrown out of the cluster.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&b.log).unwrap_or_default();
        if log.contains("left the cluster") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "b never logged its leave:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!log.contains("declared down"), "{log}");
}
