//! Tracing across hops and JSON logs, with real binaries.
//!
//! Node A is the `remesh-proxy` binary with `--log-format json`; node B runs in this
//! process. An Execute carrying a W3C `traceparent` that A forwards to B reaches B's
//! backend with the very same `traceparent` and `tracestate`, and A's log has a JSON
//! line naming that trace id and the peer. Every line either binary writes to stderr
//! in JSON mode is a JSON object.

mod support;

use support::fake_backend::execute_request;

use std::process::Stdio;
use std::time::Duration;

use remesh_proto::reapi::execution_client::ExecutionClient;
use remesh_proxy::ReadyLine;
use serde_json::Value;
use support::fake_backend::FakeBackend;
use support::processes::{executor_binary, proxy_binary};
use support::real::KillOnDrop;
use support::{start_proxy, wait_member_state};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const CONVERGE: Duration = Duration::from_secs(30);
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "remesh=t61rcWkgMzE,other=opaque";

/// A child process with piped stdout (its ready line) and stderr (its log).
struct Logged {
    child: tokio::process::Child,
    ready: String,
    _guard: KillOnDrop,
}

impl Logged {
    async fn start(command: &mut tokio::process::Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info,remesh_proxy=debug,remesh_executor=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the binary");
        let guard = KillOnDrop {
            pids: vec![child.id().expect("pid")],
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("a ready line within 60 s")
            .unwrap()
            .expect("the binary exited before its ready line");
        Self {
            child,
            ready,
            _guard: guard,
        }
    }

    /// SIGTERM, wait for a clean exit, and return everything written to stderr.
    async fn stop(mut self) -> String {
        let mut stderr = self.child.stderr.take().unwrap();
        let pid = self.child.id().expect("still running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut log = String::new();
        tokio::time::timeout(Duration::from_secs(60), stderr.read_to_string(&mut log))
            .await
            .expect("stderr closes within 60 s of SIGTERM")
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exit within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}\n{log}");
        log
    }
}

/// Parses every stderr line as a JSON object, failing on the first that is not one.
fn json_lines(log: &str) -> Vec<Value> {
    assert!(!log.trim().is_empty(), "nothing was logged");
    log.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}\n{log}"));
            assert!(value.is_object(), "not a JSON object: {line}");
            assert!(value["level"].is_string() && value["timestamp"].is_string());
            value
        })
        .collect()
}

/// Whether a log line was written inside a span with `trace_id`.
fn in_trace(line: &Value, trace_id: &str) -> bool {
    line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|span| span["trace_id"] == trace_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_reaches_the_peers_backend_and_both_logs_name_the_trace() {
    // Node B, in this process, with its own recording backend.
    let backend_b = FakeBackend::default();
    let addr_b = backend_b.clone().start().await;
    let mut config_b = support::loopback_config("t-b", addr_b);
    config_b.load_heartbeat = Duration::from_millis(300);
    let b = start_proxy(config_b).await;

    // Node A: the real binary, one slot, joining B, logging JSON.
    let backend_a = FakeBackend::default();
    let addr_a = backend_a.clone().start().await;
    let a = Logged::start(
        tokio::process::Command::new(proxy_binary())
            .args(["serve", "--log-format", "json", "--node-id", "t-a"])
            .arg("--insecure-plaintext-gossip")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args([
                "--gossip-listen",
                "127.0.0.1:0",
                "--backend-mode",
                "generic",
            ])
            .args(["--backend", &format!("grpc://{addr_a}"), "--capacity", "1"])
            .args(["--load-heartbeat", "300ms", "--join-interval", "500ms"])
            .args(["--join", &b.ready.gossip.to_string()]),
    )
    .await;
    let ready_a: ReadyLine = serde_json::from_str(&a.ready).expect("A's ready line");
    for admin in [ready_a.admin, b.ready.admin] {
        for node in ["t-a", "t-b"] {
            wait_member_state(admin, node, "alive", CONVERGE).await;
        }
    }

    // Fill A's only slot, so that the traced Execute is forwarded to B.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", ready_a.grpc))
        .unwrap()
        .connect()
        .await
        .expect("connecting to A");
    let mut at_a = ExecutionClient::new(channel);
    let mut held = at_a
        .execute(execute_request("hold", "held"))
        .await
        .unwrap()
        .into_inner();
    let first = held.message().await.unwrap().unwrap();
    assert!(first.name.starts_with("remesh/t-a/"), "{}", first.name);

    let mut request = tonic::Request::new(execute_request("main", "traced"));
    request
        .metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().unwrap());
    request
        .metadata_mut()
        .insert("tracestate", TRACESTATE.parse().unwrap());
    let mut stream = at_a.execute(request).await.unwrap().into_inner();
    let operation = stream.message().await.unwrap().unwrap();
    assert!(
        operation.name.starts_with("remesh/t-b/"),
        "the traced Execute should have gone to B: {}",
        operation.name
    );
    while stream.message().await.unwrap().is_some() {}

    // B's backend saw the client's trace context, byte for byte.
    let executes: Vec<_> = backend_b
        .recorded
        .lock()
        .unwrap()
        .headers
        .iter()
        .filter(|(method, _)| method == "Execute")
        .map(|(_, metadata)| metadata.clone())
        .collect();
    assert_eq!(executes.len(), 1, "B's backend got one Execute");
    let metadata = &executes[0];
    assert_eq!(metadata.get("traceparent").unwrap(), TRACEPARENT);
    assert_eq!(metadata.get("tracestate").unwrap(), TRACESTATE);
    // A's backend only saw the untraced Execute.
    let untraced_at_a = backend_a
        .recorded
        .lock()
        .unwrap()
        .headers
        .iter()
        .all(|(_, metadata)| metadata.get("traceparent").is_none());
    assert!(untraced_at_a);

    drop(held);
    drop(stream);
    let log = a.stop().await;
    let lines = json_lines(&log);
    let forwarded = lines
        .iter()
        .find(|line| in_trace(line, TRACE_ID) && line["peer"] == "t-b")
        .unwrap_or_else(|| panic!("no log line with trace {TRACE_ID} and peer t-b in\n{log}"));
    let span = forwarded["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|span| span["name"] == "request")
        .expect("the request span");
    assert_eq!(span["node"], "t-a");
    assert_eq!(span["op"], "Execute");
    assert_eq!(forwarded["outcome"], "accepted");
    // The untraced Execute was logged without a trace id.
    assert!(
        lines
            .iter()
            .any(|line| line["spans"].as_array().is_some_and(|spans| spans
                .iter()
                .any(|span| span["name"] == "request" && span.get("trace_id").is_none()))),
        "{log}"
    );
}

#[tokio::test]
async fn the_executor_logs_only_json_objects_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let executor = Logged::start(
        tokio::process::Command::new(executor_binary())
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--load-listen", "127.0.0.1:0", "--runners", "1"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            // The environment works as well as the flag.
            .env("REMESH_LOG_FORMAT", "json"),
    )
    .await;
    let ready: Value = serde_json::from_str(&executor.ready).expect("the executor's ready line");
    let metrics: std::net::SocketAddr = ready["metrics"].as_str().unwrap().parse().unwrap();
    assert_eq!(support::http_get(metrics, "/metrics").await.unwrap().0, 200);
    let log = executor.stop().await;
    let lines = json_lines(&log);
    assert!(
        lines.iter().any(|line| line["target"]
            .as_str()
            .is_some_and(|target| target.starts_with("remesh_executor"))),
        "{log}"
    );
}

#[tokio::test]
async fn a_json_logging_proxy_reports_a_fatal_error_as_json() {
    let output = tokio::process::Command::new(proxy_binary())
        .args(["--log-format", "json", "serve", "--node-id", "w"])
        .args(["--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--gossip-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8(output.stderr).unwrap();
    let lines = json_lines(&log);
    let fatal = lines.last().unwrap();
    assert_eq!(fatal["level"], "ERROR", "{log}");
    assert!(
        fatal["error"]
            .as_str()
            .is_some_and(|error| error.contains("grpc_advertise")),
        "{log}"
    );
}
