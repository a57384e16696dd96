//! The one task that owns foca. foca does no I/O and reads no clock: this task feeds
//! it datagrams, due timers, announces and broadcasts, then drains what it asks for
//! (datagrams to send, timers to schedule, notifications) after every single call.
//!
//! Load: the local record is broadcast as a heartbeat every `load_heartbeat`, and at
//! once when it changes significantly, at most once per `heartbeat / 5` (a burst of
//! changes is coalesced into the next allowed slot). On shutdown the node broadcasts
//! a `leaving` record, then leaves the cluster, so peers stop sending work at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::events::MembershipEvents;
use super::gossip_socket::GossipSocket;
use super::identity::MemberIdentity;
use super::join;
use super::load_broadcast::{BroadcastKey, HeardLoads, LoadBook, LoadBroadcast};
use super::sizing;
use super::view::{ClusterView, PeerEntry, PeerState};
use crate::load::LoadRecord;
use crate::metrics::{ProxyMetrics, label};
use crate::operation_name::NodeId;

/// Receives every new view; the router's peer table implements it.
pub trait ViewSink: Send + Sync + 'static {
    fn publish(&self, view: ClusterView);
}

#[derive(Debug, Clone)]
pub struct MembershipSettings {
    pub identity: MemberIdentity,
    pub join: Vec<String>,
    pub join_interval: Duration,
    pub load_heartbeat: Duration,
    /// Where state transitions are recorded for the admin port.
    pub events: MembershipEvents,
}

/// The foca settings every node runs with (public so the simulator drives the very
/// same protocol parameters).
/// These are the starting settings; `sizing` adapts them as the cluster grows.
pub fn foca_config() -> foca::Config {
    foca::Config::new_lan(NonZeroU32::new(sizing::SMALLEST_SIZE).unwrap_or(NonZeroU32::MIN))
}

type MeshFoca = Foca<MemberIdentity, PostcardCodec, StdRng, LoadBook>;

/// Timers foca asked for, delivered in deadline order (ties in request order).
#[derive(Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    timers: HashMap<u64, Timer<MemberIdentity>>,
    next_id: u64,
}

impl TimerQueue {
    fn push(&mut self, at: Instant, timer: Timer<MemberIdentity>) {
        self.next_id += 1;
        self.heap.push(Reverse((at, self.next_id)));
        self.timers.insert(self.next_id, timer);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Timer<MemberIdentity>> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((_, id)) = self.heap.pop()?;
                self.timers.remove(&id)
            }
            _ => None,
        }
    }
}

struct MembershipTask<S> {
    foca: MeshFoca,
    runtime: AccumulatingRuntime<MemberIdentity>,
    socket: GossipSocket,
    timers: TimerQueue,
    heard: HeardLoads,
    sink: Arc<S>,
    metrics: ProxyMetrics,
    local_load: LoadRecord,
    last_sent_load: Option<LoadRecord>,
    last_sent_at: Option<Instant>,
    min_broadcast_gap: Duration,
    load_pending: bool,
    version: u64,
    leaving: bool,
    /// Each member's last known state, to log and count every transition once.
    known: HashMap<SocketAddr, (NodeId, PeerState)>,
    /// Node ids already reported as claimed by two live members.
    duplicates_reported: HashSet<NodeId>,
    events: MembershipEvents,
    /// The cluster size foca's settings are made for now (`sizing`).
    sized_for: u32,
    /// foca's datagram bound, kept across resizes.
    max_packet: std::num::NonZeroUsize,
}

/// Runs membership until `shutdown`, then leaves the cluster gracefully.
pub async fn run<S: ViewSink>(
    settings: MembershipSettings,
    socket: GossipSocket,
    mut local_load: watch::Receiver<LoadRecord>,
    sink: Arc<S>,
    metrics: ProxyMetrics,
    shutdown: CancellationToken,
) {
    let mut config = foca_config();
    // Sealing adds a fixed overhead: foca's packets shrink so datagrams do not grow.
    let max_packet = socket.max_foca_packet(config.max_packet_size.get());
    if let Some(limit) = std::num::NonZeroUsize::new(max_packet) {
        config.max_packet_size = limit;
    }
    let foca_packet_bound = config.max_packet_size;
    let book = LoadBook::default();
    let heard = book.heard.clone();
    let foca = Foca::with_custom_broadcast(
        settings.identity.clone(),
        config,
        rand::make_rng::<StdRng>(),
        PostcardCodec,
        book,
    );
    let own_gossip = settings.identity.gossip_addr;
    let mut task = MembershipTask {
        foca,
        runtime: AccumulatingRuntime::new(),
        socket,
        timers: TimerQueue::default(),
        heard,
        sink,
        metrics,
        local_load: *local_load.borrow_and_update(),
        last_sent_load: None,
        last_sent_at: None,
        min_broadcast_gap: settings.load_heartbeat / 5,
        load_pending: false,
        version: 0,
        leaving: false,
        known: HashMap::new(),
        duplicates_reported: HashSet::new(),
        events: settings.events.clone(),
        sized_for: sizing::SMALLEST_SIZE,
        max_packet: foca_packet_bound,
    };

    let (seeds_tx, mut seeds_rx) = mpsc::channel(4);
    tokio::spawn(join::resolve_periodically(
        settings.join.clone(),
        settings.join_interval,
        seeds_tx,
        shutdown.clone(),
    ));
    let mut heartbeat = tokio::time::interval(settings.load_heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer = vec![0u8; max_packet.max(64 << 10)];
    let mut load_open = true;
    task.publish();

    loop {
        let timer_deadline = task.timers.next_deadline();
        let flush_at = task
            .last_sent_at
            .map(|at| at + task.min_broadcast_gap)
            .filter(|_| task.load_pending);
        tokio::select! {
            received = task.socket.recv_from(&mut buffer) => match received {
                Ok((len, from)) => {
                    task.count_packet("received", len);
                    match task.socket.open(&buffer[..len]) {
                        Ok(packet) => {
                            let result = task.foca.handle_data(&packet, &mut task.runtime);
                            if let Err(error) = result {
                                tracing::debug!(%from, %error, "gossip packet refused");
                            }
                        }
                        // Counted by the seal's stats; a stranger's traffic is not news.
                        Err(error) => tracing::debug!(%from, %error, "gossip datagram dropped"),
                    }
                }
                Err(error) => tracing::debug!(%error, "gossip receive failed"),
            },
            () = sleep_until(timer_deadline.unwrap_or_else(Instant::now)), if timer_deadline.is_some() => {
                let now = Instant::now();
                while let Some(timer) = task.timers.pop_due(now) {
                    if let Err(error) = task.foca.handle_timer(timer, &mut task.runtime) {
                        tracing::debug!(%error, "gossip timer");
                    }
                    task.drain().await;
                }
            }
            changed = local_load.changed(), if load_open => {
                if changed.is_err() {
                    load_open = false;
                    continue;
                }
                task.local_load = *local_load.borrow_and_update();
                task.on_local_load_change();
            }
            () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                task.broadcast_load();
            }
            _ = heartbeat.tick() => task.broadcast_load(),
            Some(seeds) = seeds_rx.recv() => {
                for addr in seeds {
                    if addr != own_gossip && !task.is_known_live(addr) {
                        let seed = MemberIdentity::seed(addr);
                        if let Err(error) = task.foca.announce(seed, &mut task.runtime) {
                            tracing::debug!(%addr, %error, "announce failed");
                        }
                    }
                }
            }
            () = shutdown.cancelled() => {
                task.leave().await;
                return;
            }
        }
        task.drain().await;
        task.publish();
    }
}

impl<S: ViewSink> MembershipTask<S> {
    fn is_known_live(&self, addr: SocketAddr) -> bool {
        self.known
            .get(&addr)
            .is_some_and(|(_, state)| *state != PeerState::Down)
    }

    fn count_packet(&self, direction: &str, len: usize) {
        self.metrics
            .gossip_packets_total
            .get_or_create(&label("direction", direction))
            .inc();
        self.metrics
            .gossip_bytes_total
            .get_or_create(&label("direction", direction))
            .inc_by(len as u64);
    }

    fn on_local_load_change(&mut self) {
        let significant = self
            .last_sent_load
            .is_none_or(|sent| self.local_load.differs_significantly(&sent));
        if !significant {
            return;
        }
        let allowed = self
            .last_sent_at
            .is_none_or(|at| at.elapsed() >= self.min_broadcast_gap);
        if allowed {
            self.broadcast_load();
        } else {
            self.load_pending = true;
        }
    }

    /// Queues the current load as the newest record of this node and pushes it out.
    fn broadcast_load(&mut self) {
        self.version += 1;
        let record = LoadBroadcast {
            key: BroadcastKey {
                origin: self.foca.identity().node_id.clone(),
                generation: self.foca.identity().generation,
                version: self.version,
            },
            load: self.local_load,
            leaving: self.leaving,
        };
        if let Err(error) = self.foca.add_broadcast(&record.encode()) {
            tracing::warn!(%error, "cannot queue load broadcast");
            return;
        }
        if let Err(error) = self.foca.broadcast(&mut self.runtime) {
            tracing::debug!(%error, "load broadcast");
        }
        self.last_sent_load = Some(self.local_load);
        self.last_sent_at = Some(Instant::now());
        self.load_pending = false;
    }

    /// Does what foca asked for after the last call.
    async fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            match self.socket.send_to(&data, to.gossip_addr).await {
                Ok(len) => self.count_packet("sent", len),
                Err(error) => tracing::debug!(to = %to.gossip_addr, %error, "gossip send failed"),
            }
        }
        let now = Instant::now();
        while let Some((delay, timer)) = self.runtime.to_schedule() {
            self.timers.push(now + delay, timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::Rename(old, new) => {
                    tracing::debug!(node = %new.node_id, old = old.generation, new = new.generation, "member restarted");
                }
                OwnedNotification::Idle => tracing::info!("no other member known"),
                // foca reports its own leave as Defunct too; that one is expected.
                // Otherwise it only goes defunct when it cannot rejoin, and
                // `MemberIdentity::renew` always offers a new generation.
                OwnedNotification::Defunct if self.leaving => {}
                OwnedNotification::Defunct => {
                    tracing::warn!("declared down by the cluster and unable to rejoin");
                }
                OwnedNotification::Rejoin(identity) => {
                    tracing::info!(generation = identity.generation, "rejoined the cluster");
                }
                _ => {}
            }
        }
        self.resize_protocol();
    }

    /// Fits foca's settings to the cluster's size when it has moved to another size
    /// class (members known, this node included).
    fn resize_protocol(&mut self) {
        let size = sizing::size_for(self.foca.iter_members().count() + 1);
        if size == self.sized_for {
            return;
        }
        match self
            .foca
            .set_config(sizing::config_for(size, self.max_packet))
        {
            Ok(()) => {
                tracing::info!(
                    from = self.sized_for,
                    to = size,
                    "membership settings resized"
                );
                self.sized_for = size;
            }
            Err(error) => tracing::warn!(%error, size, "cannot resize membership settings"),
        }
    }

    /// Rebuilds the view from foca's member list and the heard loads, logs and counts
    /// state transitions, and hands the view to the sink.
    fn publish(&mut self) {
        let heard = self
            .heard
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        let mut peers = Vec::new();
        let mut current = HashMap::new();
        for member in self.foca.iter_membership_state() {
            let identity = member.id().clone();
            let state = PeerState::from(member.state());
            let load = heard
                .get(&identity.node_id)
                .filter(|load| load.generation == identity.generation);
            current.insert(identity.gossip_addr, (identity.node_id.clone(), state));
            peers.push(PeerEntry {
                state,
                load: load.map(|l| l.load),
                load_version: load.map_or(0, |l| l.version),
                leaving: load.is_some_and(|l| l.leaving),
                load_received: load.map(|l| l.received),
                identity,
            });
        }
        for (addr, (node, state)) in &current {
            let previous = self.known.get(addr).map(|(_, state)| *state);
            if previous == Some(*state) {
                continue;
            }
            let leaving = peers
                .iter()
                .any(|peer| &peer.identity.node_id == node && peer.leaving);
            let event = match state {
                PeerState::Alive => "join",
                PeerState::Suspect => "suspect",
                PeerState::Down if leaving => "leave",
                PeerState::Down => "down",
            };
            tracing::info!(%node, %addr, event, "membership change");
            self.events.record(node.as_str(), *addr, event);
            self.metrics
                .membership_events_total
                .get_or_create(&label("event", event))
                .inc();
        }
        self.known = current;
        self.report_duplicate_ids();

        let view = ClusterView {
            local: self.foca.identity().clone(),
            local_load: self.local_load,
            peers,
        };
        for state in [PeerState::Alive, PeerState::Suspect, PeerState::Down] {
            let mut count = view.peers.iter().filter(|p| p.state == state).count() as i64;
            if state == PeerState::Alive {
                count += 1;
            }
            self.metrics
                .members
                .get_or_create(&label("state", state.label()))
                .set(count);
        }
        self.metrics
            .local_queue_depth
            .set(i64::from(view.local_load.queued));
        self.metrics
            .cluster_queue_depth
            .set(view.cluster_queue_depth() as i64);
        self.sink.publish(view);
    }

    /// Operation names route by node id, so two live members with one id would get
    /// each other's WaitExecution calls. Nothing can fix that but the configuration:
    /// say so loudly, once per id.
    fn report_duplicate_ids(&mut self) {
        let own = &self.foca.identity().node_id;
        let mut seen: HashSet<&NodeId> = HashSet::from([own]);
        let mut duplicates = Vec::new();
        for (node, state) in self.known.values() {
            if *state != PeerState::Down && !seen.insert(node) {
                duplicates.push(node.clone());
            }
        }
        for node in duplicates {
            if self.duplicates_reported.insert(node.clone()) {
                tracing::error!(%node, "two live members share this node id; give every node its own");
            }
        }
    }

    /// Tells the cluster this node takes no more work, then leaves.
    async fn leave(&mut self) {
        self.leaving = true;
        self.broadcast_load();
        self.drain().await;
        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(%error, "leaving the cluster");
        }
        self.drain().await;
        tracing::info!("left the cluster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_come_out_in_deadline_order_ties_in_request_order() {
        let start = Instant::now();
        let mut queue = TimerQueue::default();
        queue.push(start + Duration::from_millis(30), Timer::PeriodicGossip(3));
        queue.push(
            start + Duration::from_millis(10),
            Timer::ProbeRandomMember(1),
        );
        queue.push(
            start + Duration::from_millis(10),
            Timer::PeriodicAnnounce(2),
        );
        assert_eq!(
            queue.next_deadline(),
            Some(start + Duration::from_millis(10))
        );
        // Nothing is due before its deadline.
        assert!(queue.pop_due(start).is_none());
        let due: Vec<_> =
            std::iter::from_fn(|| queue.pop_due(start + Duration::from_millis(20))).collect();
        assert_eq!(
            due,
            [Timer::ProbeRandomMember(1), Timer::PeriodicAnnounce(2)]
        );
        assert_eq!(
            queue.pop_due(start + Duration::from_millis(30)),
            Some(Timer::PeriodicGossip(3))
        );
        assert!(queue.timers.is_empty() && queue.next_deadline().is_none());
    }
}
