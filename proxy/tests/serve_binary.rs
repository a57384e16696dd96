//! The `remesh-proxy serve` binary: flags and environment, the ready line, the admin
//! port, a configuration error that names its field, and a clean exit on SIGTERM.

mod support;

use std::process::Stdio;
use std::time::Duration;

use remesh_proxy::ReadyLine;
use support::fake_backend::FakeBackend;
use support::processes::proxy_binary;
use support::real::KillOnDrop;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn serve_prints_its_addresses_serves_and_stops_on_sigterm() {
    let backend = FakeBackend::default().start().await;
    let mut child = tokio::process::Command::new(proxy_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--gossip-listen",
            "127.0.0.1:0",
            "--backend-mode",
            "generic",
        ])
        .args(["--backend", &format!("grpc://{backend}")])
        // The environment works as well as a flag.
        .env("REMESH_PROXY_NODE_ID", "bin-node")
        .env("REMESH_PROXY_CAPACITY", "2")
        .env("REMESH_PROXY_INSECURE_PLAINTEXT_GOSSIP", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let _guard = KillOnDrop { pids: vec![pid] };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a ready line within 30 s")
        .unwrap()
        .expect("serve exited before its ready line");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["ready"], "remesh-proxy");
    let ready: ReadyLine = serde_json::from_value(value).unwrap();
    assert_eq!(ready.node_id, "bin-node");
    for addr in [ready.grpc, ready.admin, ready.gossip] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    }

    assert_eq!(
        support::http_get(ready.admin, "/healthz").await.unwrap().0,
        200
    );
    let report = support::cluster(ready.admin).await.unwrap();
    assert_eq!(report.members[0].load.unwrap().max_concurrency, 2);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_bad_configuration_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, "node_id = \"n\"\nbackend_mode = \"generic\"\n").unwrap();
    let output = tokio::process::Command::new(proxy_binary())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("REMESH_PROXY_CAPACITY")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("capacity:"), "{stderr}");
    assert!(output.stdout.is_empty(), "no ready line for a bad config");
}

#[tokio::test]
async fn a_wildcard_listener_without_an_advertised_address_is_refused_before_ready() {
    let output = tokio::process::Command::new(proxy_binary())
        .args(["serve", "--node-id", "w", "--listen", "0.0.0.0:0"])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--gossip-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("grpc_advertise"), "{stderr}");
    assert!(output.stdout.is_empty(), "no ready line");
}
