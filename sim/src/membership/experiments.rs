//! The membership experiments of the report, each a function of a cluster config:
//! how fast a crashed node is declared down everywhere, how often live nodes are
//! suspected or declared down on a lossy network, and how fast a load change spreads.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use remesh_proxy::load::LoadRecord;

use super::cluster::{Cluster, ClusterConfig};
use super::node::{Observed, node_id};
use crate::clock::{MILLIS, Micros, SECONDS, seconds};

/// The time by which `fraction` of `times` had happened (`None` entries never did),
/// or `None` when fewer than that many ever did.
pub fn time_to_fraction(times: &[Option<f64>], fraction: f64) -> Option<f64> {
    let needed = ((fraction * times.len() as f64).ceil() as usize).max(1);
    let mut done: Vec<f64> = times.iter().flatten().copied().collect();
    if done.len() < needed {
        return None;
    }
    done.sort_by(f64::total_cmp);
    Some(done[needed - 1])
}

/// One crash, in seconds after it.
#[derive(Debug, Clone)]
pub struct Detection {
    pub victim: usize,
    /// The first failed probe of the victim, anywhere.
    pub first_suspect: Option<f64>,
    /// 99% of live nodes have declared it down.
    pub down_99: Option<f64>,
    /// Every live node has.
    pub down_all: Option<f64>,
}

/// Crashes `crashes` distinct random nodes of a running cluster one after the other and
/// times how long the survivors take to declare each one down. Each crash is watched
/// until every survivor has declared it (then one more second, so stragglers settle) or
/// for at most `max_window`.
pub fn detection(
    cluster: &mut Cluster,
    crashes: usize,
    max_window: Micros,
    seed: u64,
) -> Vec<Detection> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xdead);
    let mut results = Vec::new();
    for _ in 0..crashes.min(cluster.len().saturating_sub(2)) {
        let alive: Vec<_> = cluster.alive().collect();
        let victim = alive[rng.random_range(0..alive.len())];
        let start = cluster.now();
        let log_start = cluster.log.len();
        cluster.crash(victim);
        let survivors = alive.len() - 1;
        let mut declared = vec![false; cluster.len()];
        let mut count = 0;
        let mut scanned = log_start;
        while cluster.now() < start + max_window && count < survivors {
            cluster.run_until(cluster.now() + 250 * MILLIS);
            for entry in &cluster.log[scanned..] {
                if matches!(entry.what, Observed::Down(_))
                    && entry.subject() == victim
                    && !declared[entry.observer]
                {
                    declared[entry.observer] = true;
                    count += 1;
                }
            }
            scanned = cluster.log.len();
        }
        cluster.run_until(cluster.now() + SECONDS);
        let since = |at: Micros| seconds(at - start);
        let entries = &cluster.log[log_start..];
        let first_suspect = entries
            .iter()
            .find(|e| matches!(e.what, Observed::ProbeFailed(_)) && e.subject() == victim)
            .map(|e| since(e.at));
        let downs: Vec<Option<f64>> = cluster
            .alive()
            .map(|observer| {
                entries
                    .iter()
                    .find(|e| {
                        e.observer == observer
                            && matches!(e.what, Observed::Down(_))
                            && e.subject() == victim
                    })
                    .map(|e| since(e.at))
            })
            .collect();
        results.push(Detection {
            victim,
            first_suspect,
            down_99: time_to_fraction(&downs, 0.99),
            down_all: time_to_fraction(&downs, 1.0),
        });
    }
    results
}

/// A long run where nobody crashes.
#[derive(Debug, Clone)]
pub struct QuietRun {
    pub seconds: f64,
    /// Failed probes (direct and indirect) of a live member: a suspicion raised.
    pub false_suspicions: usize,
    /// A live member declared down by some node.
    pub false_downs: usize,
    /// A live member that learnt it had been declared down (and rejoined renewed).
    pub defunct: usize,
    pub bytes_per_node_second: f64,
    pub packets_per_node_second: f64,
}

/// Runs `duration` after a `warmup` with nobody crashing, on `config`'s network.
pub fn quiet_run(config: &ClusterConfig, warmup: Micros, duration: Micros) -> QuietRun {
    let mut cluster = Cluster::new(config);
    cluster.run_until(warmup);
    let (log_start, bytes, packets) = (cluster.log.len(), cluster.bytes_sent, cluster.packets_sent);
    cluster.run_until(warmup + duration);
    let entries = &cluster.log[log_start..];
    let count = |pick: fn(&Observed) -> bool| entries.iter().filter(|e| pick(&e.what)).count();
    let node_seconds = cluster.len() as f64 * seconds(duration);
    QuietRun {
        seconds: seconds(duration),
        false_suspicions: count(|o| matches!(o, Observed::ProbeFailed(_))),
        false_downs: count(|o| matches!(o, Observed::Down(_))),
        defunct: count(|o| matches!(o, Observed::Defunct)),
        bytes_per_node_second: (cluster.bytes_sent - bytes) as f64 / node_seconds,
        packets_per_node_second: (cluster.packets_sent - packets) as f64 / node_seconds,
    }
}

/// One load change, in seconds after it happened on its origin.
#[derive(Debug, Clone)]
pub struct Spread {
    pub reach_99: Option<f64>,
    pub reach_all: Option<f64>,
    /// When each other live node first held the new record (or a newer one).
    pub delays: Vec<Option<f64>>,
}

/// Load changes and the gossip traffic of the run they happened in.
#[derive(Debug, Clone)]
pub struct PropagationRun {
    pub spreads: Vec<Spread>,
    pub bytes_per_node_second: f64,
    pub packets_per_node_second: f64,
}

/// Changes the load of a random node of a running cluster `changes` times, `spacing`
/// apart: idle to full or back, a change the proxy sends at once.
pub fn propagation(
    cluster: &mut Cluster,
    changes: usize,
    spacing: Micros,
    seed: u64,
) -> PropagationRun {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x10ad);
    let begin = cluster.now();
    let (bytes, packets) = (cluster.bytes_sent, cluster.packets_sent);
    let mut spreads = Vec::new();
    for _ in 0..changes {
        let origin = rng.random_range(0..cluster.len());
        let pacer = &cluster.nodes[origin].pacer;
        let before = pacer.local_load;
        let load = LoadRecord {
            executing: if before.executing == 0 {
                before.max_concurrency
            } else {
                0
            },
            ..before
        };
        // The next record this node sends carries the change, whenever pacing allows.
        let version = pacer.version() + 1;
        {
            let mut receipts = cluster.receipts.borrow_mut();
            receipts.watch = Some((node_id(origin), version));
            receipts.reached.iter_mut().for_each(|r| *r = None);
        }
        let start = cluster.now();
        cluster.set_load(origin, load);
        cluster.run_until(start + spacing);
        let receipts = cluster.receipts.borrow();
        let delays: Vec<Option<f64>> = cluster
            .alive()
            .filter(|node| *node != origin)
            .map(|node| receipts.reached[node].map(|at| seconds(at - start)))
            .collect();
        spreads.push(Spread {
            reach_99: time_to_fraction(&delays, 0.99),
            reach_all: time_to_fraction(&delays, 1.0),
            delays,
        });
    }
    let node_seconds = cluster.len() as f64 * seconds(cluster.now() - begin);
    PropagationRun {
        spreads,
        bytes_per_node_second: (cluster.bytes_sent - bytes) as f64 / node_seconds,
        packets_per_node_second: (cluster.packets_sent - packets) as f64 / node_seconds,
    }
}

/// A warm-up long enough for every node to have heard every other's load (records go
/// out every second and reach 99% of 1,000 nodes within about one more).
pub const WARMUP: Micros = 5 * SECONDS;

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::net::NetworkModel;

    fn config(nodes: usize, loss: f64) -> ClusterConfig {
        ClusterConfig {
            nodes,
            foca: remesh_proxy::membership::task::foca_config(),
            net: NetworkModel::lan(loss),
            load_heartbeat: Duration::from_secs(1),
            max_concurrency: 4,
            seed: 42,
        }
    }

    #[test]
    fn fractions_need_enough_samples() {
        let times = [Some(1.0), Some(3.0), None, Some(2.0)];
        assert_eq!(time_to_fraction(&times, 0.5), Some(2.0));
        assert_eq!(time_to_fraction(&times, 0.75), Some(3.0));
        assert_eq!(time_to_fraction(&times, 1.0), None);
    }

    #[test]
    fn a_crashed_node_is_declared_down_by_every_survivor() {
        let config = config(10, 0.0);
        assert_eq!(
            config.foca.suspect_to_down_after,
            foca::Config::new_lan(NonZeroU32::new(10).unwrap()).suspect_to_down_after
        );
        let mut cluster = Cluster::new(&config);
        cluster.run_until(WARMUP);
        let results = detection(&mut cluster, 2, 20 * SECONDS, 1);
        assert_eq!(results.len(), 2);
        for result in results {
            let all = result.down_all.expect("every survivor declares the crash");
            // Suspicion alone lasts 4 s with these settings: faster would be a bug.
            assert!((4.0..12.0).contains(&all), "{result:?}");
            assert!(result.first_suspect.unwrap() < all);
        }
    }

    #[test]
    fn runs_are_a_function_of_the_seed() {
        let run = |seed| {
            let mut config = config(10, 0.05);
            config.seed = seed;
            let run = quiet_run(&config, WARMUP, 10 * SECONDS);
            (run.bytes_per_node_second, run.false_suspicions)
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3).0, run(4).0);
    }

    #[test]
    fn a_quiet_lossless_cluster_raises_no_suspicion() {
        let run = quiet_run(&config(10, 0.0), WARMUP, 30 * SECONDS);
        assert_eq!(run.false_suspicions, 0);
        assert_eq!(run.false_downs, 0);
        assert!(run.bytes_per_node_second > 100.0, "{run:?}");
    }

    #[test]
    fn a_load_change_reaches_every_node_quickly() {
        let mut cluster = Cluster::new(&config(10, 0.0));
        cluster.run_until(WARMUP);
        let run = propagation(&mut cluster, 3, 3 * SECONDS, 1);
        assert!(run.bytes_per_node_second > 100.0, "{run:?}");
        for spread in run.spreads {
            assert_eq!(spread.delays.len(), 9);
            // Most hear it within a few gossip rounds; a node the record's few
            // transmissions missed hears it with the next heartbeat, a second later.
            let all = spread.reach_all.expect("every node hears the change");
            assert!(all < 1.5, "{spread:?}");
            let median = time_to_fraction(&spread.delays, 0.5).unwrap();
            assert!(median < 0.3, "{spread:?}");
        }
    }

    #[test]
    fn a_partition_is_detected_and_heals() {
        let config = config(10, 0.0);
        let mut cluster = Cluster::new(&config);
        cluster.run_until(WARMUP);
        cluster
            .net
            .partition((0..10).map(|i| u8::from(i >= 5)).collect());
        cluster.run_until(WARMUP + 30 * SECONDS);
        // Each side has declared the other down.
        assert!(!cluster.considers_alive(0, 9));
        assert!(!cluster.considers_alive(9, 0));
        assert!(cluster.considers_alive(0, 4));
        cluster.net.heal();
        // foca's periodic announces (every 30 s; to down members every 65 s) rejoin them.
        cluster.run_until(WARMUP + 200 * SECONDS);
        for a in 0..10 {
            for b in (0..10).filter(|b| *b != a) {
                assert!(
                    cluster.considers_alive(a, b),
                    "{a} still thinks {b} is down"
                );
            }
        }
    }
}
