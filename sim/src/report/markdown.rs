//! `simulation.md`: tables and verdicts computed from the runs, around fixed text
//! that explains the method and its limits.

use std::fmt::Write;

use super::membership_runs::{MembershipRow, QUIET_LOSS, Settings};
use crate::balance::{ScenarioResult, policy_name};

pub struct Inputs<'a> {
    pub membership: &'a [MembershipRow],
    pub balance: &'a [Vec<ScenarioResult>],
    pub gossip_samples: usize,
    pub quick: bool,
    pub seed: u64,
}

fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "not all".to_owned(), |v| format!("{v:.2}"))
}

/// Makespan over the ideal's, per seed, for one policy of one scenario.
pub fn ratios(runs: &[ScenarioResult], policy: usize) -> Vec<f64> {
    runs.iter()
        .map(|r| r.policies[policy].makespan_s / r.ideal_makespan_s)
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::MIN, f64::max)
}

pub fn render(inputs: &Inputs<'_>) -> String {
    let mut md = String::new();
    let _ = write!(md, "{}", HEADER);
    if inputs.quick {
        md.push_str("\n> **Quick run** (`--quick`): fewer repetitions and shorter runs than the committed report.\n");
    }
    let _ = writeln!(md, "\nSeed: {}.\n", inputs.seed);
    membership(&mut md, inputs);
    balance(&mut md, inputs);
    md.push_str(LIMITS);
    md
}

fn membership(md: &mut String, inputs: &Inputs<'_>) {
    md.push_str(MEMBERSHIP_METHOD);
    md.push_str("\n| N | foca settings | crashes | all nodes: p50 / p99 (s) | 99% of nodes: p50 / p99 (s) | first failed probe, median (s) | load change to 99%: p50 / p99 (s) | gossip bytes / node / s | packets / node / s |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in inputs.membership {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} / {} | {} | {} / {} | {:.0} | {:.1} |",
            row.nodes,
            row.settings.name(),
            row.detections.len(),
            secs(row.detection_all(0.5)),
            secs(row.detection_all(0.99)),
            secs(row.detection_99(0.5)),
            secs(row.detection_99(0.99)),
            secs(row.first_suspect_median()),
            secs(row.spread_99(0.5)),
            secs(row.spread_99(0.99)),
            row.propagation.bytes_per_node_second,
            row.propagation.packets_per_node_second,
        );
    }
    let _ = writeln!(
        md,
        "\nFalse positives: every node live, {:.0}% packet loss on every packet.\n",
        QUIET_LOSS * 100.0
    );
    md.push_str("| N | foca settings | simulated time (s) | suspicions of live nodes (failed probes) | live nodes declared down | nodes told they were down |\n|---|---|---|---|---|---|\n");
    for row in inputs.membership {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} |",
            row.nodes,
            row.settings.name(),
            row.quiet.seconds,
            row.quiet.false_suspicions,
            row.quiet.false_downs,
            row.quiet.defunct,
        );
    }
    md.push_str("\n### Verdicts\n\n");
    for settings in [Settings::Proxy, Settings::LanForSize, Settings::Tuned] {
        let Some(row) = inputs
            .membership
            .iter()
            .find(|r| r.nodes == 1000 && r.settings == settings)
        else {
            continue;
        };
        let p99 = row.detection_all(0.99);
        let met = p99.is_some_and(|v| v <= 5.0);
        let _ = writeln!(
            md,
            "- Detection p99 ≤ 5 s at 1,000 nodes with **{}**: {} (every live node within {} s; {} crashes).",
            settings.name(),
            if met { "**met**" } else { "**missed**" },
            secs(p99),
            row.detections.len(),
        );
    }
    for settings in [Settings::Proxy, Settings::LanForSize, Settings::Tuned] {
        let rows: Vec<_> = inputs
            .membership
            .iter()
            .filter(|r| r.settings == settings)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let downs: usize = rows.iter().map(|r| r.quiet.false_downs).sum();
        let sizes: Vec<String> = rows
            .iter()
            .map(|r| format!("N={} ({:.0} s)", r.nodes, r.quiet.seconds))
            .collect();
        let _ = writeln!(
            md,
            "- No live node declared down at {:.0}% loss with **{}**: {} ({} false downs over {}).",
            QUIET_LOSS * 100.0,
            settings.name(),
            if downs == 0 { "**met**" } else { "**missed**" },
            downs,
            sizes.join(", "),
        );
    }
    md.push_str("\n### foca settings compared (at N = 1,000)\n\n| settings | probe period | probe RTT | suspect → down | max transmissions | periodic gossip |\n|---|---|---|---|---|---|\n");
    for settings in [Settings::Proxy, Settings::LanForSize, Settings::Tuned] {
        let c = settings.config(1000);
        let gossip = c.periodic_gossip.as_ref().map_or_else(
            || "off".to_owned(),
            |p| format!("{:?} × {}", p.frequency, p.num_members),
        );
        let _ = writeln!(
            md,
            "| {} | {:?} | {:?} | {:?} | {} | {} |",
            settings.name(),
            c.probe_period,
            c.probe_rtt,
            c.suspect_to_down_after,
            c.max_transmissions,
            gossip
        );
    }
    md.push_str("\n![Failure detection](sim/detection.png)\n\n![Load record propagation](sim/propagation.png)\n");
}

fn balance(md: &mut String, inputs: &Inputs<'_>) {
    let _ = write!(md, "{}", BALANCE_METHOD);
    let _ = writeln!(
        md,
        "Gossip delay model: {} measured delays (one per node and load change) from the N = 100 run with the proxy's settings.\n",
        inputs.gossip_samples
    );
    for runs in inputs.balance {
        let Some(first) = runs.first() else { continue };
        let _ = writeln!(
            md,
            "### {}\n\n{} actions per run, {} seed(s). Ideal (central list scheduler): makespan {:.1} s (mean), p99 queue wait {:.2} s; no scheduler can finish before {:.1} s (lower bound).\n",
            first.name,
            first.actions,
            runs.len(),
            mean(&runs.iter().map(|r| r.ideal_makespan_s).collect::<Vec<_>>()),
            mean(&runs.iter().map(|r| r.ideal_p99_wait_s).collect::<Vec<_>>()),
            mean(&runs.iter().map(|r| r.lower_bound_s).collect::<Vec<_>>()),
        );
        md.push_str("| policy | makespan (s) | × ideal, mean (worst) | p99 queue wait (s) | forwards / action | repeat on a node that ran it |\n|---|---|---|---|---|---|\n");
        for (index, policy) in first.policies.iter().enumerate() {
            let pick = |f: fn(&crate::balance::PolicyResult) -> f64| {
                mean(
                    &runs
                        .iter()
                        .map(|r| f(&r.policies[index]))
                        .collect::<Vec<_>>(),
                )
            };
            let ratio = ratios(runs, index);
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.3} ({:.3}) | {:.2} | {:.3} | {:.1}% |",
                policy_name(policy.policy),
                pick(|p| p.makespan_s),
                mean(&ratio),
                max(&ratio),
                pick(|p| p.p99_wait_s),
                pick(|p| p.forwards_per_action),
                100.0 * pick(|p| p.cache_hit_rate),
            );
        }
        md.push('\n');
    }
    md.push_str("### Verdict\n\n");
    // Every workload is skewed (one entry node, or Zipf over nodes).
    for runs in inputs.balance.iter().filter(|r| !r.is_empty()) {
        let name = &runs[0].name;
        let best = [1usize, 2]
            .into_iter()
            .map(|i| {
                (
                    policy_name(runs[0].policies[i].policy),
                    max(&ratios(runs, i)),
                )
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((policy, worst)) = best {
            let _ = writeln!(
                md,
                "- p2c or affinity makespan ≤ 1.1 × ideal under skew, *{}*: {} (best: {} at {:.3} × ideal, worst seed).",
                name,
                if worst <= 1.1 {
                    "**met**"
                } else {
                    "**missed**"
                },
                policy,
                worst
            );
        }
        let what_if = max(&ratios(runs, 3));
        let _ = writeln!(
            md,
            "  - {}: {:.3} × ideal (worst seed); least-loaded {:.3}, p2c {:.3}, affinity {:.3}.",
            policy_name(runs[0].policies[3].policy),
            what_if,
            max(&ratios(runs, 0)),
            max(&ratios(runs, 1)),
            max(&ratios(runs, 2)),
        );
    }
    md.push_str("\n![Makespan against the ideal](sim/balance_makespan.png)\n\n![Queue waits](sim/balance_waits.png)\n");
}

const HEADER: &str = "# Simulation: membership and balancing from 10 to 1,000 nodes

This report is generated; do not edit it by hand. Regenerate it (and the plots in
`docs/sim/`) with

```sh
cargo run --release -p remesh-sim -- report --out docs
```

`remesh-sim` is a discrete-event simulator that drives the proxy's own code, not a
model of it:

- membership: `foca::Foca` with the proxy's `MemberIdentity`, its `LoadBook` broadcast
  handler and `LoadBroadcast` records (postcard-encoded, newest per origin wins), and its
  foca settings (`membership::task::foca_config()`); every datagram, timer and
  notification foca produces goes through the simulated network and clock;
- load records: sent under the proxy's pacing rule (heartbeat every second, significant
  changes at once but at most every 200 ms). That rule lives inside the membership task's
  I/O loop, so the simulator mirrors it (`sim/src/pacing.rs`) and reuses
  `LoadRecord::differs_significantly`;
- balancing: the proxy's `PeerSelector`s from `selector_for` (`least-loaded`, `p2c`,
  `affinity` with load factor 1.25), fed the snapshot `Mesh::snapshot` builds: exact local
  load, each peer's last received record plus this node's own unfinished forwards since
  that record.

Everything is deterministic: simulated microseconds, seeded generators, no wall clock.
";

const MEMBERSHIP_METHOD: &str = "
## 1. Membership

Network: one-way latency log-normal with a 300 µs median (p99 ≈ 1.2 ms), independent
loss per packet. Every member starts knowing every other (a completed join) and runs 5 s
before measuring. Crashes are silent (no leave), one at a time, at random nodes; each is
watched until every survivor has declared it down, then the next comes. Times are from
the crash. *All nodes* is the moment the last survivor's foca emitted `MemberDown`; *99%*
the moment 99% of survivors had. p50 and p99 are taken over the crashes (with a handful
of crashes, p99 is the worst one). A load change flips a random node from idle to full
(or back), which the proxy sends at once; the time is until 99% of the other nodes' proxy
`LoadBook`s hold that record or a newer one. Gossip bytes are foca's payloads (add 40
bytes of AEAD and 28 of UDP/IPv4 per packet on the wire), measured without loss.
";

const BALANCE_METHOD: &str = "
## 2. Balancing

100 nodes: half with 1 runner, half with 8 (450 runners). Each node is an executor with
a FIFO queue; each node's proxy routes the actions that enter it with the policy under
test, on its own view of the others' loads. A node's load record reaches each other node
after a delay drawn from the foca measurements above (N = 100, the proxy's settings); a
forwarded Execute crosses one network hop. Actions arrive as a Poisson process at the
stated multiple of the cluster's capacity (×2: a burst that queues work, then drains;
0.9: steady); the entry node is node 0 (one runner) or Zipf-distributed (exponent 1)
over the nodes in random order; durations are log-normal (median 2 s, σ = 1,
mean 3.3 s, p99 ≈ 20 s); 30% of actions repeat an earlier digest. *Ideal* is a central
list scheduler that sees every runner at every moment and puts each arriving action on
the runner that frees first. *Repeat on a node that ran it* is, over actions repeating
an earlier digest, the fraction that started on a node that had started that digest
before (a warm tier-1 cache, or a merge with the in-flight run).

Besides the proxy's three policies, one *what-if* is simulated (`sim/src/balance/what_if.rs`,
not a proxy policy): always the lowest utilisation, whether or not that node is full.
It isolates one rule the proxy's `least-loaded` and `p2c` share: when no peer looks
like it has spare capacity, the action stays local.
";

const LIMITS: &str = "
## What the model leaves out

- Foca runs unchanged, but packets are not sealed (the AEAD adds a fixed 40 bytes and
  no behaviour) and there is no DNS re-resolution; members never restart.
- In the balancing runs, load records travel with delays measured on the foca cluster,
  not through foca itself; peers never refuse or fail a forward; identical in-flight
  actions are not merged (so affinity's real benefit is larger than its hit rate shows
  for runs, and its cost in queueing is what the table shows); a cache hit does not
  shorten an action.
- CPU cost of the proxies and executors, and the executors' own queue limits
  (RESOURCE_EXHAUSTED), are not modelled.
";
