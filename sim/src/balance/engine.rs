//! The cluster under a policy: each node's executor (a FIFO queue and its runners), its
//! proxy's load view (other nodes' loads as of the last record received, plus its own
//! forwards since that record, as `proxy/src/mesh.rs` keeps it), and the proxy's
//! `PeerSelector` choosing where each arriving action runs.
//!
//! Load records leave a node under the proxy's pacing rule (`crate::pacing`) and reach
//! each other node after a delay drawn from `GossipDelay`, measured on the simulated
//! foca cluster. Forwarded Executes cross one network hop. Peers always accept (no
//! refusals, no failures), and identical in-flight actions are not merged.

use std::collections::{HashMap, HashSet, VecDeque};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use remesh_proxy::balance::{NodeLoad, PeerSelector, Snapshot};
use remesh_proxy::load::LoadRecord;
use remesh_proxy::operation_name::NodeId;
use remesh_proxy::route::Target;

use super::workload::{Action, action_hash};
use crate::clock::{EventQueue, Micros};
use crate::membership::node::node_id;
use crate::net::NetworkModel;
use crate::pacing::{LoadPacer, Pace};

/// How long a load record takes from its origin to one other node: samples drawn
/// uniformly from a measured set.
#[derive(Debug, Clone)]
pub struct GossipDelay {
    samples: Vec<Micros>,
}

impl GossipDelay {
    pub fn from_samples(samples: Vec<Micros>) -> Self {
        assert!(!samples.is_empty(), "a delay model needs samples");
        Self { samples }
    }

    fn sample(&self, rng: &mut StdRng) -> Micros {
        self.samples[rng.random_range(0..self.samples.len())]
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub capacities: Vec<u32>,
    pub policy: super::Balancer,
    /// `affinity`'s bound (the proxy's `affinity_load_factor`, 1.25 by default).
    pub load_factor: f64,
    pub heartbeat: Micros,
    pub gossip: GossipDelay,
    pub net: NetworkModel,
    pub seed: u64,
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    pub makespan: Micros,
    pub waits: Vec<Micros>,
    pub forwards: usize,
    /// Repeated digests that started on a node that had started the digest before.
    pub cache_hits: usize,
    pub repeats: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Heard {
    load: Option<LoadRecord>,
    version: u64,
    /// Own forwards since `version` that have not finished (the proxy's
    /// `ForwardTally` with its `InFlight` guards).
    forwarded_version: u64,
    forwarded: u32,
}

/// Where a forwarded action came from and which record of its peer it was counted
/// against, so that its end can take it off the count again.
#[derive(Debug, Clone, Copy)]
struct Forwarded {
    entry: usize,
    version: u64,
}

struct ExecNode {
    capacity: u32,
    queue: VecDeque<usize>,
    executing: u32,
    pacer: LoadPacer,
    flush_scheduled: bool,
    /// Index = peer; this node's view of it.
    view: Vec<Heard>,
    started: HashSet<u32>,
}

impl ExecNode {
    fn load(&self) -> LoadRecord {
        LoadRecord {
            queued: self.queue.len() as u32,
            executing: self.executing,
            max_concurrency: self.capacity,
        }
    }
}

enum Event {
    Arrive(usize),
    Accept {
        node: usize,
        action: usize,
    },
    Finish {
        node: usize,
        action: usize,
    },
    Record {
        to: usize,
        from: usize,
        load: LoadRecord,
        version: u64,
    },
    Heartbeat {
        node: usize,
    },
    Flush {
        node: usize,
    },
}

struct Engine<'a> {
    actions: &'a [Action],
    nodes: Vec<ExecNode>,
    ids: Vec<NodeId>,
    index: HashMap<NodeId, usize>,
    selector: Box<dyn PeerSelector>,
    queue: EventQueue<Event>,
    config: &'a EngineConfig,
    rng: StdRng,
    remaining: usize,
    /// Forwarded actions not yet finished.
    forwarded: HashMap<usize, Forwarded>,
    run: PolicyRun,
}

/// Runs `actions` to completion on the cluster `config` describes.
pub fn run(actions: &[Action], config: &EngineConfig) -> PolicyRun {
    let n = config.capacities.len();
    let ids: Vec<NodeId> = (0..n).map(node_id).collect();
    let nodes = config
        .capacities
        .iter()
        .map(|&capacity| ExecNode {
            capacity,
            queue: VecDeque::new(),
            executing: 0,
            pacer: LoadPacer::new(
                LoadRecord {
                    queued: 0,
                    executing: 0,
                    max_concurrency: capacity,
                },
                config.heartbeat,
            ),
            flush_scheduled: false,
            view: vec![Heard::default(); n],
            started: HashSet::new(),
        })
        .collect();
    let mut engine = Engine {
        actions,
        nodes,
        index: ids.iter().cloned().zip(0..).collect(),
        ids,
        selector: config.policy.selector(config.load_factor),
        queue: EventQueue::default(),
        config,
        rng: StdRng::seed_from_u64(config.seed),
        remaining: actions.len(),
        forwarded: HashMap::new(),
        run: PolicyRun {
            makespan: 0,
            waits: Vec::with_capacity(actions.len()),
            forwards: 0,
            cache_hits: 0,
            repeats: 0,
        },
    };
    // Every node has gossiped its idle load before the first action arrives.
    for to in 0..n {
        for from in 0..n {
            let load = engine.nodes[from].load();
            engine.nodes[to].view[from].load = Some(load);
        }
    }
    for node in 0..n {
        let phase = engine.rng.random_range(0..config.heartbeat.max(1));
        engine.queue.at(phase, Event::Heartbeat { node });
    }
    for (index, action) in actions.iter().enumerate() {
        engine.queue.at(action.arrival, Event::Arrive(index));
    }
    while engine.remaining > 0 {
        let Some(event) = engine.queue.pop_until(Micros::MAX) else {
            break;
        };
        engine.handle(event);
    }
    engine.run
}

impl Engine<'_> {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Arrive(action) => self.route(action),
            Event::Accept { node, action } => self.enqueue(node, action),
            Event::Finish { node, action } => {
                // The proxy's `InFlight` guard drops as the forwarded stream ends.
                if let Some(Forwarded { entry, version }) = self.forwarded.remove(&action) {
                    let heard = &mut self.nodes[entry].view[node];
                    if heard.forwarded_version == version {
                        heard.forwarded = heard.forwarded.saturating_sub(1);
                    }
                }
                self.nodes[node].executing -= 1;
                self.remaining -= 1;
                self.run.makespan = self.run.makespan.max(self.queue.now());
                self.start_ready(node);
            }
            Event::Record {
                to,
                from,
                load,
                version,
            } => {
                let heard = &mut self.nodes[to].view[from];
                // Records can overtake each other: the newest version wins, as in LoadBook.
                if version > heard.version {
                    heard.version = version;
                    heard.load = Some(load);
                }
            }
            Event::Heartbeat { node } => {
                self.broadcast(node);
                if self.remaining > 0 {
                    self.queue
                        .after(self.config.heartbeat, Event::Heartbeat { node });
                }
            }
            Event::Flush { node } => {
                self.nodes[node].flush_scheduled = false;
                if self.nodes[node].pacer.flush_due(self.queue.now()) {
                    self.broadcast(node);
                }
            }
        }
    }

    /// The proxy's `Mesh::snapshot` for node `at`: exact local load; peers as last
    /// heard, plus this node's unfinished forwards since that record.
    fn snapshot(&self, at: usize) -> Snapshot {
        let node = &self.nodes[at];
        let peers = node
            .view
            .iter()
            .enumerate()
            .filter(|(peer, _)| *peer != at)
            .filter_map(|(peer, heard)| {
                let extra = if heard.forwarded_version == heard.version {
                    heard.forwarded
                } else {
                    0
                };
                Some(NodeLoad {
                    node_id: self.ids[peer].clone(),
                    load: heard.load?.plus_queued(extra),
                })
            })
            .collect();
        Snapshot {
            local: NodeLoad {
                node_id: self.ids[at].clone(),
                load: node.load(),
            },
            peers,
        }
    }

    fn route(&mut self, action: usize) {
        let entry = self.actions[action].entry;
        let snapshot = self.snapshot(entry);
        let hash = action_hash(self.actions[action].digest);
        let random = self.rng.random::<u64>();
        let targets = self.selector.select(&snapshot, &hash, random);
        match targets.first() {
            Some(Target::Peer(peer)) => {
                let peer = self.index[peer];
                // The proxy's `record_forward(Accepted)`: count it against the
                // peer's current record.
                let heard = &mut self.nodes[entry].view[peer];
                if heard.forwarded_version != heard.version {
                    heard.forwarded_version = heard.version;
                    heard.forwarded = 0;
                }
                heard.forwarded += 1;
                let version = heard.forwarded_version;
                self.forwarded.insert(action, Forwarded { entry, version });
                self.run.forwards += 1;
                let hop = self.config.net.latency(&mut self.rng);
                self.queue.after(hop, Event::Accept { node: peer, action });
            }
            Some(Target::Local) | None => self.enqueue(entry, action),
        }
    }

    fn enqueue(&mut self, node: usize, action: usize) {
        self.nodes[node].queue.push_back(action);
        self.start_ready(node);
    }

    /// Starts queued actions while runners are free, then reports the new load.
    fn start_ready(&mut self, node: usize) {
        let now = self.queue.now();
        while self.nodes[node].executing < self.nodes[node].capacity {
            let Some(index) = self.nodes[node].queue.pop_front() else {
                break;
            };
            let action = &self.actions[index];
            let exec = &mut self.nodes[node];
            exec.executing += 1;
            if action.repeat {
                self.run.repeats += 1;
                if exec.started.contains(&action.digest) {
                    self.run.cache_hits += 1;
                }
            }
            exec.started.insert(action.digest);
            self.run.waits.push(now - action.arrival);
            self.queue.after(
                action.duration,
                Event::Finish {
                    node,
                    action: index,
                },
            );
        }
        let load = self.nodes[node].load();
        match self.nodes[node].pacer.on_change(load, now) {
            Pace::Now => self.broadcast(node),
            Pace::At(at) if !self.nodes[node].flush_scheduled => {
                self.nodes[node].flush_scheduled = true;
                self.queue.at(at, Event::Flush { node });
            }
            Pace::At(_) | Pace::Skip => {}
        }
    }

    fn broadcast(&mut self, from: usize) {
        let now = self.queue.now();
        // `start_ready` hands every change to the pacer: its record is current.
        let load = self.nodes[from].pacer.local_load;
        let version = self.nodes[from].pacer.sent(now);
        for to in (0..self.nodes.len()).filter(|to| *to != from) {
            let delay = self.config.gossip.sample(&mut self.rng);
            self.queue.after(
                delay,
                Event::Record {
                    to,
                    from,
                    load,
                    version,
                },
            );
        }
    }
}
