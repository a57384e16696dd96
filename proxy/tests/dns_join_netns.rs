//! Discovery through DNS, as on Kubernetes: every node is given one name to join
//! through, whose A records are the members' addresses (a headless Service). Three
//! nodes, each in its own network namespace, start while the name resolves to nothing
//! (no pod is ready yet) and serve alone. Then the name gets three A records, and the
//! nodes' periodic re-resolution alone makes them one cluster, which serves.
//!
//! The records live in each namespace's private `hosts` file (`support::netns`), so the
//! name resolves the way the operating system resolves any name, with nothing
//! answering from outside the namespaces. Needs root and iproute2; without them it
//! fails, saying so.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use support::netns::{GOSSIP_PORT, GRPC_PORT, Network};
use support::node::Node;

const IDS: [&str; 3] = ["a", "b", "c"];
/// The join seed of `deploy/k8s/remesh.yaml`: its headless Service's cluster name.
const SERVICE: &str = "remesh-headless.default.svc.cluster.local";

/// The proxy's log lines for a join name that stops and starts resolving.
const UNRESOLVED: &str = "cannot resolve join address";
const RESOLVED_AGAIN: &str = "join address resolves again";

fn proxy_log(node: &Node) -> String {
    std::fs::read_to_string(&node.proxy.log).unwrap_or_default()
}

/// The members node `index` reports alive with a load record, once it answers.
async fn alive_seen_by(network: &Network, index: usize) -> Vec<String> {
    support::eventually(
        &format!("{}'s admin port to answer", IDS[index]),
        Duration::from_secs(30),
        || network.alive_members(index),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joined_through_one_name_meet_once_it_has_records() {
    // Declared first so it is dropped last, after every process inside it.
    let network = Network::create(3);
    let dir = tempfile::tempdir().unwrap();
    let join = vec![format!("{SERVICE}:{GOSSIP_PORT}")];
    let mut nodes = Vec::new();
    for (index, id) in IDS.iter().enumerate() {
        nodes.push(Node::start(network.node_spec(index, id, dir.path(), 1, &join)).await);
    }

    // The name does not resolve: each node says so in its log, is a cluster of one,
    // and serves.
    for (index, node) in nodes.iter().enumerate() {
        let id = node.id();
        support::eventually(
            &format!("{id} to log the name it cannot resolve"),
            Duration::from_secs(30),
            || async { proxy_log(node).contains(UNRESOLVED).then_some(()) },
        )
        .await;
        assert_eq!(alive_seen_by(&network, index).await, [id], "{id} alone");
        let grpc = Network::addr(index, GRPC_PORT);
        let ns = Some(network.namespace(index));
        let executed = support::netns::execute(ns, grpc, &format!("alone-{id}"), "true").await;
        assert_eq!(executed.owner(), id);
    }

    // The Service's pods become ready: the name gets every node's address, in every
    // namespace, as a cluster DNS server would answer it.
    let records: Vec<(IpAddr, &str)> = (0..IDS.len())
        .map(|index| (Network::address(index), SERVICE))
        .collect();
    let published = Instant::now();
    for index in 0..IDS.len() {
        network.write_hosts(index, &records);
    }
    // Nodes re-resolve every second (`--join-interval 1s`); gossip does the rest.
    for (index, id) in IDS.iter().enumerate() {
        support::eventually(
            &format!("{id} to see one cluster of three"),
            Duration::from_secs(30),
            || async {
                let alive = network.alive_members(index).await?;
                (alive == IDS).then_some(())
            },
        )
        .await;
    }
    eprintln!(
        "dns join: one cluster of three {:?} after the name got its records",
        published.elapsed()
    );
    // Each node logged the failing name once, not every round, and its recovery.
    for node in &nodes {
        let log = proxy_log(node);
        assert_eq!(
            log.matches(UNRESOLVED).count(),
            1,
            "{}'s log:\n{log}",
            node.id()
        );
        assert!(log.contains(RESOLVED_AGAIN), "{}'s log:\n{log}", node.id());
    }
    drop(nodes);
}
