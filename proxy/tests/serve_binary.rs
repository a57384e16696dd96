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

/// Runs `serve` with `args` to its exit (bounded: a node that started instead
/// would run forever); returns (success, stdout, stderr).
async fn serve_until_exit(args: &[std::ffi::OsString]) -> (bool, String, String) {
    let child = tokio::process::Command::new(proxy_binary())
        .args(["serve", "--node-id", "bad-files"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--gossip-listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("serve with a bad file must exit, not serve")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_bad_certificate_or_keyring_stops_the_start_before_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = support::secure::Ca::new(dir.path(), "mesh");
    let leaf = mesh.leaf("bad-files", &[]);
    let keyring = support::secure::keyring_file(&dir.path().join("keyring"));
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let os = |items: &[&dyn AsRef<std::ffi::OsStr>]| -> Vec<std::ffi::OsString> {
        items.iter().map(|item| item.as_ref().to_owned()).collect()
    };
    let mesh_flags = |cert: &std::path::Path| {
        os(&[
            &"--mesh-tls-ca-file",
            &mesh.pem_file,
            &"--mesh-tls-cert-file",
            &cert,
            &"--mesh-tls-key-file",
            &leaf.key,
        ])
    };

    // A garbage mesh certificate on a peer port; a garbage client certificate on a
    // shared port; a garbage keyring: each names the file, and nothing is printed
    // on stdout (a supervisor reading the ready line never sees a start).
    let peer_port = [
        mesh_flags(&garbage),
        os(&[
            &"--peer-listen",
            &"127.0.0.1:0",
            &"--gossip-keyring",
            &keyring,
        ]),
    ]
    .concat();
    let shared_port = [
        mesh_flags(&leaf.cert),
        os(&[
            &"--tls-cert-file",
            &garbage,
            &"--tls-key-file",
            &leaf.key,
            &"--gossip-keyring",
            &keyring,
        ]),
    ]
    .concat();
    let bad_keyring = [
        mesh_flags(&leaf.cert),
        os(&[
            &"--peer-listen",
            &"127.0.0.1:0",
            &"--gossip-keyring",
            &garbage,
        ]),
    ]
    .concat();
    for (case, args, field) in [
        ("peer port", peer_port, "mesh_tls"),
        ("shared port", shared_port, "tls"),
        ("keyring", bad_keyring, "gossip_keyring"),
    ] {
        let (success, stdout, stderr) = serve_until_exit(&args).await;
        assert!(!success, "{case}: serve must fail");
        assert!(stdout.is_empty(), "{case}: no ready line, got {stdout:?}");
        assert!(
            stderr.contains(garbage.to_str().unwrap()),
            "{case}: the error names the file: {stderr}"
        );
        assert!(
            stderr.contains(field),
            "{case}: the error names {field}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_peer_port_without_mesh_tls_is_refused_before_the_ready_line() {
    let (success, stdout, stderr) = serve_until_exit(&[
        "--peer-listen".into(),
        "127.0.0.1:0".into(),
        "--insecure-plaintext-gossip".into(),
    ])
    .await;
    assert!(!success);
    assert!(stdout.is_empty(), "no ready line: {stdout:?}");
    assert!(
        stderr.contains("peer_listen: needs [mesh_tls]"),
        "the refusal says why: {stderr}"
    );
}
