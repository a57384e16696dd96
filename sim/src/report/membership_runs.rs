//! Which membership experiments the report runs: cluster sizes, foca settings and
//! repetitions, and the per-row summaries the tables and plots show.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::clock::{Micros, SECONDS};
use crate::membership::ClusterConfig;
use crate::membership::experiments::{
    self, Detection, PropagationRun, QuietRun, WARMUP, time_to_fraction,
};
use crate::net::NetworkModel;
use crate::stats::quantile;

/// Loss rate of the long quiet run (the false-positive target).
pub const QUIET_LOSS: f64 = 0.05;

/// The foca settings compared at each size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settings {
    /// What the proxy runs today: `membership::task::foca_config()`, which is
    /// `Config::new_lan(10)` whatever the cluster size.
    Proxy,
    /// `Config::new_lan(n)` for the actual cluster size.
    LanForSize,
    /// `new_lan(n)` with faster probing and a shorter suspicion (see `tuned`).
    Tuned,
}

impl Settings {
    pub fn name(self) -> &'static str {
        match self {
            Self::Proxy => "proxy (new_lan(10))",
            Self::LanForSize => "new_lan(N)",
            Self::Tuned => "tuned",
        }
    }

    pub fn config(self, nodes: usize) -> foca::Config {
        let size = NonZeroU32::new(nodes as u32).unwrap_or(NonZeroU32::MIN);
        match self {
            Self::Proxy => remesh_proxy::membership::task::foca_config(),
            Self::LanForSize => foca::Config::new_lan(size),
            Self::Tuned => tuned(size),
        }
    }
}

/// Settings that detect a crash within 5 s at 1,000 nodes on a LAN. Each node probes
/// twice as often (so the dead node's first failed probe comes sooner: with N probers,
/// it is probed about N / (N · period) = 1/period times a second), waits 200 ms for an
/// ack (LAN round trips are about a millisecond), and declares a suspect down after 2 s
/// instead of `4 · log10(N)` s; updates keep `new_lan(N)`'s transmission count so a
/// suspicion reaches the suspect, which refutes it, well within those 2 s.
pub fn tuned(size: NonZeroU32) -> foca::Config {
    let mut config = foca::Config::new_lan(size);
    config.probe_period = Duration::from_millis(500);
    config.probe_rtt = Duration::from_millis(200);
    config.suspect_to_down_after = Duration::from_secs(2);
    config
}

/// How much of each experiment to run at one size.
#[derive(Debug, Clone, Copy)]
pub struct Repetitions {
    pub crashes: usize,
    pub quiet: Micros,
    pub changes: usize,
}

pub fn repetitions(nodes: usize, quick: bool) -> Repetitions {
    match (nodes, quick) {
        (_, true) => Repetitions {
            crashes: 2,
            quiet: 30 * SECONDS,
            changes: 3,
        },
        (..=100, false) => Repetitions {
            crashes: 8,
            quiet: 600 * SECONDS,
            changes: 20,
        },
        (_, false) => Repetitions {
            crashes: 4,
            quiet: 120 * SECONDS,
            changes: 6,
        },
    }
}

/// The window after each crash: long enough for the slowest settings to finish.
pub fn detection_window(config: &foca::Config) -> Micros {
    crate::clock::micros(config.suspect_to_down_after) + 20 * SECONDS
}

/// Every experiment at one size with one set of foca settings.
#[derive(Debug, Clone)]
pub struct MembershipRow {
    pub nodes: usize,
    pub settings: Settings,
    pub repetitions: Repetitions,
    pub detections: Vec<Detection>,
    pub quiet: QuietRun,
    pub propagation: PropagationRun,
}

impl MembershipRow {
    fn all(&self) -> Vec<Option<f64>> {
        self.detections.iter().map(|d| d.down_all).collect()
    }

    /// The q-quantile over crashes of "every live node declared it down"; `None` when
    /// some crash was not declared everywhere within the window.
    pub fn detection_all(&self, q: f64) -> Option<f64> {
        time_to_fraction(&self.all(), q)
    }

    pub fn detection_99(&self, q: f64) -> Option<f64> {
        let times: Vec<_> = self.detections.iter().map(|d| d.down_99).collect();
        time_to_fraction(&times, q)
    }

    pub fn first_suspect_median(&self) -> Option<f64> {
        let times: Vec<f64> = self
            .detections
            .iter()
            .filter_map(|d| d.first_suspect)
            .collect();
        quantile(&times, 0.5)
    }

    /// q-quantile over load changes of the time to reach 99% of nodes.
    pub fn spread_99(&self, q: f64) -> Option<f64> {
        let times: Vec<_> = self
            .propagation
            .spreads
            .iter()
            .map(|s| s.reach_99)
            .collect();
        time_to_fraction(&times, q)
    }

    /// Every (node, change) delay, for the CDF plot and the balancing model.
    pub fn spread_delays(&self) -> Vec<f64> {
        self.propagation
            .spreads
            .iter()
            .flat_map(|s| s.delays.iter().flatten().copied())
            .collect()
    }
}

pub fn cluster_config(nodes: usize, settings: Settings, loss: f64, seed: u64) -> ClusterConfig {
    ClusterConfig {
        nodes,
        foca: settings.config(nodes),
        net: NetworkModel::lan(loss),
        load_heartbeat: Duration::from_secs(1),
        max_concurrency: 8,
        seed,
    }
}

pub fn run_row(nodes: usize, settings: Settings, quick: bool, seed: u64) -> MembershipRow {
    let repetitions = repetitions(nodes, quick);
    let lossless = cluster_config(nodes, settings, 0.0, seed);
    let window = detection_window(&lossless.foca);
    let detections = experiments::detection(&lossless, repetitions.crashes, WARMUP, window);
    let lossy = cluster_config(nodes, settings, QUIET_LOSS, seed + 1);
    let quiet = experiments::quiet_run(&lossy, WARMUP, repetitions.quiet);
    let propagation = experiments::propagation(&lossless, repetitions.changes, WARMUP, 3 * SECONDS);
    MembershipRow {
        nodes,
        settings,
        repetitions,
        detections,
        quiet,
        propagation,
    }
}

/// Sizes and settings the report covers, in table order.
pub fn plan() -> Vec<(usize, Settings)> {
    let mut plan = Vec::new();
    for nodes in [10, 100, 1000] {
        plan.push((nodes, Settings::Proxy));
        if nodes != 10 {
            plan.push((nodes, Settings::LanForSize));
        }
        plan.push((nodes, Settings::Tuned));
    }
    plan
}
