//! Which membership experiments the report runs: cluster sizes, foca settings and
//! repetitions, and the per-row summaries the tables and plots show.

use std::num::{NonZeroU8, NonZeroU32};
use std::time::Duration;

use crate::clock::{Micros, SECONDS};
use crate::membership::experiments::{
    self, Detection, PropagationRun, QuietRun, WARMUP, time_to_fraction,
};
use crate::membership::{Cluster, ClusterConfig};
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

/// Settings meant to detect a crash within 5 s at 1,000 nodes on a LAN without
/// declaring live nodes down at 5% loss. Each node probes twice as often (the dead
/// node's first failed probe comes sooner: all N members probe, so it is probed about
/// once per period), waits 200 ms for an ack (LAN round trips are about a millisecond),
/// and declares a suspect down after 2 s instead of `4 · log10(N)` s. Every update is
/// sent at least 8 times (`new_lan(N)` gives 4 at 10 nodes, 12 at 1,000): with a 2 s
/// suspicion, a suspect must hear of it, and everyone must hear its refutation, fast.
pub fn tuned(size: NonZeroU32) -> foca::Config {
    let mut config = foca::Config::new_lan(size);
    config.probe_period = Duration::from_millis(500);
    config.probe_rtt = Duration::from_millis(200);
    config.suspect_to_down_after = Duration::from_secs(2);
    config.max_transmissions = config.max_transmissions.max(MIN_TRANSMISSIONS);
    config
}

const MIN_TRANSMISSIONS: NonZeroU8 = NonZeroU8::new(8).unwrap();

/// How much of each experiment to run at one size.
#[derive(Debug, Clone, Copy)]
pub struct Repetitions {
    pub crashes: usize,
    pub quiet: Micros,
    pub changes: usize,
}

pub fn repetitions(nodes: usize, settings: Settings, quick: bool) -> Repetitions {
    match (nodes, quick) {
        (_, true) => Repetitions {
            crashes: 2,
            quiet: 20 * SECONDS,
            changes: 3,
        },
        (..=100, false) => Repetitions {
            crashes: 5,
            quiet: 600 * SECONDS,
            changes: 20,
        },
        // A simulated second of 1,000 nodes costs several seconds of CPU (each node
        // receives ~2,000 load records a second and foca scans its backlog for each);
        // the tuned settings, the candidate answer, get the most crashes.
        (_, false) => Repetitions {
            crashes: if settings == Settings::Tuned { 4 } else { 2 },
            quiet: 15 * SECONDS,
            changes: 3,
        },
    }
}

/// The longest a crash is watched: far longer than the slowest settings need.
pub fn detection_window(config: &foca::Config) -> Micros {
    crate::clock::micros(config.suspect_to_down_after) + 10 * SECONDS
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
    let repetitions = repetitions(nodes, settings, quick);
    // One lossless cluster for load changes, then crashes; a fresh lossy one for the
    // quiet run, so every node is live in it.
    let lossless = cluster_config(nodes, settings, 0.0, seed);
    let mut cluster = Cluster::new(&lossless);
    cluster.run_until(WARMUP);
    let propagation =
        experiments::propagation(&mut cluster, repetitions.changes, 2 * SECONDS, seed);
    let window = detection_window(&lossless.foca);
    let detections = experiments::detection(&mut cluster, repetitions.crashes, window, seed);
    drop(cluster);
    let lossy = cluster_config(nodes, settings, QUIET_LOSS, seed + 1);
    let quiet = experiments::quiet_run(&lossy, WARMUP, repetitions.quiet);
    MembershipRow {
        nodes,
        settings,
        repetitions,
        detections,
        quiet,
        propagation,
    }
}

/// Sizes and settings the report covers, in table order (a quick run leaves out
/// 1,000 nodes, which cost minutes of CPU).
pub fn plan(quick: bool) -> Vec<(usize, Settings)> {
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    let mut plan = Vec::new();
    for &nodes in sizes {
        plan.push((nodes, Settings::Proxy));
        if nodes != 10 {
            plan.push((nodes, Settings::LanForSize));
        }
        plan.push((nodes, Settings::Tuned));
    }
    plan
}
