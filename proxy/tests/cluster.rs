//! Three in-process proxies, each with its own fake backend, forming a cluster over
//! loopback gossip: membership converges, Execute overflows to a peer, operation
//! calls reach the owner from any node, and a node that leaves is routed around.

mod support;

use support::fake_backend::execute_request;

use std::time::Duration;

use remesh_proto::reapi::WaitExecutionRequest;
use remesh_proto::reapi::execution_client::ExecutionClient;
use support::fake_backend::{self, FakeBackend};
use support::{RunningProxy, start_proxy, wait_member_state};
use tonic::Code;

const CONVERGE: Duration = Duration::from_secs(20);

struct Node {
    proxy: RunningProxy,
    backend: FakeBackend,
}

/// Starts `ids.len()` nodes, each generic with capacity 1, all joining the first.
async fn start_cluster(ids: &[&str]) -> Vec<Node> {
    start_cluster_with(ids, |_| {}).await
}

async fn start_cluster_with(ids: &[&str], adjust: impl Fn(&mut remesh_proxy::Config)) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for id in ids {
        let backend = FakeBackend::default();
        let addr = backend.clone().start().await;
        let mut config = support::loopback_config(id, addr);
        config.capacity = 1;
        config.join_interval = Duration::from_millis(500);
        config.load_heartbeat = Duration::from_millis(300);
        if let Some(first) = nodes.first() {
            config.join = vec![first.proxy.ready.gossip.to_string()];
        }
        adjust(&mut config);
        nodes.push(Node {
            proxy: start_proxy(config).await,
            backend,
        });
    }
    for node in &nodes {
        for id in ids {
            wait_member_state(node.proxy.ready.admin, id, "alive", CONVERGE).await;
        }
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_overflows_and_operations_route_to_their_owner() {
    let nodes = start_cluster(&["n-a", "n-b", "n-c"]).await;
    let a = &nodes[0];
    let mut at_a = ExecutionClient::new(a.proxy.channel().await);

    // Occupy a's only runner; least-loaded keeps this first one local.
    let mut held = at_a
        .execute(execute_request("hold", "first"))
        .await
        .unwrap()
        .into_inner();
    let first = held.message().await.unwrap().unwrap();
    assert!(first.name.starts_with("remesh/n-a/"), "{}", first.name);

    // With a full, the next Execute goes to b or c, named after its new owner.
    let mut stream = at_a
        .execute(execute_request("main", "second"))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(operation) = stream.message().await.unwrap() {
        last = Some(operation);
    }
    let forwarded = last.unwrap();
    assert!(forwarded.done);
    let owner_id = forwarded.name.split('/').nth(1).unwrap().to_owned();
    assert!(owner_id == "n-b" || owner_id == "n-c", "{}", forwarded.name);
    let (owner, other) = if owner_id == "n-b" {
        (&nodes[1], &nodes[2])
    } else {
        (&nodes[2], &nodes[1])
    };
    assert_eq!(owner.backend.recorded.lock().unwrap().executes, 1);
    assert_eq!(a.backend.recorded.lock().unwrap().executes, 1);

    // WaitExecution at the third node reaches the owner's backend with its own name.
    let mut at_other = ExecutionClient::new(other.proxy.channel().await);
    let mut waited = at_other
        .wait_execution(WaitExecutionRequest {
            name: forwarded.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let operation = waited.message().await.unwrap().unwrap();
    assert_eq!(operation.name, forwarded.name);
    let backend_name = fake_backend::backend_operation_name("main", "second");
    assert_eq!(
        owner.backend.recorded.lock().unwrap().names.last(),
        Some(&backend_name)
    );
    assert!(other.backend.recorded.lock().unwrap().names.is_empty());

    // The owner leaves; once the others see it, its operations are NOT_FOUND
    // (Bazel's cue to Execute again) rather than a hang.
    owner.proxy.shutdown.cancel();
    for node in [a, other] {
        wait_member_state(node.proxy.ready.admin, &owner_id, "down", CONVERGE).await;
    }
    let status = at_other
        .wait_execution(WaitExecutionRequest {
            name: forwarded.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // New work from a (still full) now goes to the remaining peer.
    let other_id = other.proxy.ready.node_id.clone();
    let mut stream = at_a
        .execute(execute_request("main", "third"))
        .await
        .unwrap()
        .into_inner();
    let operation = stream.message().await.unwrap().unwrap();
    assert!(
        operation.name.starts_with(&format!("remesh/{other_id}/")),
        "{}",
        operation.name
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_reports_the_cluster() {
    let nodes = start_cluster(&["m-a", "m-b"]).await;
    let admin = nodes[0].proxy.ready.admin;
    let report = support::cluster(admin).await.unwrap();
    assert_eq!(report.node_id, "m-a");
    assert_eq!(report.members.len(), 2);
    let peer = report.members.iter().find(|m| m.node_id == "m-b").unwrap();
    assert_eq!(peer.grpc_addr, nodes[1].proxy.ready.grpc.to_string());
    assert_eq!(peer.load.unwrap().max_concurrency, 1);

    let (status, metrics) = support::http_get(admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("remesh_proxy_members{state=\"alive\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("remesh_proxy_gossip_packets_total{direction=\"received\"}"));
    assert_eq!(support::http_get(admin, "/healthz").await.unwrap().0, 200);
    assert_eq!(support::http_get(admin, "/readyz").await.unwrap().0, 200);
    assert_eq!(support::http_get(admin, "/nope").await.unwrap().0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_sends_an_action_to_the_same_node_from_every_node() {
    let nodes = start_cluster_with(&["r-a", "r-b", "r-c"], |config| {
        config.policy = remesh_proxy::config::Policy::Affinity;
        config.capacity = 4;
    })
    .await;
    let mut owners_seen = std::collections::HashSet::new();
    for action in ["action-1", "action-2", "action-3", "action-4"] {
        let mut owners = Vec::new();
        for node in &nodes {
            let mut client = ExecutionClient::new(node.proxy.channel().await);
            let mut stream = client
                .execute(execute_request("main", action))
                .await
                .unwrap()
                .into_inner();
            let operation = stream.message().await.unwrap().unwrap();
            owners.push(operation.name.split('/').nth(1).unwrap().to_owned());
        }
        assert!(
            owners.windows(2).all(|w| w[0] == w[1]),
            "{action}: {owners:?}"
        );
        owners_seen.insert(owners[0].clone());
    }
    // Four actions over three idle nodes: not everything on one of them.
    assert!(owners_seen.len() > 1, "{owners_seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_refuses_before_accepting_is_skipped_for_local() {
    // Node b's proxy is a healthy member, but its backend is gone: it answers every
    // Execute with UNAVAILABLE before accepting anything.
    let backend_a = FakeBackend::default();
    let addr_a = backend_a.clone().start().await;
    let mut config_a = support::loopback_config("f-a", addr_a);
    config_a.capacity = 1;
    config_a.load_heartbeat = Duration::from_millis(300);
    let a = start_proxy(config_a).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut config_b = support::loopback_config("f-b", dead_addr);
    config_b.load_heartbeat = Duration::from_millis(300);
    config_b.join = vec![a.ready.gossip.to_string()];
    let b = start_proxy(config_b).await;
    for node in [&a, &b] {
        for id in ["f-a", "f-b"] {
            wait_member_state(node.ready.admin, id, "alive", CONVERGE).await;
        }
    }

    let mut at_a = ExecutionClient::new(a.channel().await);
    let mut held = at_a
        .execute(execute_request("hold", "busy"))
        .await
        .unwrap()
        .into_inner();
    held.message().await.unwrap().unwrap();
    // a is full, b looks idle: b is tried first, refuses, and a takes the work.
    let mut stream = at_a
        .execute(execute_request("main", "fallback"))
        .await
        .unwrap()
        .into_inner();
    let operation = stream.message().await.unwrap().unwrap();
    assert!(
        operation.name.starts_with("remesh/f-a/"),
        "{}",
        operation.name
    );
    assert_eq!(backend_a.recorded.lock().unwrap().executes, 2);
    let (_, metrics) = support::http_get(a.ready.admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("remesh_proxy_forwards_total{peer=\"f-b\",outcome=\"refused\"} 1"),
        "{metrics}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_backend_is_down_sends_new_work_to_peers() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut config_a = support::loopback_config("d-a", dead_addr);
    config_a.load_heartbeat = Duration::from_millis(300);
    let a = start_proxy(config_a).await;
    let backend_b = FakeBackend::default();
    let addr_b = backend_b.clone().start().await;
    let mut config_b = support::loopback_config("d-b", addr_b);
    config_b.load_heartbeat = Duration::from_millis(300);
    config_b.join = vec![a.ready.gossip.to_string()];
    let b = start_proxy(config_b).await;
    for node in [&a, &b] {
        for id in ["d-a", "d-b"] {
            wait_member_state(node.ready.admin, id, "alive", CONVERGE).await;
        }
    }
    // Both idle: a prefers itself, fails to reach its backend, and b takes the work.
    let mut stream = ExecutionClient::new(a.channel().await)
        .execute(execute_request("main", "rescued"))
        .await
        .unwrap()
        .into_inner();
    let operation = stream.message().await.unwrap().unwrap();
    assert!(
        operation.name.starts_with("remesh/d-b/"),
        "{}",
        operation.name
    );
    assert_eq!(backend_b.recorded.lock().unwrap().executes, 1);
}
