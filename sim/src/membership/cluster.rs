//! A simulated cluster of foca members on the simulated network: the event loop that
//! delivers packets and timers, and the hooks experiments use (crash a node, change a
//! node's load, partition the network).
//!
//! Every member starts knowing every other (as after a completed join), so runs measure
//! the steady state rather than the bootstrap. A crashed node stops at once: it never
//! sends again, and packets and timers addressed to it are dropped.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use foca::{Member, Timer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use remesh_proxy::load::LoadRecord;
use remesh_proxy::membership::MemberIdentity;

use super::node::{Observed, Outbox, Receipts, SimNode, index_of};
use crate::clock::{EventQueue, Micros, micros};
use crate::net::NetworkModel;
use crate::pacing::Pace;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub foca: foca::Config,
    pub net: NetworkModel,
    /// The proxy's `load_heartbeat` (1 s by default).
    pub load_heartbeat: Duration,
    /// Every node's capacity, advertised in its load records.
    pub max_concurrency: u32,
    pub seed: u64,
}

enum Event {
    Deliver {
        to: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer<MemberIdentity>,
    },
    Heartbeat {
        node: usize,
    },
    Flush {
        node: usize,
    },
}

/// Something a node's foca reported, and when.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub at: Micros,
    pub observer: usize,
    pub what: Observed,
}

impl LogEntry {
    /// The member the observation is about (the observer itself for `Defunct`).
    pub fn subject(&self) -> usize {
        match &self.what {
            Observed::Down(id) | Observed::ProbeFailed(id) => index_of(id.gossip_addr),
            Observed::Defunct => self.observer,
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<SimNode>,
    queue: EventQueue<Event>,
    pub net: NetworkModel,
    rng: StdRng,
    clock: Rc<Cell<Micros>>,
    pub receipts: Rc<RefCell<Receipts>>,
    pub log: Vec<LogEntry>,
    /// Gossip payload bytes and packets sent by live nodes (the AEAD's 40 bytes and
    /// UDP/IP headers come on top).
    pub bytes_sent: u64,
    pub packets_sent: u64,
    heartbeat: Micros,
    outbox: Outbox,
}

impl Cluster {
    pub fn new(config: &ClusterConfig) -> Self {
        let clock = Rc::new(Cell::new(0));
        let receipts = Rc::new(RefCell::new(Receipts {
            watch: None,
            reached: vec![None; config.nodes],
        }));
        let idle = LoadRecord {
            queued: 0,
            executing: 0,
            max_concurrency: config.max_concurrency,
        };
        let nodes = (0..config.nodes)
            .map(|index| {
                SimNode::new(
                    index,
                    config.foca.clone(),
                    config.seed,
                    idle,
                    config.load_heartbeat,
                    clock.clone(),
                    receipts.clone(),
                )
            })
            .collect();
        let mut cluster = Self {
            nodes,
            queue: EventQueue::default(),
            net: config.net.clone(),
            rng: StdRng::seed_from_u64(config.seed),
            clock,
            receipts,
            log: Vec::new(),
            bytes_sent: 0,
            packets_sent: 0,
            heartbeat: micros(config.load_heartbeat),
            outbox: Outbox::default(),
        };
        let everyone: Vec<_> = (0..config.nodes).map(super::node::identity).collect();
        for node in 0..config.nodes {
            let mut outbox = std::mem::take(&mut cluster.outbox);
            let others = everyone
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != node)
                .map(|(_, id)| Member::alive(id.clone()));
            // Already known to all: nothing to tell the others about.
            let _ = cluster.nodes[node]
                .foca
                .apply_many(others, false, &mut outbox);
            cluster.outbox = outbox;
            cluster.dispatch(node);
            // Nodes start at different moments: their heartbeats are out of phase.
            let phase = cluster.rng.random_range(0..cluster.heartbeat.max(1));
            cluster.queue.at(phase, Event::Heartbeat { node });
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn now(&self) -> Micros {
        self.queue.now()
    }

    pub fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].alive)
    }

    pub fn run_until(&mut self, until: Micros) {
        while let Some(event) = self.queue.pop_until(until) {
            self.clock.set(self.queue.now());
            self.handle(event);
        }
        self.clock.set(self.queue.now());
    }

    /// Stops `node` for good, without a word to anyone (a crash, not a leave).
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
    }

    /// `node`'s executor reports a new load: the proxy's pacing decides when it goes out.
    pub fn set_load(&mut self, node: usize, load: LoadRecord) {
        let now = self.now();
        match self.nodes[node].pacer.on_change(load, now) {
            Pace::Now => self.broadcast_load(node),
            Pace::At(at) => {
                if !self.nodes[node].flush_scheduled {
                    self.nodes[node].flush_scheduled = true;
                    self.queue.at(at, Event::Flush { node });
                }
            }
            Pace::Skip => {}
        }
    }

    /// Whether `observer`'s foca holds `subject` (under any generation) as alive or
    /// suspect.
    pub fn considers_alive(&self, observer: usize, subject: usize) -> bool {
        self.nodes[observer]
            .foca
            .iter_membership_state()
            .any(|member| {
                index_of(member.id().gossip_addr) == subject && member.state() != foca::State::Down
            })
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { to, data } => {
                if self.nodes[to].alive {
                    let mut outbox = std::mem::take(&mut self.outbox);
                    // A refused packet is logged and dropped by the proxy too.
                    let _ = self.nodes[to].foca.handle_data(&data, &mut outbox);
                    self.outbox = outbox;
                    self.dispatch(to);
                }
            }
            Event::Timer { node, timer } => {
                if self.nodes[node].alive {
                    let mut outbox = std::mem::take(&mut self.outbox);
                    let _ = self.nodes[node].foca.handle_timer(timer, &mut outbox);
                    self.outbox = outbox;
                    self.dispatch(node);
                }
            }
            Event::Heartbeat { node } => {
                if self.nodes[node].alive {
                    self.broadcast_load(node);
                    self.queue.after(self.heartbeat, Event::Heartbeat { node });
                }
            }
            Event::Flush { node } => {
                self.nodes[node].flush_scheduled = false;
                if self.nodes[node].alive && self.nodes[node].pacer.flush_due(self.now()) {
                    self.broadcast_load(node);
                }
            }
        }
    }

    fn broadcast_load(&mut self, node: usize) {
        let mut outbox = std::mem::take(&mut self.outbox);
        self.nodes[node].broadcast_load(self.queue.now(), &mut outbox);
        self.outbox = outbox;
        self.dispatch(node);
    }

    /// Turns what `node`'s foca asked for into packets on the network, timers and log
    /// entries.
    fn dispatch(&mut self, node: usize) {
        let now = self.queue.now();
        for (addr, data) in self.outbox.sends.drain(..) {
            self.bytes_sent += data.len() as u64;
            self.packets_sent += 1;
            let to = index_of(addr);
            if to >= self.nodes.len() {
                continue;
            }
            if let Some(delay) = self.net.transit(node, to, &mut self.rng) {
                self.queue.after(delay, Event::Deliver { to, data });
            }
        }
        for (delay, timer) in self.outbox.timers.drain(..) {
            self.queue
                .after(micros(delay), Event::Timer { node, timer });
        }
        for what in self.outbox.observed.drain(..) {
            self.log.push(LogEntry {
                at: now,
                observer: node,
                what,
            });
        }
    }
}
