//! The simulated network between nodes: per-packet latency drawn from a log-normal
//! distribution (a LAN's few-hundred-microsecond median with a long tail), independent
//! packet loss, and partitions that cut every packet between two groups of nodes.

use rand::RngExt;
use rand::rngs::StdRng;

use crate::clock::Micros;

#[derive(Debug, Clone)]
pub struct NetworkModel {
    /// Median one-way latency.
    pub latency_median: Micros,
    /// Spread of the log-normal latency (σ of its logarithm); 0.6 puts p99 at about
    /// four times the median.
    pub latency_sigma: f64,
    /// Probability that any one packet is lost.
    pub loss: f64,
    /// Partition group of each node; packets between different groups are dropped.
    /// Empty: no partition.
    groups: Vec<u8>,
}

impl NetworkModel {
    /// A data-centre LAN: 300 µs median one-way latency, p99 about 1.2 ms.
    pub fn lan(loss: f64) -> Self {
        Self {
            latency_median: 300,
            latency_sigma: 0.6,
            loss,
            groups: Vec::new(),
        }
    }

    /// Splits the cluster: node `i` can reach node `j` only if `groups[i] == groups[j]`.
    pub fn partition(&mut self, groups: Vec<u8>) {
        self.groups = groups;
    }

    pub fn heal(&mut self) {
        self.groups.clear();
    }

    pub fn reachable(&self, from: usize, to: usize) -> bool {
        match (self.groups.get(from), self.groups.get(to)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// How long a packet from `from` to `to` takes, or `None` when it is lost.
    pub fn transit(&self, from: usize, to: usize, rng: &mut StdRng) -> Option<Micros> {
        if !self.reachable(from, to) || (self.loss > 0.0 && rng.random_bool(self.loss)) {
            return None;
        }
        Some(self.latency(rng))
    }

    /// One latency sample.
    pub fn latency(&self, rng: &mut StdRng) -> Micros {
        let z = standard_normal(rng);
        let sample = self.latency_median as f64 * (self.latency_sigma * z).exp();
        sample.round().max(1.0) as Micros
    }
}

/// A standard normal sample (Box–Muller).
pub fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn loss_rate_and_latency_median_match_the_model() {
        let mut rng = StdRng::seed_from_u64(7);
        let net = NetworkModel::lan(0.05);
        let samples: Vec<_> = (0..20_000).map(|_| net.transit(0, 1, &mut rng)).collect();
        let lost = samples.iter().filter(|s| s.is_none()).count() as f64 / 20_000.0;
        assert!((0.04..0.06).contains(&lost), "loss {lost}");
        let mut kept: Vec<_> = samples.into_iter().flatten().collect();
        kept.sort_unstable();
        let median = kept[kept.len() / 2];
        assert!((270..330).contains(&median), "median {median}");
    }

    #[test]
    fn partitions_cut_only_across_groups() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut net = NetworkModel::lan(0.0);
        net.partition(vec![0, 0, 1]);
        assert!(net.transit(0, 1, &mut rng).is_some());
        assert!(net.transit(0, 2, &mut rng).is_none());
        assert!(net.transit(2, 1, &mut rng).is_none());
        net.heal();
        assert!(net.transit(0, 2, &mut rng).is_some());
    }
}
