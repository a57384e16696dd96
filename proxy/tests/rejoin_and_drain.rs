//! Real processes on loopback: three nodes (executor + proxy each, every node joining
//! every other's gossip address, as a headless-service seed list does; a's executor is
//! b's and c's backing cache, the cluster's shared tier 2, as in `remesh-proxy up`).
//!
//! - A node killed with SIGKILL is marked down within 10 s; restarted under the same
//!   node id and gossip address (a new generation), it is alive on every node's
//!   `/cluster` within 10 s and takes forwarded work again.
//! - SIGTERM to a node's proxy: it leaves at once (peers see it down well before a
//!   suspicion timeout could), new work goes to the others, and the Execute it was
//!   serving at that moment still completes OK.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::{Executed, execute, probe};
use support::node::{Node, NodeSpec, start_executor, start_proxy};
use support::processes::{EXECUTIONS, metric};

/// A SIGKILLed node is declared down after a probe fails and a suspicion timeout
/// (with foca's LAN settings, at least 5 s); a node that leaves must be heard sooner.
const LEAVE_HEARD_WITHIN: Duration = Duration::from_secs(4);

async fn start_cluster(dir: &std::path::Path, runners: [usize; 3]) -> Vec<Node> {
    let mut specs: Vec<NodeSpec> = ["a", "b", "c"]
        .iter()
        .zip(runners)
        .map(|(id, runners)| NodeSpec::loopback(id, dir, runners))
        .collect();
    let join: Vec<String> = specs.iter().map(|s| s.gossip_listen.to_string()).collect();
    let mut nodes: Vec<Node> = Vec::new();
    for spec in &mut specs {
        spec.join = join.clone();
        if let Some(first) = nodes.first() {
            let tier2 = format!("grpc://{}", first.executor.ready.grpc);
            spec.executor_args = vec!["--backing-cache".into(), tier2];
        }
        nodes.push(Node::start(spec.clone()).await);
    }
    for node in &nodes {
        for id in ["a", "b", "c"] {
            support::wait_member_state(node.admin(), id, "alive", Duration::from_secs(30)).await;
        }
    }
    nodes
}

async fn generation(admin: std::net::SocketAddr, node: &str) -> u64 {
    let report = support::cluster(admin).await.expect("/cluster");
    report
        .members
        .iter()
        .find(|m| m.node_id == node && m.state == "alive")
        .map(|m| m.generation)
        .unwrap_or_else(|| panic!("{node} is not alive at {admin}: {report:?}"))
}

/// Runs `count` actions of `seconds` at once through `node`; their owners.
async fn spread(node: &Node, tag: &str, count: usize, seconds: f64) -> Vec<String> {
    let grpc = node.grpc();
    let shell = format!("sleep {seconds}");
    let runs = (0..count).map(|n| {
        let salt = format!("{tag}-{n}");
        let shell = shell.clone();
        async move { execute(None, grpc, &salt, &shell).await }
    });
    futures::future::join_all(runs)
        .await
        .iter()
        .map(|executed| executed.owner().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_marked_down_and_rejoins_under_a_new_generation() {
    kill_and_restart_b(false).await;
}

/// As a rescheduled pod does: same node id, new address. Its old entry stays down in
/// every member list (foca keeps down members for a day); routing must still find the
/// live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_restarted_at_a_new_address_takes_work_again() {
    kill_and_restart_b(true).await;
}

async fn kill_and_restart_b(new_address: bool) {
    let dir = tempfile::tempdir().unwrap();
    // a has one runner, so a burst sent to a spills over to b and c.
    let mut nodes = start_cluster(dir.path(), [1, 2, 2]).await;
    let old_generation = generation(nodes[0].admin(), "b").await;

    nodes[1].proxy.signal(Signal::SIGKILL);
    nodes[1].executor.signal(Signal::SIGKILL);
    let killed = Instant::now();
    for index in [0, 2] {
        let left = Duration::from_secs(10).saturating_sub(killed.elapsed());
        support::wait_member_state(nodes[index].admin(), "b", "down", left).await;
    }
    nodes[1].proxy.wait(Duration::from_secs(10)).await;
    nodes[1].executor.wait(Duration::from_secs(10)).await;

    // Same node id and data; a new process, at the same gossip address or a new one.
    let mut spec = nodes[1].spec.clone();
    if new_address {
        spec.gossip_listen = NodeSpec::loopback("b", dir.path(), 1).gossip_listen;
    }
    let executor = start_executor(&spec).await;
    let proxy = start_proxy(&spec, &executor.ready).await;
    nodes[1].executor = executor;
    nodes[1].proxy = proxy;
    let restarted = Instant::now();
    for node in &nodes {
        for id in ["a", "b", "c"] {
            let left = Duration::from_secs(10).saturating_sub(restarted.elapsed());
            support::wait_member_state(node.admin(), id, "alive", left).await;
        }
    }
    for index in [0, 2] {
        let seen = generation(nodes[index].admin(), "b").await;
        assert!(seen > old_generation, "{seen} after {old_generation}");
    }

    // Work again reaches the restarted b: a burst at a (one runner) spills over. A
    // proxy gossips a load of no capacity until its executor's first load report;
    // a user would wait for /cluster to show b's runners too.
    support::eventually(
        "a sees the restarted b's runners",
        Duration::from_secs(10),
        || async {
            let report = support::cluster(nodes[0].admin()).await?;
            report
                .members
                .iter()
                .any(|m| {
                    m.node_id == "b"
                        && m.state == "alive"
                        && m.load.is_some_and(|load| load.max_concurrency > 0)
                })
                .then_some(())
        },
    )
    .await;
    let owners = spread(&nodes[0], "after-restart", 5, 1.0).await;
    let at_b = owners.iter().filter(|owner| *owner == "b").count();
    assert!(at_b > 0, "{owners:?}");
    let ran = metric(nodes[1].executor.ready.metrics, EXECUTIONS).await;
    assert_eq!(ran, at_b as f64, "the restarted executor's runs");

    // Operation calls about b's work reach the new b from every node.
    // (b, idle, keeps work sent to it; completed operations stay answerable.)
    let at_b = execute(None, nodes[1].grpc(), "wait-target", "echo done").await;
    assert_eq!(at_b.owner(), "b", "{at_b:?}");
    for node in [&nodes[0], &nodes[2]] {
        let waited = probe(None, &["wait", &node.grpc().to_string(), &at_b.name])
            .await
            .unwrap_or_else(|error| panic!("WaitExecution at {}: {error}", node.id()));
        let waited: Executed = serde_json::from_str(waited.trim()).unwrap();
        assert_eq!(waited.name, at_b.name);
        assert_eq!((waited.status_code, waited.exit_code), (0, Some(0)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_without_failing_its_running_execute() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), [1, 2, 4]).await;
    let c_grpc = nodes[2].grpc();

    // c, idle, keeps this one itself (local wins ties); it runs for 4 s.
    let running = tokio::spawn(async move {
        probe(None, &["execute", &c_grpc.to_string(), "held", "sleep 4"]).await
    });
    let c_metrics = nodes[2].executor.ready.metrics;
    support::eventually(
        "c's executor to run the held action",
        Duration::from_secs(20),
        || async {
            (metric(c_metrics, "remesh_executor_actions_executing").await > 0.0).then_some(())
        },
    )
    .await;

    nodes[2].proxy.signal(Signal::SIGTERM);
    let terminated = Instant::now();
    // A graceful leave is heard at once; a vanished node would take a suspicion
    // timeout (several seconds) to be declared down.
    for index in [0, 1] {
        support::eventually("c to be seen leaving", Duration::from_secs(3), || async {
            let report = support::cluster(nodes[index].admin()).await?;
            let c = report.members.iter().find(|m| m.node_id == "c")?;
            (c.state == "down" || c.leaving).then_some(())
        })
        .await;
    }
    let heard = terminated.elapsed();

    // New work goes to a and b only, though c has the most runners.
    let owners = spread(&nodes[0], "after-sigterm", 3, 0.5).await;
    assert!(
        owners.iter().all(|owner| owner == "a" || owner == "b"),
        "{owners:?}"
    );

    // The Execute c was serving completes OK, within the proxy's grace period.
    let output = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the held Execute did not finish within 15 s of SIGTERM")
        .unwrap()
        .unwrap_or_else(|error| panic!("the held Execute failed: {error}"));
    let held: Executed = serde_json::from_str(output.trim()).unwrap();
    assert_eq!(held.owner(), "c", "{held:?}");
    assert_eq!((held.status_code, held.exit_code), (0, Some(0)), "{held:?}");
    let status = nodes[2].proxy.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "c's proxy exited with {status}");
    assert!(heard < LEAVE_HEARD_WITHIN, "{heard:?}");
}
