//! Hostile input sent to a real `remesh-proxy serve` in front of a real executor: the
//! executor's suite again through the proxy, plus operation names that are unknown,
//! forged or carry addresses. The proxy must answer each with its exact status and
//! never dial an address a name carries: a listener the test opens on the named port
//! must see no connection. Afterwards both processes still answer health, nothing
//! appeared outside the data dir, and the CAS is intact.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use remesh_proto::longrunning::GetOperationRequest;
use remesh_proto::reapi::WaitExecutionRequest;
use remesh_tests::ExecutorOptions;
use remesh_tests::hostile;
use remesh_tests::integrity::{Sandbox, check_cas};
use remesh_tests::proxy_process::ProxyProcess;
use remesh_tests::reapi_client::Clients;
use tonic::Code;

const NODE_ID: &str = "hostile-node";

/// `GET path` on the admin port; returns the HTTP status.
fn http_status(admin: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The status of WaitExecution and of GetOperation for `name`; both must agree.
async fn name_code(clients: &Clients, name: &str) -> Code {
    let wait = clients
        .execution
        .clone()
        .wait_execution(WaitExecutionRequest { name: name.into() })
        .await;
    let wait = match wait {
        Err(status) => status.code(),
        Ok(response) => match response.into_inner().message().await {
            Err(status) => status.code(),
            Ok(_) => Code::Ok,
        },
    };
    let get = clients
        .operations
        .clone()
        .get_operation(GetOperationRequest { name: name.into() })
        .await
        .err()
        .map_or(Code::Ok, |status| status.code());
    assert_eq!(
        wait, get,
        "WaitExecution and GetOperation of {name:?} differ"
    );
    wait
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_to_a_proxy_gets_precise_statuses_and_dials_nothing() {
    let sandbox = Sandbox::new().unwrap();
    let mut options = ExecutorOptions::new().data_dir(&sandbox.data_dir());
    for arg in hostile::executor_limit_args() {
        options = options.arg(arg);
    }
    let executor = options.spawn().unwrap();
    let max_message = hostile::MAX_MESSAGE_BYTES.to_string();
    let mut proxy =
        ProxyProcess::spawn_for(&executor, NODE_ID, &["--max-message-bytes", &max_message])
            .unwrap();
    let addr = proxy.grpc_addr();
    let clients = Clients::connect(addr, "").await.unwrap();
    let before = sandbox.snapshot().unwrap();

    hostile::malformed_protobuf(addr).await.unwrap();
    hostile::truncated_frames(addr).await.unwrap();
    hostile::oversized_messages(addr).await.unwrap();
    hostile::compression_flags(addr).await.unwrap();
    hostile::broken_write_streams(addr, &clients).await.unwrap();
    hostile::wrong_digests(&clients).await.unwrap();
    hostile::enormous_batches(&clients).await.unwrap();
    hostile::path_traversal(&clients).await.unwrap();
    hostile::symlink_escapes(&clients, &sandbox.sentinel())
        .await
        .unwrap();

    // A listener on the port the names point at: nothing may ever connect to it.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let port = trap.local_addr().unwrap().port();
    let cases = [
        // Not remesh names at all, or a node id that holds an address: refused.
        (format!("remesh/127.0.0.1:{port}/x"), Code::InvalidArgument),
        (
            "remesh/evil.example:443/x".to_owned(),
            Code::InvalidArgument,
        ),
        (format!("http://127.0.0.1:{port}/x"), Code::InvalidArgument),
        (format!("grpc://127.0.0.1:{port}"), Code::InvalidArgument),
        (format!("remesh/[::1]:{port}/x"), Code::InvalidArgument),
        (
            format!("remesh/user@127.0.0.1:{port}/x"),
            Code::InvalidArgument,
        ),
        ("operations/123".to_owned(), Code::InvalidArgument),
        (String::new(), Code::InvalidArgument),
        (format!("remesh/{NODE_ID}/"), Code::InvalidArgument),
        // Well-formed, but no such member: NOT_FOUND, so Bazel calls Execute again.
        (
            "remesh/unknown-node/operations/1".to_owned(),
            Code::NotFound,
        ),
        ("remesh/127.0.0.1/x".to_owned(), Code::NotFound),
        ("remesh/evil.example/x".to_owned(), Code::NotFound),
        (format!("remesh/{}/x", "n".repeat(63)), Code::NotFound),
        // Forged: this node's id with a name its executor never issued.
        (format!("remesh/{NODE_ID}/forged-operation"), Code::NotFound),
        (format!("remesh/{NODE_ID}/127.0.0.1:{port}"), Code::NotFound),
        (
            format!("remesh/{NODE_ID}/remesh/127.0.0.1:{port}/x"),
            Code::NotFound,
        ),
    ];
    for (name, expected) in &cases {
        assert_eq!(name_code(&clients, name).await, *expected, "{name:?}");
    }
    // Every answer is in: a dial the proxy made would already be queued at the trap.
    match trap.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to the trap on port {port}: {other:?}"),
    }

    assert!(proxy.is_running(), "the proxy exited");
    assert_eq!(http_status(proxy.ready_line().admin, "/healthz"), 200);
    hostile::health_ok(executor.grpc_addr()).await.unwrap();
    assert_eq!(
        sandbox.snapshot().unwrap(),
        before,
        "files outside the data dir"
    );
    let blobs = check_cas(&sandbox.data_dir()).unwrap();
    assert!(blobs > 0, "the valid uploads are in the CAS");
}
