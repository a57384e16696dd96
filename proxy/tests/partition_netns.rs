//! A real network partition. Three nodes (executor + proxy each), each in its own
//! network namespace on a private bridge (10.77.0.0/24, which exists only inside the
//! namespaces this test creates), cluster by gossip across those addresses. Node a's
//! cable is unplugged: both sides keep serving Execute (a alone; b and c together) and
//! each marks the other down. Plugged back, they are one cluster again within 10 s.
//!
//! Needs root and iproute2; without them it fails, saying so.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::netns::{ADMIN_PORT, GOSSIP_PORT, GRPC_PORT, Network, cluster_in};
use support::node::Node;

const IDS: [&str; 3] = ["a", "b", "c"];

/// Node ids that `index`'s node reports in `state`.
async fn members_in_state(network: &Network, index: usize, state: &str) -> BTreeSet<String> {
    let admin = Network::addr(index, ADMIN_PORT);
    let Some(report) = cluster_in(network.namespace(index), admin).await else {
        return BTreeSet::new();
    };
    report
        .members
        .into_iter()
        .filter(|member| member.state == state && (state != "alive" || member.load.is_some()))
        .map(|member| member.node_id)
        .collect()
}

async fn wait_state(network: &Network, index: usize, nodes: &[&str], state: &str, limit: Duration) {
    let want: BTreeSet<String> = nodes.iter().map(|id| id.to_string()).collect();
    support::eventually(
        &format!("{} to see {want:?} {state}", IDS[index]),
        limit,
        || async {
            let seen = members_in_state(network, index, state).await;
            want.is_subset(&seen).then_some(())
        },
    )
    .await;
}

/// Waits until node `index` reports exactly a, b and c alive, each once, with load.
async fn wait_one_cluster(network: &Network, index: usize, limit: Duration) {
    support::eventually(
        &format!("{} to see one cluster of three", IDS[index]),
        limit,
        || async {
            let alive = network.alive_members(index).await?;
            (alive == IDS).then_some(())
        },
    )
    .await;
}

/// Runs a small action through node `index`'s proxy, from inside its namespace;
/// returns the node that owns the operation.
async fn execute_through(network: &Network, index: usize, salt: &str, n: usize) -> String {
    let grpc = Network::addr(index, GRPC_PORT);
    let ns = Some(network.namespace(index));
    let salt = format!("{salt}-{n}");
    support::netns::execute(ns, grpc, &salt, "sleep 1; echo partition")
        .await
        .owner()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_partition_serve_and_the_cluster_heals() {
    // Declared first so it is dropped last, after every process inside it.
    let network = Network::create(3);
    let dir = tempfile::tempdir().unwrap();
    let join: Vec<String> = (0..3)
        .map(|index| Network::addr(index, GOSSIP_PORT).to_string())
        .collect();
    // b has one runner, so work sent to b spills over to c; c's executor reads what
    // clients uploaded to b through b's executor (their shared tier 2).
    let mut nodes: Vec<Node> = Vec::new();
    for (index, (id, runners)) in IDS.iter().zip([2, 1, 2]).enumerate() {
        let mut spec = network.node_spec(index, id, dir.path(), runners, &join);
        if *id == "c" {
            let tier2 = format!("grpc://{}", nodes[1].executor.ready.grpc);
            spec.executor_args = vec!["--backing-cache".into(), tier2];
        }
        nodes.push(Node::start(spec).await);
    }
    for index in 0..3 {
        wait_state(&network, index, &IDS, "alive", Duration::from_secs(30)).await;
    }
    let owner = execute_through(&network, 0, "before", 0).await;
    assert!(IDS.contains(&owner.as_str()), "{owner}");

    // Unplug a.
    network.set_link(0, false);
    let cut = Instant::now();
    wait_state(&network, 0, &["b", "c"], "down", Duration::from_secs(30)).await;
    for index in [1, 2] {
        wait_state(&network, index, &["a"], "down", Duration::from_secs(30)).await;
        wait_state(
            &network,
            index,
            &["b", "c"],
            "alive",
            Duration::from_secs(5),
        )
        .await;
    }
    eprintln!(
        "partition: both sides saw the other down {:?} after the cut",
        cut.elapsed()
    );
    // Each side serves on its own: a runs its work itself, b and c among themselves
    // (a burst at b, which has one runner, spills over to c).
    assert_eq!(execute_through(&network, 0, "alone-1", 0).await, "a");
    assert_eq!(execute_through(&network, 0, "alone-2", 0).await, "a");
    assert_eq!(execute_through(&network, 2, "together-c", 0).await, "c");
    let burst = (0..3).map(|n| execute_through(&network, 1, "together-b", n));
    let owners = futures::future::join_all(burst).await;
    assert!(owners.iter().all(|o| o == "b" || o == "c"), "{owners:?}");
    assert!(owners.iter().any(|o| o == "c"), "{owners:?}");

    // Plug a back: one cluster again, as every node reports it, within 10 s.
    network.set_link(0, true);
    let healed = Instant::now();
    let limit = Duration::from_secs(10);
    for index in 0..3 {
        wait_one_cluster(&network, index, limit.saturating_sub(healed.elapsed())).await;
    }
    let took = healed.elapsed();
    assert!(took < limit, "healing took {took:?}");
    eprintln!("partition: one cluster again {took:?} after the cable was plugged back");
    // And the healed cluster serves.
    let owner = execute_through(&network, 0, "after", 0).await;
    assert!(IDS.contains(&owner.as_str()), "{owner}");
    drop(nodes);
}
