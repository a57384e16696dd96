//! The router's side of the cluster: the published view, one pooled channel per peer,
//! and this node's own forward accounting.
//!
//! `Mesh` receives each view from the membership task (`ViewSink`), drops the
//! channels of members that are gone, and answers the router (`PeerRouting`): which
//! targets to try for an Execute and how to reach an operation's owner. Between two
//! load records from a peer, the Executes this node sent it and that are still open
//! count as queued there, so its decisions do not lag its own traffic; a peer that just failed a forward is left
//! out for a while, faster than gossip would declare it down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::balance::{NodeLoad, PeerSelector, Snapshot};
use crate::channel::{ChannelSettings, Endpoint};
use crate::load::LoadRecord;
use crate::membership::{ClusterView, PeerEntry, PeerState, ViewSink};
use crate::operation_name::NodeId;
use crate::route::{ForwardOutcome, InFlight, PeerRouting, Target};
use crate::stream_pool::{self, StreamPool};
use crate::wire::request_message::ExecuteRouting;

/// How long a peer that failed a forward is not offered new work.
const FAILED_PEER_PAUSE: Duration = Duration::from_secs(5);

/// Executes sent locally since the local load last changed: the executor reports
/// within milliseconds, but a burst of Executes is decided in microseconds. Any new
/// report (even one equal to an earlier value) supersedes the count.
struct LocalTally {
    reports: watch::Receiver<LoadRecord>,
    sent: u32,
}

/// Executes sent to one peer since its load record `load_version` and still open.
#[derive(Debug, Clone, Copy, Default)]
struct ForwardTally {
    load_version: u64,
    forwarded: u32,
}

type Tallies = Arc<Mutex<HashMap<NodeId, ForwardTally>>>;

struct PooledChannel {
    generation: u64,
    channel: Arc<StreamPool>,
}

pub struct Mesh {
    view: ArcSwap<ClusterView>,
    selector: Box<dyn PeerSelector>,
    settings: ChannelSettings,
    channels: Mutex<HashMap<NodeId, PooledChannel>>,
    tallies: Tallies,
    /// The local load, read at each decision rather than through the view (which
    /// another task republishes), with the Executes sent locally since it changed.
    local_tally: Mutex<LocalTally>,
    paused: Mutex<HashMap<NodeId, Instant>>,
    /// State of a small xorshift generator: p2c only needs cheap, decent randomness.
    random: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves a map half-updated on panic: a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Mesh {
    pub fn new(
        initial: ClusterView,
        local_load: watch::Receiver<LoadRecord>,
        selector: Box<dyn PeerSelector>,
        settings: ChannelSettings,
    ) -> Self {
        let seed = initial.local.generation | 1;
        Self {
            view: ArcSwap::from_pointee(initial),
            selector,
            settings,
            channels: Mutex::new(HashMap::new()),
            tallies: Arc::new(Mutex::new(HashMap::new())),
            local_tally: Mutex::new(LocalTally {
                reports: local_load,
                sent: 0,
            }),
            paused: Mutex::new(HashMap::new()),
            random: AtomicU64::new(seed),
        }
    }

    /// The latest published view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    fn next_random(&self) -> u64 {
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        x
    }

    /// The balancer's input: local load, and every peer that may take work with its
    /// load plus what this node forwarded to it since its last record.
    pub fn snapshot(&self) -> Snapshot {
        let view = self.view.load();
        let tallies = lock(&self.tallies);
        let now = Instant::now();
        let paused = lock(&self.paused);
        let peers = view
            .peers
            .iter()
            .filter(|peer| peer.takes_work())
            .filter(|peer| {
                paused
                    .get(&peer.identity.node_id)
                    .is_none_or(|until| *until <= now)
            })
            .filter_map(|peer| {
                let load = peer.load?;
                let extra = tallies
                    .get(&peer.identity.node_id)
                    .filter(|tally| tally.load_version == peer.load_version)
                    .map_or(0, |tally| tally.forwarded);
                Some(NodeLoad {
                    node_id: peer.identity.node_id.clone(),
                    load: load.plus_queued(extra),
                })
            })
            .collect();
        let (reported, local_extra) = {
            let mut tally = lock(&self.local_tally);
            // A closed sender still reads as unchanged: the last value stays valid.
            if tally.reports.has_changed().unwrap_or(false) {
                tally.sent = 0;
            }
            let reported = *tally.reports.borrow_and_update();
            (reported, tally.sent)
        };
        Snapshot {
            local: NodeLoad {
                node_id: view.local.node_id.clone(),
                load: reported.plus_queued(local_extra),
            },
            peers,
        }
    }
}

/// What becomes of a pooled channel when a new view arrives.
#[derive(Debug, PartialEq, Eq)]
enum Retire {
    Keep,
    /// The member left gracefully: it finishes its running operations and serves
    /// their streams until then, so they go on; new requests cannot reach it.
    LetStreamsFinish,
    /// The member was declared down, restarted or is forgotten: whatever streams it
    /// had are dead, and the sooner their clients hear so, the sooner they retry
    /// elsewhere (keep-alive alone would take tens of seconds on a vanished host).
    CloseNow,
}

fn retire(peer: Option<&PeerEntry>, pooled_generation: u64) -> Retire {
    match peer {
        Some(peer) if peer.identity.generation != pooled_generation => Retire::CloseNow,
        Some(peer) if peer.state != PeerState::Down => Retire::Keep,
        Some(peer) if peer.leaving => Retire::LetStreamsFinish,
        _ => Retire::CloseNow,
    }
}

impl ViewSink for Mesh {
    fn publish(&self, view: ClusterView) {
        {
            // A channel lives while its member is alive or suspect in the same
            // generation; a restarted member gets a fresh connection.
            let mut channels = lock(&self.channels);
            channels.retain(
                |node, pooled| match retire(view.peer(node), pooled.generation) {
                    Retire::Keep => true,
                    Retire::LetStreamsFinish => false,
                    Retire::CloseNow => {
                        pooled.channel.close();
                        false
                    }
                },
            );
        }
        lock(&self.tallies).retain(|node, _| view.peer(node).is_some());
        let now = Instant::now();
        lock(&self.paused).retain(|node, until| *until > now && view.peer(node).is_some());
        self.view.store(Arc::new(view));
    }
}

impl PeerRouting for Mesh {
    fn execute_candidates(&self, routing: &ExecuteRouting) -> Vec<Target> {
        let snapshot = self.snapshot();
        self.selector
            .select(&snapshot, &routing.action_hash, self.next_random())
    }

    fn peer_channel(&self, node: &NodeId) -> Option<Arc<StreamPool>> {
        let view = self.view.load();
        let peer = view
            .peer(node)
            .filter(|peer| peer.state != PeerState::Down)?;
        let mut channels = lock(&self.channels);
        let pooled = channels
            .entry(node.clone())
            .or_insert_with(|| PooledChannel {
                generation: peer.identity.generation,
                channel: Arc::new(StreamPool::new(
                    Endpoint::from_addr(peer.identity.grpc_addr),
                    self.settings.clone(),
                    stream_pool::STREAMS_PER_CONNECTION,
                    stream_pool::MAX_CONNECTIONS,
                )),
            });
        Some(pooled.channel.clone())
    }

    fn sending(&self, target: &Target) -> InFlight {
        match target {
            Target::Local => {
                lock(&self.local_tally).sent += 1;
                InFlight::untracked()
            }
            Target::Peer(node) => {
                let load_version = self.view.load().peer(node).map_or(0, |p| p.load_version);
                {
                    let mut tallies = lock(&self.tallies);
                    let tally = tallies.entry(node.clone()).or_default();
                    if tally.load_version != load_version {
                        *tally = ForwardTally {
                            load_version,
                            forwarded: 0,
                        };
                    }
                    tally.forwarded += 1;
                }
                let tallies = self.tallies.clone();
                let node = node.clone();
                InFlight::on_drop(move || {
                    // A newer record already counts (or no longer counts) this one.
                    if let Some(tally) = lock(&tallies).get_mut(&node)
                        && tally.load_version == load_version
                    {
                        tally.forwarded = tally.forwarded.saturating_sub(1);
                    }
                })
            }
        }
    }

    fn record_forward(&self, node: &NodeId, outcome: ForwardOutcome) {
        match outcome {
            ForwardOutcome::Accepted => {}
            ForwardOutcome::Failed | ForwardOutcome::Refused => {
                lock(&self.paused).insert(node.clone(), Instant::now() + FAILED_PEER_PAUSE);
                if outcome == ForwardOutcome::Failed {
                    lock(&self.channels).remove(node);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::least_loaded::LeastLoaded;
    use crate::membership::MemberIdentity;

    fn identity(id: &str, port: u16) -> MemberIdentity {
        MemberIdentity {
            node_id: NodeId::new(id).unwrap(),
            gossip_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            grpc_addr: format!("127.0.0.1:{}", port + 1).parse().unwrap(),
            generation: 1,
        }
    }

    fn load(queued: u32, executing: u32, max: u32) -> LoadRecord {
        LoadRecord {
            queued,
            executing,
            max_concurrency: max,
        }
    }

    fn peer(id: &str, port: u16, state: PeerState, record: LoadRecord) -> PeerEntry {
        PeerEntry {
            identity: identity(id, port),
            state,
            load: Some(record),
            load_version: 7,
            leaving: false,
            load_received: None,
        }
    }

    fn mesh(local_load: LoadRecord, peers: Vec<PeerEntry>) -> Mesh {
        let view = ClusterView {
            local: identity("a", 1000),
            local_load,
            peers,
        };
        let (_, local) = watch::channel(local_load);
        Mesh::new(
            view,
            local,
            Box::new(LeastLoaded),
            ChannelSettings::default(),
        )
    }

    #[tokio::test]
    async fn own_forwards_count_until_the_next_load_record() {
        let b = NodeId::new("b").unwrap();
        let mesh = mesh(
            load(0, 4, 4),
            vec![peer("b", 2000, PeerState::Alive, load(0, 0, 2))],
        );
        let routing = ExecuteRouting::default();
        assert_eq!(
            mesh.execute_candidates(&routing)[0],
            Target::Peer(b.clone())
        );
        let first = mesh.sending(&Target::Peer(b.clone()));
        let second = mesh.sending(&Target::Peer(b.clone()));
        // b's two runners are now taken, as far as this node knows: stay local.
        assert_eq!(mesh.execute_candidates(&routing), [Target::Local]);
        // A newer record from b supersedes the tally.
        let mut fresh = peer("b", 2000, PeerState::Alive, load(0, 0, 2));
        fresh.load_version = 8;
        mesh.publish(ClusterView {
            local: identity("a", 1000),
            local_load: load(0, 4, 4),
            peers: vec![fresh],
        });
        // Those two ending later does not take anything off the new record's count.
        let third = mesh.sending(&Target::Peer(b.clone()));
        drop((first, second));
        assert_eq!(mesh.snapshot().peers[0].load.queued, 1);
        drop(third);
        assert_eq!(mesh.execute_candidates(&routing)[0], Target::Peer(b));
    }

    #[tokio::test]
    async fn forwards_that_ended_stop_counting_before_the_next_record() {
        let b = NodeId::new("b").unwrap();
        let mesh = mesh(
            load(0, 4, 4),
            vec![peer("b", 2000, PeerState::Alive, load(0, 0, 2))],
        );
        let routing = ExecuteRouting::default();
        // Many short actions within one gossip round: only the open ones count.
        for _ in 0..100 {
            drop(mesh.sending(&Target::Peer(b.clone())));
        }
        assert_eq!(mesh.snapshot().peers[0].load.queued, 0);
        let open = mesh.sending(&Target::Peer(b.clone()));
        assert_eq!(mesh.snapshot().peers[0].load.queued, 1);
        assert_eq!(mesh.execute_candidates(&routing)[0], Target::Peer(b));
        drop(open);
    }

    #[tokio::test]
    async fn local_sends_count_until_the_local_load_changes() {
        let (report, local) = watch::channel(load(0, 0, 2));
        let view = ClusterView {
            local: identity("a", 1000),
            local_load: load(0, 0, 2),
            peers: vec![peer("b", 2000, PeerState::Alive, load(0, 1, 4))],
        };
        let mesh = Mesh::new(
            view,
            local,
            Box::new(LeastLoaded),
            ChannelSettings::default(),
        );
        let routing = ExecuteRouting::default();
        assert_eq!(mesh.execute_candidates(&routing)[0], Target::Local);
        let _ = mesh.sending(&Target::Local);
        let _ = mesh.sending(&Target::Local);
        // Two sent, none reported yet: local counts as full.
        assert_eq!(mesh.snapshot().local.load.queued, 2);
        assert_eq!(
            mesh.execute_candidates(&routing)[0],
            Target::Peer(NodeId::new("b").unwrap())
        );
        // The executor's report supersedes the estimate.
        report.send_replace(load(0, 2, 2));
        assert_eq!(mesh.snapshot().local.load.queued, 0);
    }

    #[tokio::test]
    async fn channels_follow_membership() {
        let b = NodeId::new("b").unwrap();
        let mesh = mesh(
            load(0, 0, 4),
            vec![peer("b", 2000, PeerState::Alive, load(0, 0, 4))],
        );
        let first = mesh.peer_channel(&b).unwrap();
        assert!(Arc::ptr_eq(&first, &mesh.peer_channel(&b).unwrap()));
        assert_eq!(first.endpoint().port, 2001);
        mesh.publish(ClusterView {
            local: identity("a", 1000),
            local_load: load(0, 0, 4),
            peers: vec![peer("b", 2000, PeerState::Down, load(0, 0, 4))],
        });
        assert!(mesh.peer_channel(&b).is_none());
        assert!(lock(&mesh.channels).is_empty());
        assert!(mesh.peer_channel(&NodeId::new("zz").unwrap()).is_none());
    }

    #[test]
    fn down_peers_lose_their_streams_and_leaving_ones_keep_them() {
        let alive = peer("b", 2000, PeerState::Alive, load(0, 0, 4));
        let generation = alive.identity.generation;
        assert_eq!(retire(Some(&alive), generation), Retire::Keep);
        let suspect = PeerEntry {
            state: PeerState::Suspect,
            ..alive.clone()
        };
        assert_eq!(retire(Some(&suspect), generation), Retire::Keep);
        let down = PeerEntry {
            state: PeerState::Down,
            ..alive.clone()
        };
        assert_eq!(retire(Some(&down), generation), Retire::CloseNow);
        let left = PeerEntry {
            leaving: true,
            ..down
        };
        assert_eq!(retire(Some(&left), generation), Retire::LetStreamsFinish);
        assert_eq!(retire(Some(&alive), generation + 1), Retire::CloseNow);
        assert_eq!(retire(None, generation), Retire::CloseNow);
    }

    #[tokio::test]
    async fn a_failing_peer_is_paused() {
        tokio::time::pause();
        let b = NodeId::new("b").unwrap();
        let mesh = mesh(
            load(0, 4, 4),
            vec![peer("b", 2000, PeerState::Alive, load(0, 0, 4))],
        );
        mesh.record_forward(&b, ForwardOutcome::Failed);
        assert_eq!(
            mesh.execute_candidates(&ExecuteRouting::default()),
            [Target::Local]
        );
        tokio::time::advance(FAILED_PEER_PAUSE + Duration::from_millis(1)).await;
        assert_eq!(
            mesh.execute_candidates(&ExecuteRouting::default())[0],
            Target::Peer(b)
        );
    }
}
