//! The `remesh-executor` process as an operator sees it: the ready line, the ports it
//! binds, SIGTERM, refusing a bad configuration, and data that outlives a restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use remesh_tests::{ExecutorOptions, ExecutorProcess, blob_digest};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain HTTP/1.0 GET; the metrics port speaks HTTP, not gRPC.
fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn ready_line_reports_the_ports_bound_for_port_zero() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let ready = executor.ready_line();
    let ports = [ready.grpc.port(), ready.metrics.port(), ready.load.port()];
    for addr in [ready.grpc, ready.metrics, ready.load] {
        assert!(addr.ip().is_loopback(), "{addr} is not loopback");
        assert_ne!(addr.port(), 0, "the ready line must carry the bound port");
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|error| anyhow::anyhow!("{addr} from the ready line refuses: {error}"))?;
    }
    assert!(
        ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2],
        "three sockets, three ports: {ports:?}"
    );
    let metrics = http_get(ready.metrics, "/metrics")?;
    assert!(
        metrics.starts_with("HTTP/1.1 200") || metrics.starts_with("HTTP/1.0 200"),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn sigterm_stops_the_executor_with_exit_code_zero() -> anyhow::Result<()> {
    let executor = ExecutorProcess::spawn()?;
    let status = executor.terminate(EXIT_TIMEOUT)?;
    assert_eq!(status.code(), Some(0), "after SIGTERM: {status}");
    Ok(())
}

#[test]
fn an_invalid_config_file_field_is_named_and_the_exit_code_is_non_zero() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        ("queue_max = 0\n", "queue_max"),
        ("queue_maxx = 3\n", "queue_maxx"),
        ("keepalive_interval = \"soon\"\n", "keepalive_interval"),
        (
            "max_batch_bytes = 8388608\nmax_message_bytes = 8388608\n",
            "max_message_bytes",
        ),
    ];
    for (index, (text, field)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad-{index}.toml"));
        std::fs::write(&path, text)?;
        let report = ExecutorOptions::new()
            .arg("--config")
            .arg(&path)
            .run_to_exit(EXIT_TIMEOUT)?;
        assert!(!report.status.success(), "{text:?} was accepted");
        assert!(
            report.stderr.contains(field),
            "the error for {text:?} does not name {field}:\n{}",
            report.stderr
        );
        assert!(
            !report.stdout.contains("\"ready\""),
            "a refused configuration must not print a ready line: {}",
            report.stdout
        );
    }
    Ok(())
}

#[test]
fn an_invalid_flag_value_is_named_and_the_exit_code_is_non_zero() -> anyhow::Result<()> {
    let report = ExecutorOptions::new()
        .arg("--backing-cache")
        .arg("http://127.0.0.1:1")
        .run_to_exit(EXIT_TIMEOUT)?;
    assert!(
        !report.status.success(),
        "an http:// backing cache was accepted"
    );
    assert!(report.stderr.contains("backing_cache"), "{}", report.stderr);

    let report = ExecutorOptions::new()
        .arg("--default-action-timeout")
        .arg("2h")
        .run_to_exit(EXIT_TIMEOUT)?;
    assert!(
        !report.status.success(),
        "a default timeout past the maximum was accepted"
    );
    assert!(
        report.stderr.contains("default_action_timeout"),
        "{}",
        report.stderr
    );
    Ok(())
}

#[tokio::test]
async fn stored_content_survives_a_restart_on_the_same_data_dir() -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    // Bigger than one ByteStream chunk, and a small one stored by batch.
    let large: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let small = Bytes::from_static(b"a small blob that must survive a restart");

    let first = ExecutorOptions::new().data_dir(data_dir.path()).spawn()?;
    let clients = first.clients("main").await?;
    let large_digest = clients.upload(large.clone()).await?;
    let small_digest = clients
        .upload_messages(vec![small.clone()])
        .await?
        .remove(0);
    drop(clients);
    // Blocking wait off the runtime thread: the client connection must still be driven
    // (its HTTP/2 close handshake) while the executor drains.
    let status = tokio::task::spawn_blocking(move || first.terminate(EXIT_TIMEOUT)).await??;
    assert!(status.success(), "first executor: {status}");

    let second = ExecutorOptions::new().data_dir(data_dir.path()).spawn()?;
    let clients = second.clients("main").await?;
    let missing = clients
        .find_missing(&[large_digest.clone(), small_digest.clone()])
        .await?;
    assert!(missing.is_empty(), "lost after restart: {missing:?}");
    assert!(
        clients.download(&large_digest).await? == large,
        "large blob differs after restart"
    );
    assert_eq!(clients.download(&small_digest).await?, small);
    assert_eq!(large_digest, blob_digest(&large));
    Ok(())
}
