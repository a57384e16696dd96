//! The `/cluster` report: every member with state, addresses, load and the age of its
//! last load record, plus what a person watching the cluster wants next to it: this
//! node's uptime, the Executes it forwarded to each peer (read from the
//! `forwards_total` counters) and the recent membership events.
//!
//! The report only reads: it never changes the view, the counters or the event ring.
//! Fields added after the first version default when absent, so older readers and
//! newer nodes understand each other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::load::LoadRecord;
use crate::membership::{ClusterView, MembershipEvent, MembershipEvents, PeerState};
use crate::metrics::ProxyMetrics;
use crate::route::ForwardOutcome;

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterReport {
    pub node_id: String,
    pub members: Vec<MemberReport>,
    pub cluster_queue_depth: u64,
    /// Seconds since this proxy started.
    #[serde(default)]
    pub uptime_seconds: f64,
    /// Executes this node forwarded to each current peer, by outcome.
    #[serde(default)]
    pub forwards: Vec<ForwardReport>,
    /// Recent membership changes seen by this node, oldest first.
    #[serde(default)]
    pub events: Vec<EventReport>,
    /// Where clients reach the answering node's gRPC port (`listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// The answering node's peer port as peers dial it, when it has one; its
    /// members' `grpc_addr` is then this, not the client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_addr: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MemberReport {
    pub node_id: String,
    pub state: String,
    pub gossip_addr: String,
    /// The gRPC address peers dial (gossiped): the member's peer port when it has
    /// one, else its one gRPC port.
    pub grpc_addr: String,
    pub generation: u64,
    pub local: bool,
    pub leaving: bool,
    pub load: Option<LoadRecord>,
    /// Seconds since the member's last load record arrived (0 for this node).
    pub load_age_seconds: Option<f64>,
}

/// Forwards from this node to one peer since this node started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardReport {
    pub peer: String,
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
}

/// A membership event with its age, so readers need not trust their own clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventReport {
    #[serde(flatten)]
    pub event: MembershipEvent,
    pub age_seconds: f64,
}

/// The members part of the report (extras empty): the view as it is.
pub fn cluster_report(view: &ClusterView) -> ClusterReport {
    let mut members = vec![MemberReport {
        node_id: view.local.node_id.to_string(),
        state: PeerState::Alive.label().into(),
        gossip_addr: view.local.gossip_addr.to_string(),
        grpc_addr: view.local.grpc_addr.to_string(),
        generation: view.local.generation,
        local: true,
        leaving: false,
        load: Some(view.local_load),
        load_age_seconds: Some(0.0),
    }];
    members.extend(view.peers.iter().map(|peer| MemberReport {
        node_id: peer.identity.node_id.to_string(),
        state: peer.state.label().into(),
        gossip_addr: peer.identity.gossip_addr.to_string(),
        grpc_addr: peer.identity.grpc_addr.to_string(),
        generation: peer.identity.generation,
        local: false,
        leaving: peer.leaving,
        load: peer.load,
        load_age_seconds: peer.load_received.map(|at| at.elapsed().as_secs_f64()),
    }));
    ClusterReport {
        node_id: view.local.node_id.to_string(),
        cluster_queue_depth: view.cluster_queue_depth(),
        members,
        uptime_seconds: 0.0,
        forwards: Vec::new(),
        events: Vec::new(),
        client_addr: None,
        peer_addr: None,
    }
}

/// The whole report: members, uptime, forwards per peer, recent events.
pub fn full_report(
    view: &ClusterView,
    metrics: &ProxyMetrics,
    events: &MembershipEvents,
    uptime: Duration,
) -> ClusterReport {
    let mut report = cluster_report(view);
    report.uptime_seconds = uptime.as_secs_f64();
    report.forwards = view
        .peers
        .iter()
        .map(|peer| forwards_to(metrics, peer.identity.node_id.as_str()))
        .collect();
    let now_ms = unix_ms_now();
    report.events = events
        .snapshot()
        .into_iter()
        .map(|event| EventReport {
            age_seconds: now_ms.saturating_sub(event.at_unix_ms) as f64 / 1000.0,
            event,
        })
        .collect();
    report
}

/// Reads the `forwards_total` counters of one peer without creating label sets.
fn forwards_to(metrics: &ProxyMetrics, peer: &str) -> ForwardReport {
    let count = |outcome: ForwardOutcome| {
        let labels = vec![
            ("peer", peer.to_owned()),
            ("outcome", outcome.label().to_owned()),
        ];
        metrics
            .forwards_total
            .get(&labels)
            .map_or(0, |counter| counter.get())
    };
    ForwardReport {
        peer: peer.to_owned(),
        accepted: count(ForwardOutcome::Accepted),
        refused: count(ForwardOutcome::Refused),
        failed: count(ForwardOutcome::Failed),
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberIdentity, PeerEntry};
    use crate::operation_name::NodeId;

    fn identity(id: &str, port: u16) -> MemberIdentity {
        MemberIdentity {
            node_id: NodeId::new(id).unwrap(),
            gossip_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            grpc_addr: format!("127.0.0.1:{}", port + 1).parse().unwrap(),
            generation: 1,
        }
    }

    #[test]
    fn the_report_counts_forwards_per_peer_and_ages_events() {
        let view = ClusterView {
            local: identity("a", 1000),
            local_load: LoadRecord {
                queued: 2,
                executing: 1,
                max_concurrency: 4,
            },
            peers: vec![PeerEntry {
                identity: identity("b", 2000),
                state: PeerState::Suspect,
                load: None,
                load_version: 0,
                leaving: false,
                load_received: None,
            }],
        };
        let metrics = ProxyMetrics::new();
        for outcome in ["accepted", "accepted", "failed"] {
            metrics
                .forwards_total
                .get_or_create(&vec![("peer", "b".into()), ("outcome", outcome.into())])
                .inc();
        }
        let events = MembershipEvents::default();
        events.record("b", "127.0.0.1:2000".parse().unwrap(), "suspect");

        let report = full_report(&view, &metrics, &events, Duration::from_secs(90));
        assert_eq!(report.node_id, "a");
        assert_eq!(report.uptime_seconds, 90.0);
        assert_eq!(report.cluster_queue_depth, 2);
        let states: Vec<_> = report.members.iter().map(|m| m.state.as_str()).collect();
        assert_eq!(states, ["alive", "suspect"]);
        assert_eq!(
            report.forwards,
            [ForwardReport {
                peer: "b".into(),
                accepted: 2,
                refused: 0,
                failed: 1,
            }]
        );
        assert_eq!(report.events.len(), 1);
        assert_eq!(report.events[0].event.event, "suspect");
        assert!(report.events[0].age_seconds < 60.0);

        // The JSON keeps the event's fields at the top level of each entry.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["events"][0]["node_id"], "b");
        assert_eq!(json["forwards"][0]["accepted"], 2);
    }

    #[test]
    fn a_report_without_the_newer_fields_still_parses() {
        let old = r#"{"node_id":"a","members":[],"cluster_queue_depth":0}"#;
        let report: ClusterReport = serde_json::from_str(old).unwrap();
        assert!(report.forwards.is_empty() && report.events.is_empty());
    }
}
