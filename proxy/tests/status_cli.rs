//! `remesh-proxy status` against running nodes: the table a person reads, the JSON a
//! script reads, and a clear failure when nothing listens at the address.

mod support;

use std::process::{Output, Stdio};
use std::time::Duration;

use remesh_proxy::admin::ClusterReport;
use support::fake_backend::FakeBackend;
use support::processes::proxy_binary;
use support::{start_proxy, wait_member_state};

const CONVERGE: Duration = Duration::from_secs(30);

async fn status(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(proxy_binary())
        .arg("status")
        .args(args)
        .env_remove("REMESH_ADMIN")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("status finishes within 60 s")
        .expect("running remesh-proxy status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_every_member_with_state_address_and_load() {
    let mut proxies = Vec::new();
    for (id, capacity) in [("s-a", 3), ("s-b", 5)] {
        let backend = FakeBackend::default().start().await;
        let mut config = support::loopback_config(id, backend);
        config.capacity = capacity;
        config.load_heartbeat = Duration::from_millis(300);
        config.join_interval = Duration::from_millis(500);
        if let Some(first) = proxies.first() {
            let first: &support::RunningProxy = first;
            config.join = vec![first.ready.gossip.to_string()];
        }
        proxies.push(start_proxy(config).await);
    }
    let admin = proxies[0].ready.admin;
    for id in ["s-a", "s-b"] {
        wait_member_state(admin, id, "alive", CONVERGE).await;
    }

    let output = status(&["--admin", &admin.to_string()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("cluster seen by s-a (up "), "{stdout}");
    assert!(lines[0].contains("2 members, 2 alive"), "{stdout}");
    let header = lines
        .iter()
        .find(|line| line.starts_with("NODE"))
        .expect("a header row");
    for column in ["STATE", "GRPC", "QUEUED", "EXECUTING", "MAX", "UPDATED"] {
        assert!(header.contains(column), "{header}");
    }
    let row = |id: &str| -> Vec<String> {
        lines
            .iter()
            .find(|line| line.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id} in\n{stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let (grpc_a, grpc_b) = (
        proxies[0].ready.grpc.to_string(),
        proxies[1].ready.grpc.to_string(),
    );
    let a = row("s-a");
    assert_eq!(a[1..4], ["*", "alive", grpc_a.as_str()]);
    assert_eq!(a[4..8], ["0", "0", "3", "local"]);
    let b = row("s-b");
    assert_eq!(b[1..3], ["alive", grpc_b.as_str()]);
    assert_eq!(b[3..6], ["0", "0", "5"]);
    assert_eq!(b[7], "ago", "age of B's last load record: {b:?}");
    assert!(stdout.contains("join     s-b"), "{stdout}");

    // --admin also takes a URL, and --json hands scripts the report itself.
    let output = status(&["--json", "--admin", &format!("http://{admin}/")]).await;
    assert!(output.status.success());
    let report: ClusterReport = serde_json::from_slice(&output.stdout).expect("a cluster report");
    assert_eq!(report.node_id, "s-a");
    assert_eq!(report.members.len(), 2);
}

#[tokio::test]
async fn status_fails_clearly_when_the_admin_port_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let output = status(&["--admin", &addr.to_string(), "--timeout", "10s"]).await;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot reach the admin port at http://{addr}/cluster"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");

    let output = status(&["--admin", "https://127.0.0.1:1"]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not an admin address"),
        "{output:?}"
    );
}
