//! Counters of what happened to gossip packets, for the metrics layer to read.
//!
//! Owns plain atomic counters shared through an `Arc`, and their Prometheus
//! exposition. It must never decide anything: the opener and sealer count, the
//! metrics layer reads (register the `Arc<SealStats>` as a collector), and
//! nothing else writes.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

/// Monotonic counters; read them with [`SealStats::snapshot`].
///
/// Relaxed ordering is enough: each counter is independent and only ever grows.
#[derive(Debug, Default)]
pub struct SealStats {
    sealed: AtomicU64,
    opened: AtomicU64,
    opened_by_secondary: AtomicU64,
    truncated: AtomicU64,
    bad_version: AtomicU64,
    forged: AtomicU64,
    stale: AtomicU64,
    replayed: AtomicU64,
    replay_evicted: AtomicU64,
}

/// A point-in-time copy of [`SealStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealStatsSnapshot {
    /// Packets sealed for sending.
    pub sealed: u64,
    /// Packets that passed every check and were handed to foca.
    pub opened: u64,
    /// Of `opened`, those sealed with a key that is not this node's primary.
    /// During a rotation, the old key can be removed once this stays flat on
    /// every node.
    pub opened_by_secondary: u64,
    /// Dropped: too short to hold a header and tag.
    pub truncated: u64,
    /// Dropped: wrong magic byte or unknown format version (a plaintext or
    /// foreign sender, or a newer remesh).
    pub bad_version: u64,
    /// Dropped: no key in the ring authenticates it (wrong key, or tampered).
    pub forged: u64,
    /// Dropped: authentic, but its timestamp is outside the window.
    pub stale: u64,
    /// Dropped: authentic, but its nonce was already seen.
    pub replayed: u64,
    /// Nonces dropped from a full replay cache (the window is shrinking).
    pub replay_evicted: u64,
}

impl SealStats {
    /// Copies every counter.
    pub fn snapshot(&self) -> SealStatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SealStatsSnapshot {
            sealed: read(&self.sealed),
            opened: read(&self.opened),
            opened_by_secondary: read(&self.opened_by_secondary),
            truncated: read(&self.truncated),
            bad_version: read(&self.bad_version),
            forged: read(&self.forged),
            stale: read(&self.stale),
            replayed: read(&self.replayed),
            replay_evicted: read(&self.replay_evicted),
        }
    }

    pub(crate) fn count_sealed(&self) {
        bump(&self.sealed, 1);
    }

    pub(crate) fn count_opened(&self, by_primary: bool) {
        bump(&self.opened, 1);
        if !by_primary {
            bump(&self.opened_by_secondary, 1);
        }
    }

    pub(crate) fn count_truncated(&self) {
        bump(&self.truncated, 1);
    }

    pub(crate) fn count_bad_version(&self) {
        bump(&self.bad_version, 1);
    }

    pub(crate) fn count_forged(&self) {
        bump(&self.forged, 1);
    }

    pub(crate) fn count_stale(&self) {
        bump(&self.stale, 1);
    }

    pub(crate) fn count_replayed(&self) {
        bump(&self.replayed, 1);
    }

    pub(crate) fn count_evicted(&self, evicted: usize) {
        if evicted > 0 {
            bump(&self.replay_evicted, evicted as u64);
        }
    }
}

/// Exposed at scrape time from the atomics, so the hot path pays one relaxed
/// increment and no label lookup:
/// - `gossip_seal_packets_total{outcome}`: `sealed`, `opened`, `truncated`,
///   `bad_version`, `forged`, `stale`, `replayed`;
/// - `gossip_seal_opened_by_secondary_total`;
/// - `gossip_seal_replay_evictions_total`.
impl Collector for SealStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot();
        let outcomes = [
            ("sealed", s.sealed),
            ("opened", s.opened),
            ("truncated", s.truncated),
            ("bad_version", s.bad_version),
            ("forged", s.forged),
            ("stale", s.stale),
            ("replayed", s.replayed),
        ];
        let mut family = encoder.encode_descriptor(
            "gossip_seal_packets",
            "Gossip packets sealed, opened, or dropped by reason",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (outcome, value) in outcomes {
            let labels = [("outcome", outcome)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        for (name, help, value) in [
            (
                "gossip_seal_opened_by_secondary",
                "Gossip packets opened with a non-primary key (rotation progress)",
                s.opened_by_secondary,
            ),
            (
                "gossip_seal_replay_evictions",
                "Nonces dropped from a full replay cache (freshness window shrinking)",
                s.replay_evicted,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

impl SealStats {
    /// Registers `stats` with `registry` (e.g. the proxy's, prefixed
    /// `remesh_proxy`); the values are read at each scrape.
    pub fn register(stats: &std::sync::Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(stats.clone()));
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn scrape_reports_each_counter_under_its_label() {
        let stats = Arc::new(SealStats::default());
        stats.count_sealed();
        stats.count_opened(false);
        stats.count_forged();
        stats.count_forged();
        stats.count_evicted(3);
        let mut registry = Registry::with_prefix("remesh_proxy");
        SealStats::register(&stats, &mut registry);
        stats.count_stale();

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "remesh_proxy_gossip_seal_packets_total{outcome=\"sealed\"} 1",
            "remesh_proxy_gossip_seal_packets_total{outcome=\"opened\"} 1",
            "remesh_proxy_gossip_seal_packets_total{outcome=\"forged\"} 2",
            "remesh_proxy_gossip_seal_packets_total{outcome=\"stale\"} 1",
            "remesh_proxy_gossip_seal_packets_total{outcome=\"replayed\"} 0",
            "remesh_proxy_gossip_seal_opened_by_secondary_total 1",
            "remesh_proxy_gossip_seal_replay_evictions_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
