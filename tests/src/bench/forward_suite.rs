//! Execute of a no-op action run by the node the client talks to, side by side with
//! the same Execute forwarded to a peer, in one two-node cluster.
//!
//! The cluster: node `peer` (an executor with ample runners and a proxy in front) and
//! node `entry` (a proxy in front of its own executor). The entry proxy's load
//! endpoint is a socket the benchmark holds open and never answers, so to the balancer
//! the entry executor is down: the entry node advertises zero capacity and forwards
//! every Execute to `peer` (the documented executor-down rule), while its own CAS
//! still serves. Both paths end at the very same executor, so the difference is the
//! extra proxy hop: client → entry proxy → peer proxy → executor, against
//! client → peer proxy → executor. The actions are uploaded to the peer's executor
//! directly, so neither path pays for a read-through of the action.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;

use super::stats::{Series, Table, ratio};
use super::workloads::{connect_all, execute_round, upload_noop_actions};
use super::{Limits, PROXY_LOG_FILTER, rotation};
use crate::ExecutorOptions;
use crate::proxy_process::{ProxyOptions, ProxyProcess};
use crate::reapi_client::Clients;

const CONCURRENCIES: [usize; 2] = [1, 16];

/// The peer's runners: far above the benchmark's concurrency, so that the entry
/// node's own count of what it forwarded between two load records never makes the
/// peer look full (which would send the work back to the entry node).
const PEER_RUNNERS: usize = 1_000;

fn limits(concurrency: usize) -> Limits {
    if concurrency == 1 {
        Limits::new(600, 4)
    } else {
        Limits::new(4_000, 6)
    }
}

struct Path {
    name: &'static str,
    connections: Vec<Clients>,
    /// Per concurrency: actions/s, p50 ms, p99 ms.
    series: Vec<[Series; 3]>,
    completed: usize,
}

pub async fn run(runs: usize) -> anyhow::Result<String> {
    let silent_load = std::net::TcpListener::bind("127.0.0.1:0")?;
    let entry_executor = ExecutorOptions::new().spawn()?;
    let peer_executor = ExecutorOptions::new()
        .arg("--runners")
        .arg(PEER_RUNNERS.to_string())
        .spawn()?;
    let peer = ProxyProcess::spawn(&ProxyOptions {
        node_id: "peer".into(),
        backend: peer_executor.grpc_addr(),
        backend_load: peer_executor.ready_line().load,
        join: None,
        extra_args: Vec::new(),
        binary: None,
        log_filter: Some(PROXY_LOG_FILTER.into()),
    })?;
    let entry = ProxyProcess::spawn(&ProxyOptions {
        node_id: "entry".into(),
        backend: entry_executor.grpc_addr(),
        backend_load: silent_load.local_addr()?,
        join: Some(peer.ready_line().gossip),
        extra_args: Vec::new(),
        binary: None,
        log_filter: Some(PROXY_LOG_FILTER.into()),
    })?;
    let entry_check = &entry;
    tokio::task::block_in_place(|| entry_check.wait_for_peers(1, Duration::from_secs(60)))?;
    eprintln!(
        "forward suite: entry proxy pid {} at {}, peer proxy pid {} at {}, executors pid {} \
         (entry) and {} (peer)",
        entry.pid(),
        entry.grpc_addr(),
        peer.pid(),
        peer.grpc_addr(),
        entry_executor.pid(),
        peer_executor.pid()
    );

    let uploads = Clients::connect(peer_executor.grpc_addr(), "main").await?;
    let mut paths = vec![
        Path {
            name: "local (client → proxy → executor)",
            connections: connect_all(peer.grpc_addr(), "main").await?,
            series: CONCURRENCIES.iter().map(|_| Default::default()).collect(),
            completed: 0,
        },
        Path {
            name: "forwarded (client → entry proxy → peer proxy → executor)",
            connections: connect_all(entry.grpc_addr(), "main").await?,
            series: CONCURRENCIES.iter().map(|_| Default::default()).collect(),
            completed: 0,
        },
    ];
    // Warm-up: connections, the peer channel, the executor's first process spawns.
    for (index, path) in paths.iter().enumerate() {
        let actions = upload_noop_actions(&uploads, &format!("warm-{index}"), 200).await?;
        execute_round(&path.connections, actions, 8, Limits::new(200, 5)).await?;
    }
    let accepted_before = entry.counter_sum("remesh_proxy_forwards_total", "accepted")?;

    for round in 0..runs {
        for (slot, &concurrency) in CONCURRENCIES.iter().enumerate() {
            for index in rotation(paths.len(), round) {
                let path = &mut paths[index];
                let salt = format!("fwd-r{round}-c{concurrency}-p{index}");
                let bounds = limits(concurrency);
                let actions = upload_noop_actions(&uploads, &salt, bounds.count).await?;
                let result = execute_round(&path.connections, actions, concurrency, bounds)
                    .await
                    .map_err(|error| error.context(path.name))?;
                path.completed += result.completed;
                let [rate, p50, p99] = &mut path.series[slot];
                rate.push(result.rate());
                p50.push(result.percentile_ms(50.0));
                p99.push(result.percentile_ms(99.0));
                eprintln!(
                    "    {} c={concurrency}: {:.0} actions/s, p50 {:.2} ms, p99 {:.2} ms",
                    path.name,
                    result.rate(),
                    result.percentile_ms(50.0),
                    result.percentile_ms(99.0)
                );
            }
        }
        eprintln!("  Execute round {} of {runs} done", round + 1);
    }

    // Every measured Execute through the entry node must have been forwarded: else
    // the "forwarded" column would mix in local runs.
    let accepted = entry.counter_sum("remesh_proxy_forwards_total", "accepted")? - accepted_before;
    let forwarded = paths[1].completed;
    if accepted < forwarded as f64 {
        bail!("only {accepted} of {forwarded} Executes sent to the entry node were forwarded");
    }
    // Dropping the handles stops every process by pid; a slow exit must not cost the
    // figures already measured.
    Ok(render(&paths, runs, forwarded))
}

fn render(paths: &[Path], runs: usize, forwarded: usize) -> String {
    let mut header = vec!["Execute `/bin/true`, skip_cache_lookup"];
    header.extend(paths.iter().map(|p| p.name));
    header.push("forwarded ÷ local");
    let mut table = Table::new(&header);
    for (slot, concurrency) in CONCURRENCIES.iter().enumerate() {
        for (quantity, unit, decimals) in [(0, "actions/s", 0), (1, "p50 ms", 2), (2, "p99 ms", 2)]
        {
            let mut cells = vec![format!("concurrency {concurrency}: {unit}")];
            cells.extend(
                paths
                    .iter()
                    .map(|p| p.series[slot][quantity].summary(decimals)),
            );
            cells.push(ratio(
                paths[1].series[slot][quantity].median(),
                paths[0].series[slot][quantity].median(),
            ));
            table.row(cells);
        }
    }
    let mut text = table.render();
    let _ = write!(
        text,
        "\nMedian (min – max) of {runs} interleaved rounds; both paths end at the same \
         executor ({PEER_RUNNERS} runners); all {forwarded} measured Executes sent to the \
         entry node were forwarded (its forwards counter says so).\n"
    );
    text
}
