//! Workloads: when actions arrive, at which node, how long they run, and which action
//! digest they carry (repeated digests are what affinity is for).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::clock::{Micros, SECONDS};
use crate::net::standard_normal;

#[derive(Debug, Clone)]
pub struct Action {
    pub arrival: Micros,
    /// The node whose proxy the client sent it to.
    pub entry: usize,
    pub duration: Micros,
    pub digest: u32,
    /// The same digest arrived before (anywhere).
    pub repeat: bool,
}

/// Where clients send their Executes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry {
    /// Every action enters node 0 (one client, one proxy address).
    OneNode,
    /// The entry node is Zipf-distributed over the nodes (in a random order):
    /// P(rank k) ∝ 1 / k^exponent.
    Zipf { exponent: f64 },
}

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub actions: usize,
    pub entry: Entry,
    /// Offered load as a fraction of the cluster's capacity: arrivals are Poisson at
    /// `offered_load × runners / mean duration`.
    pub offered_load: f64,
    /// Median action duration; durations are log-normal with spread `duration_sigma`.
    pub duration_median: Micros,
    pub duration_sigma: f64,
    /// Fraction of actions that repeat an earlier digest (chosen uniformly).
    pub repeat_fraction: f64,
    pub seed: u64,
}

impl WorkloadConfig {
    /// A build-like mix: 2 s median, a long tail (σ = 1: p99 about 20 s), 30% repeats.
    pub fn build(actions: usize, entry: Entry, offered_load: f64, seed: u64) -> Self {
        Self {
            actions,
            entry,
            offered_load,
            duration_median: 2 * SECONDS,
            duration_sigma: 1.0,
            repeat_fraction: 0.3,
            seed,
        }
    }

    fn mean_duration(&self) -> f64 {
        self.duration_median as f64 * (self.duration_sigma.powi(2) / 2.0).exp()
    }
}

/// The actions of one run, in arrival order.
pub fn generate(config: &WorkloadConfig, capacities: &[u32]) -> Vec<Action> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let runners: u32 = capacities.iter().sum();
    let rate_per_micro = config.offered_load * f64::from(runners) / config.mean_duration();
    let mut order: Vec<usize> = (0..capacities.len()).collect();
    order.shuffle(&mut rng);
    let weights: Vec<f64> = match config.entry {
        Entry::OneNode => Vec::new(),
        Entry::Zipf { exponent } => (1..=capacities.len())
            .map(|rank| 1.0 / (rank as f64).powf(exponent))
            .collect(),
    };
    let total_weight: f64 = weights.iter().sum();
    let mut at = 0.0f64;
    let mut digests = 0u32;
    let mut actions = Vec::with_capacity(config.actions);
    for _ in 0..config.actions {
        let entry = match config.entry {
            Entry::OneNode => 0,
            Entry::Zipf { .. } => {
                let mut pick = rng.random::<f64>() * total_weight;
                let rank = weights
                    .iter()
                    .position(|w| {
                        pick -= w;
                        pick <= 0.0
                    })
                    .unwrap_or(weights.len() - 1);
                order[rank]
            }
        };
        let repeat = digests > 0 && rng.random_bool(config.repeat_fraction);
        let digest = if repeat {
            rng.random_range(0..digests)
        } else {
            digests += 1;
            digests - 1
        };
        let duration = config.duration_median as f64
            * (config.duration_sigma * standard_normal(&mut rng)).exp();
        actions.push(Action {
            arrival: at as Micros,
            entry,
            duration: (duration as Micros).max(1),
            digest,
            repeat,
        });
        // Exponential inter-arrival times: a Poisson process.
        at += -(1.0 - rng.random::<f64>()).ln() / rate_per_micro;
    }
    actions
}

/// The action hash the proxy would see for `digest`: 64 hex digits.
pub fn action_hash(digest: u32) -> String {
    format!(
        "{:064x}",
        u64::from(digest).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_durations_and_repeats_follow_the_config() {
        let capacities = [1, 8, 1, 8];
        let config = WorkloadConfig::build(4000, Entry::Zipf { exponent: 1.0 }, 1.0, 3);
        let actions = generate(&config, &capacities);
        assert!(actions.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        // 18 runners at a mean of 2·e^0.5 s: about 5.46 arrivals per second.
        let span = actions.last().unwrap().arrival as f64 / 1e6;
        let rate = 4000.0 / span;
        assert!((5.0..5.9).contains(&rate), "rate {rate}");
        let repeats = actions.iter().filter(|a| a.repeat).count() as f64 / 4000.0;
        assert!((0.27..0.33).contains(&repeats), "{repeats}");
        let mut per_node = [0; 4];
        actions.iter().for_each(|a| per_node[a.entry] += 1);
        // Zipf with exponent 1 over 4 ranks: the top node gets 48%, the last 12%.
        let mut sorted = per_node;
        sorted.sort_unstable();
        assert!(sorted[3] > 1700 && sorted[0] < 600, "{per_node:?}");
        let one = generate(
            &WorkloadConfig::build(100, Entry::OneNode, 1.0, 3),
            &capacities,
        );
        assert!(one.iter().all(|a| a.entry == 0));
    }
}
