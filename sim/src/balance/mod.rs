//! Balancing at scale: the proxy's `PeerSelector` policies deciding, on gossip-delayed
//! load views, where each action of a workload runs, against a central scheduler that
//! sees everything.
//!
//! - `workload`: arrivals, entry nodes, durations, repeated digests.
//! - `engine`: executors, load views and the selector, event by event.
//! - `ideal`: the central list scheduler and a makespan lower bound.

pub mod engine;
pub mod ideal;
pub mod seed_spread;
pub mod what_if;
pub mod workload;

use remesh_proxy::balance::{PeerSelector, selector_for};
use remesh_proxy::config::Policy;

use crate::clock::{Micros, seconds};
use crate::net::NetworkModel;
use crate::stats::quantile;
use engine::{EngineConfig, GossipDelay};
use workload::WorkloadConfig;

/// A balancing policy: one of the proxy's, or the sim's what-if.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    Proxy(Policy),
    LowestUtilisation,
}

impl Balancer {
    pub fn selector(self, load_factor: f64) -> Box<dyn PeerSelector> {
        match self {
            Self::Proxy(policy) => selector_for(policy, load_factor),
            Self::LowestUtilisation => Box::new(what_if::LowestUtilisation),
        }
    }
}

/// The proxy's three policies, then the what-if.
pub const POLICIES: [Balancer; 4] = [
    Balancer::Proxy(Policy::LeastLoaded),
    Balancer::Proxy(Policy::P2c),
    Balancer::Proxy(Policy::Affinity),
    Balancer::LowestUtilisation,
];

pub fn policy_name(policy: Balancer) -> &'static str {
    match policy {
        Balancer::Proxy(Policy::LeastLoaded) => "least-loaded",
        Balancer::Proxy(Policy::P2c) => "p2c",
        Balancer::Proxy(Policy::Affinity) => "affinity",
        Balancer::LowestUtilisation => "what-if: lowest utilisation",
    }
}

/// Half the nodes with one runner, half with eight (alternating).
pub fn mixed_capacities(nodes: usize) -> Vec<u32> {
    (0..nodes).map(|i| if i % 2 == 0 { 1 } else { 8 }).collect()
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub capacities: Vec<u32>,
    pub workload: WorkloadConfig,
}

#[derive(Clone)]
pub struct PolicyResult {
    pub policy: Balancer,
    pub makespan_s: f64,
    pub p99_wait_s: f64,
    pub forwards_per_action: f64,
    /// Of actions repeating an earlier digest, the fraction that started on a node
    /// that had started that digest before.
    pub cache_hit_rate: f64,
    /// Every action's queue wait, for the distribution plot.
    pub waits: Vec<Micros>,
}

#[derive(Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub actions: usize,
    pub ideal_makespan_s: f64,
    pub ideal_p99_wait_s: f64,
    pub ideal_waits: Vec<Micros>,
    pub lower_bound_s: f64,
    pub policies: Vec<PolicyResult>,
}

// Hand-written so that assertion messages leave the per-action waits out.
impl std::fmt::Debug for PolicyResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyResult")
            .field("policy", &self.policy)
            .field("makespan_s", &self.makespan_s)
            .field("p99_wait_s", &self.p99_wait_s)
            .field("forwards_per_action", &self.forwards_per_action)
            .field("cache_hit_rate", &self.cache_hit_rate)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ScenarioResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioResult")
            .field("name", &self.name)
            .field("ideal_makespan_s", &self.ideal_makespan_s)
            .field("lower_bound_s", &self.lower_bound_s)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

fn p99(waits: &[Micros]) -> f64 {
    let waits: Vec<f64> = waits.iter().map(|w| seconds(*w)).collect();
    quantile(&waits, 0.99).unwrap_or(0.0)
}

/// Runs the ideal scheduler and every policy on the same actions.
pub fn run_scenario(scenario: &Scenario, gossip: &GossipDelay, seed: u64) -> ScenarioResult {
    let actions = workload::generate(&scenario.workload, &scenario.capacities);
    let ideal = ideal::central_list_scheduler(&actions, &scenario.capacities);
    let runners = scenario.capacities.iter().sum();
    let policies = POLICIES
        .iter()
        .map(|&policy| {
            let config = EngineConfig {
                capacities: scenario.capacities.clone(),
                policy,
                load_factor: 1.25,
                heartbeat: crate::clock::SECONDS,
                gossip: gossip.clone(),
                net: NetworkModel::lan(0.0),
                seed,
            };
            let run = engine::run(&actions, &config);
            PolicyResult {
                policy,
                makespan_s: seconds(run.makespan),
                p99_wait_s: p99(&run.waits),
                forwards_per_action: run.forwards as f64 / actions.len() as f64,
                cache_hit_rate: run.cache_hits as f64 / run.repeats.max(1) as f64,
                waits: run.waits,
            }
        })
        .collect();
    ScenarioResult {
        name: scenario.name.clone(),
        actions: actions.len(),
        ideal_makespan_s: seconds(ideal.makespan),
        ideal_p99_wait_s: p99(&ideal.waits),
        ideal_waits: ideal.waits,
        lower_bound_s: seconds(ideal::makespan_lower_bound(&actions, runners)),
        policies,
    }
}

#[cfg(test)]
mod tests {
    use super::workload::Entry;
    use super::*;
    use crate::clock::MILLIS;

    fn gossip() -> GossipDelay {
        // A 10-node cluster's spread: most within a few ms, some at a gossip round.
        GossipDelay::from_samples(vec![MILLIS, 2 * MILLIS, 5 * MILLIS, 200 * MILLIS])
    }

    fn scenario(entry: Entry, offered_load: f64) -> Scenario {
        Scenario {
            name: "test".into(),
            capacities: mixed_capacities(10),
            workload: WorkloadConfig::build(1500, entry, offered_load, 5),
        }
    }

    #[test]
    fn nobody_beats_the_lower_bound_and_the_ideal_is_within_graham() {
        for entry in [Entry::OneNode, Entry::Zipf { exponent: 1.0 }] {
            let result = run_scenario(&scenario(entry, 0.9), &gossip(), 1);
            // Rounding: durations are whole microseconds, the bound divides them.
            let bound = result.lower_bound_s - 1e-6;
            assert!(result.ideal_makespan_s >= bound, "{result:?}");
            // Graham: list scheduling is within twice the optimum.
            assert!(result.ideal_makespan_s <= 2.0 * result.lower_bound_s);
            for policy in &result.policies {
                assert!(policy.makespan_s >= bound, "{result:?}");
                assert!(
                    policy.makespan_s >= result.ideal_makespan_s * 0.98,
                    "{result:?}"
                );
            }
        }
    }

    #[test]
    fn all_work_entering_a_one_runner_node_is_forwarded_once_at_most() {
        let result = run_scenario(&scenario(Entry::OneNode, 0.9), &gossip(), 1);
        for policy in &result.policies {
            // Node 0 has 1 of 45 runners: most actions must leave it, none twice.
            assert!(policy.forwards_per_action > 0.8, "{policy:?}");
            assert!(policy.forwards_per_action <= 1.0, "{policy:?}");
        }
        // Affinity always has an owner within its bound to send to.
        let affinity = &result.policies[2];
        assert_eq!(affinity.policy, Balancer::Proxy(Policy::Affinity));
        assert!(
            affinity.makespan_s < 1.2 * result.ideal_makespan_s,
            "{result:?}"
        );
        // least-loaded and p2c keep an action local when every peer looks full, and
        // the one-runner entry node's queue then sets the makespan.
        for policy in &result.policies[..2] {
            assert!(
                policy.makespan_s > 1.5 * result.ideal_makespan_s,
                "{result:?}"
            );
        }
    }

    #[test]
    fn affinity_sends_repeats_back_to_where_they_ran() {
        let result = run_scenario(&scenario(Entry::Zipf { exponent: 1.0 }, 0.5), &gossip(), 1);
        let rate = |p: Policy| {
            result
                .policies
                .iter()
                .find(|r| r.policy == Balancer::Proxy(p))
                .unwrap()
                .cache_hit_rate
        };
        assert!(rate(Policy::Affinity) > 0.6, "{result:?}");
        assert!(
            rate(Policy::Affinity) > rate(Policy::LeastLoaded) + 0.2,
            "{result:?}"
        );
    }
}
