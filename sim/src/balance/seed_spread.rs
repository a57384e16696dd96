//! How much a balancing result depends on the seed: one policy under the report's four
//! scenarios, over many seeds, with a fixed gossip delay model.
//!
//! The report runs two seeds per scenario, and its makespan is decided by the last
//! long action (durations are log-normal with a p99 of about 20 s), so one unlucky
//! seed moves a scenario's worst case by tenths. This spreads the same measurement
//! over more seeds and adds the mean queue wait, to which every action contributes.
//! Gossip delays are uniform between 100 and 800 ms, the span the report measured for
//! a load record to reach 99% of 100 nodes; no membership run is needed, so it takes
//! seconds.

use remesh_proxy::config::Policy;

use super::engine::{self, EngineConfig, GossipDelay};
use super::{Balancer, ideal, workload};
use crate::clock::{MILLIS, Micros, SECONDS};
use crate::net::NetworkModel;
use crate::report::balance_runs::scenarios;

/// One scenario over every seed.
#[derive(Debug, Clone)]
pub struct Spread {
    pub scenario: String,
    /// Makespan ÷ the ideal scheduler's, one per seed.
    pub makespan_ratios: Vec<f64>,
    /// Mean queue wait in seconds, one per seed: under the policy, and under the
    /// ideal scheduler.
    pub waits_s: Vec<f64>,
    pub ideal_waits_s: Vec<f64>,
    /// Over actions repeating an earlier digest, the fraction that started on a node
    /// that had started it before (what `affinity` trades balance for), one per seed.
    pub repeat_hits: Vec<f64>,
}

impl Spread {
    pub fn mean_makespan(&self) -> f64 {
        mean(&self.makespan_ratios)
    }

    pub fn worst_makespan(&self) -> f64 {
        self.makespan_ratios.iter().copied().fold(0.0, f64::max)
    }

    pub fn mean_repeat_hits(&self) -> f64 {
        mean(&self.repeat_hits)
    }

    /// Mean over seeds of the mean queue wait: under the policy, and ideal.
    pub fn mean_waits_s(&self) -> (f64, f64) {
        (mean(&self.waits_s), mean(&self.ideal_waits_s))
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// 100 to 800 ms in even steps.
fn delay_model() -> GossipDelay {
    GossipDelay::from_samples((0..=50).map(|i| (100 + i * 14) * MILLIS).collect())
}

/// `policy` under each scenario for seeds `1..=seeds`; `load_factor` is affinity's
/// bound (the proxy's `affinity_load_factor`).
pub fn run(policy: Policy, load_factor: f64, seeds: u64) -> Vec<Spread> {
    let gossip = delay_model();
    let count = scenarios(false, 1).len();
    (0..count)
        .map(|which| {
            let mut spread = Spread {
                scenario: String::new(),
                makespan_ratios: Vec::new(),
                waits_s: Vec::new(),
                ideal_waits_s: Vec::new(),
                repeat_hits: Vec::new(),
            };
            for seed in 1..=seeds {
                let scenario = scenarios(false, seed).swap_remove(which);
                let actions = workload::generate(&scenario.workload, &scenario.capacities);
                let best = ideal::central_list_scheduler(&actions, &scenario.capacities);
                let run = engine::run(
                    &actions,
                    &EngineConfig {
                        capacities: scenario.capacities.clone(),
                        policy: Balancer::Proxy(policy),
                        load_factor,
                        heartbeat: SECONDS,
                        gossip: gossip.clone(),
                        net: NetworkModel::lan(0.0),
                        seed,
                    },
                );
                spread.scenario = scenario.name;
                spread
                    .makespan_ratios
                    .push(run.makespan as f64 / best.makespan as f64);
                spread.waits_s.push(mean_seconds(&run.waits));
                spread.ideal_waits_s.push(mean_seconds(&best.waits));
                spread
                    .repeat_hits
                    .push(run.cache_hits as f64 / run.repeats.max(1) as f64);
            }
            spread
        })
        .collect()
}

fn mean_seconds(waits: &[Micros]) -> f64 {
    waits.iter().sum::<Micros>() as f64 / waits.len().max(1) as f64 / SECONDS as f64
}

/// A Markdown table of `spreads`.
pub fn render(policy: Policy, load_factor: f64, seeds: u64, spreads: &[Spread]) -> String {
    let mut text = format!(
        "{policy:?} (load factor {load_factor}) over seeds 1–{seeds} (gossip delays 100–800 ms)\n\n\
         | scenario | makespan × ideal, mean | worst | per seed | mean queue wait (s) | ideal's (s) | repeat on a node that ran it |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for spread in spreads {
        let per_seed: Vec<String> = spread
            .makespan_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect();
        let (wait, ideal_wait) = spread.mean_waits_s();
        text.push_str(&format!(
            "| {} | {:.3} | {:.3} | {} | {wait:.2} | {ideal_wait:.2} | {:.1}% |\n",
            spread.scenario,
            spread.mean_makespan(),
            spread.worst_makespan(),
            per_seed.join(" "),
            100.0 * spread.mean_repeat_hits(),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_a_spread() {
        let spread = Spread {
            scenario: "x".into(),
            makespan_ratios: vec![1.0, 1.5, 1.1],
            waits_s: vec![2.0, 4.0, 6.0],
            ideal_waits_s: vec![1.0, 2.0, 3.0],
            repeat_hits: vec![0.5, 0.7, 0.6],
        };
        assert!((spread.mean_makespan() - 1.2).abs() < 1e-9);
        assert_eq!(spread.worst_makespan(), 1.5);
        assert_eq!(spread.mean_waits_s(), (4.0, 2.0));
        let table = render(Policy::Affinity, 1.25, 3, &[spread]);
        assert!(
            table.contains("| x | 1.200 | 1.500 | 1.00 1.50 1.10 | 4.00 | 2.00 | 60.0% |"),
            "{table}"
        );
    }
}
