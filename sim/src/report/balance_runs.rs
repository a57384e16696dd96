//! Which balancing experiments the report runs: cluster, workloads and seeds.

use crate::balance::engine::GossipDelay;
use crate::balance::workload::{Entry, WorkloadConfig};
use crate::balance::{Scenario, ScenarioResult, mixed_capacities, run_scenario};
use crate::clock::{MILLIS, Micros, SECONDS};

pub const NODES: usize = 100;

pub fn scenarios(quick: bool, seed: u64) -> Vec<Scenario> {
    let actions = if quick { 3_000 } else { 10_000 };
    let capacities = mixed_capacities(NODES);
    let zipf = Entry::Zipf { exponent: 1.0 };
    // Bursts (arrivals at twice the capacity: queues build, then drain) are where
    // makespan measures balancing; at steady load it mostly measures the last action.
    [
        ("burst ×2, one entry node", Entry::OneNode, 2.0),
        ("burst ×2, Zipf entry", zipf, 2.0),
        ("steady 0.9, one entry node", Entry::OneNode, 0.9),
        ("steady 0.9, Zipf entry", zipf, 0.9),
    ]
    .into_iter()
    .map(|(name, entry, load)| Scenario {
        name: name.to_owned(),
        capacities: capacities.clone(),
        workload: WorkloadConfig::build(actions, entry, load, seed),
    })
    .collect()
}

/// Seeds per scenario. Makespan is decided by the last long action, so one seed's luck
/// moves a scenario by tenths (`remesh-sim seeds` shows the spread); ten make the
/// means and the worst case worth quoting, and balancing runs take seconds each.
pub fn seeds(quick: bool) -> u64 {
    if quick { 1 } else { 10 }
}

/// The gossip delay model: measured delays (seconds) of load records in the simulated
/// foca cluster of the same size, or a fallback if none were measured.
pub fn gossip_model(delays_s: &[f64]) -> GossipDelay {
    let samples: Vec<Micros> = delays_s
        .iter()
        .map(|d| (d * SECONDS as f64) as Micros)
        .collect();
    if samples.is_empty() {
        GossipDelay::from_samples(vec![MILLIS, 200 * MILLIS])
    } else {
        GossipDelay::from_samples(samples)
    }
}

/// One scenario under one seed.
pub struct Job {
    pub scenario: usize,
    pub scenario_config: Scenario,
    pub seed: u64,
}

/// Every scenario under every seed.
pub fn jobs(quick: bool, seed: u64) -> Vec<Job> {
    let mut jobs = Vec::new();
    for repetition in 0..seeds(quick) {
        for (index, scenario) in scenarios(quick, seed + repetition).into_iter().enumerate() {
            jobs.push(Job {
                scenario: index,
                scenario_config: scenario,
                seed: seed + repetition,
            });
        }
    }
    jobs
}

pub fn run_job(job: &Job, gossip: &GossipDelay) -> ScenarioResult {
    run_scenario(&job.scenario_config, gossip, job.seed)
}

/// Results regrouped as `[scenario][seed]`.
pub fn group(jobs: &[Job], results: Vec<ScenarioResult>) -> Vec<Vec<ScenarioResult>> {
    let count = jobs.iter().map(|j| j.scenario + 1).max().unwrap_or(0);
    let mut grouped: Vec<Vec<ScenarioResult>> = (0..count).map(|_| Vec::new()).collect();
    for (job, result) in jobs.iter().zip(results) {
        grouped[job.scenario].push(result);
    }
    grouped
}
