//! Hostile input sent straight to a real `remesh-executor`: malformed and truncated
//! frames, oversized and compressed messages, wrong digests, path traversal, symlink
//! escapes and enormous batches. Each gets its exact status; afterwards the executor
//! still answers health, nothing appeared outside its data dir, and its CAS is intact.

use remesh_proto::reapi::WaitExecutionRequest;
use remesh_tests::hostile;
use remesh_tests::integrity::{Sandbox, check_cas};
use remesh_tests::{ExecutorOptions, polling::free_loopback_port};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_to_an_executor_gets_precise_statuses_and_harms_nothing() {
    let sandbox = Sandbox::new().unwrap();
    let mut options = ExecutorOptions::new().data_dir(&sandbox.data_dir());
    for arg in hostile::executor_limit_args() {
        options = options.arg(arg);
    }
    let executor = options.spawn().unwrap();
    let addr = executor.grpc_addr();
    let clients = executor.clients("").await.unwrap();
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

    // The executor knows no cluster: any name it did not issue is simply unknown.
    let port = free_loopback_port().unwrap();
    for name in [
        format!("remesh/127.0.0.1:{port}/x"),
        "operations/../../x".to_owned(),
        String::new(),
    ] {
        let status = clients
            .execution
            .clone()
            .wait_execution(WaitExecutionRequest { name: name.clone() })
            .await
            .err();
        let code = status.map_or(Code::Ok, |status| status.code());
        assert_eq!(code, Code::NotFound, "WaitExecution {name:?}");
    }

    hostile::health_ok(addr).await.unwrap();
    assert_eq!(
        sandbox.snapshot().unwrap(),
        before,
        "files outside the data dir"
    );
    let blobs = check_cas(&sandbox.data_dir()).unwrap();
    assert!(blobs > 0, "the valid uploads are in the CAS");
}
