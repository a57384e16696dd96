//! One simulated member: the proxy's foca instance (same identity type, same load
//! broadcast handler, same codec) plus the sim's runtime, which collects what foca asks
//! for during one call so the cluster can turn it into scheduled events.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use foca::{BroadcastHandler, Foca, Notification, PostcardCodec, Runtime, Timer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use remesh_proxy::load::LoadRecord;
use remesh_proxy::membership::MemberIdentity;
use remesh_proxy::membership::load_broadcast::{
    BroadcastDecodeError, BroadcastKey, LoadBook, LoadBroadcast,
};
use remesh_proxy::operation_name::NodeId;

use crate::clock::{Micros, micros};
use crate::pacing::LoadPacer;

pub type SimFoca = Foca<MemberIdentity, PostcardCodec, StdRng, RecordingBook>;

pub const GOSSIP_PORT: u16 = 7946;

/// The identity of node `index`: its index is encoded in its (made-up) address so the
/// network can route a packet without a lookup table.
pub fn identity(index: usize) -> MemberIdentity {
    let ip = Ipv4Addr::new(10, (index >> 16) as u8, (index >> 8) as u8, index as u8);
    MemberIdentity {
        node_id: node_id(index),
        gossip_addr: SocketAddr::V4(SocketAddrV4::new(ip, GOSSIP_PORT)),
        grpc_addr: SocketAddr::V4(SocketAddrV4::new(ip, 8980)),
        generation: 1,
    }
}

pub fn node_id(index: usize) -> NodeId {
    NodeId::new(format!("n{index}")).unwrap_or_else(|_| unreachable!("valid node id"))
}

/// The node index behind a gossip address made by `identity`.
pub fn index_of(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(v4) => {
            let [_, a, b, c] = v4.ip().octets();
            (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
        }
        SocketAddr::V6(_) => usize::MAX,
    }
}

/// Which load record, from which origin, the experiment is waiting for, and when each
/// node first held it (or a newer one).
#[derive(Debug, Default)]
pub struct Receipts {
    pub watch: Option<(NodeId, u64)>,
    pub reached: Vec<Option<Micros>>,
}

/// The proxy's `LoadBook`, unchanged, wrapped to note (in simulated time) when the
/// record an experiment watches arrives. The book itself stamps `received` with the
/// process clock; the simulation never reads that field.
pub struct RecordingBook {
    pub book: LoadBook,
    node: usize,
    clock: Rc<Cell<Micros>>,
    receipts: Rc<RefCell<Receipts>>,
}

impl BroadcastHandler<MemberIdentity> for RecordingBook {
    type Key = BroadcastKey;
    type Error = BroadcastDecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&MemberIdentity>,
    ) -> Result<Option<BroadcastKey>, BroadcastDecodeError> {
        let key = self.book.receive_item(data, sender)?;
        if let Some(key) = &key {
            let mut receipts = self.receipts.borrow_mut();
            let watched = receipts
                .watch
                .as_ref()
                .is_some_and(|(origin, version)| *origin == key.origin && key.version >= *version);
            if watched && receipts.reached[self.node].is_none() {
                receipts.reached[self.node] = Some(self.clock.get());
            }
        }
        Ok(key)
    }
}

/// What a node's foca reported, kept for the experiments.
#[derive(Debug, Clone)]
pub enum Observed {
    Down(MemberIdentity),
    ProbeFailed(MemberIdentity),
    /// This node learnt that the cluster declared it down.
    Defunct,
}

/// Everything foca asked for during one call.
#[derive(Default)]
pub struct Outbox {
    pub sends: Vec<(SocketAddr, Vec<u8>)>,
    pub timers: Vec<(Duration, Timer<MemberIdentity>)>,
    pub observed: Vec<Observed>,
}

impl Runtime<MemberIdentity> for Outbox {
    fn notify(&mut self, notification: Notification<'_, MemberIdentity>) {
        match notification {
            Notification::MemberDown(id) => self.observed.push(Observed::Down(id.clone())),
            Notification::ProbeFailed(_, id) => {
                self.observed.push(Observed::ProbeFailed(id.clone()));
            }
            Notification::Defunct => self.observed.push(Observed::Defunct),
            _ => {}
        }
    }

    fn send_to(&mut self, to: MemberIdentity, data: &[u8]) {
        self.sends.push((to.gossip_addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<MemberIdentity>, after: Duration) {
        self.timers.push((after, event));
    }
}

pub struct SimNode {
    pub foca: SimFoca,
    pub alive: bool,
    pub pacer: LoadPacer,
    /// A flush event for a held load record is already scheduled.
    pub flush_scheduled: bool,
}

impl SimNode {
    pub fn new(
        index: usize,
        config: foca::Config,
        seed: u64,
        load: LoadRecord,
        heartbeat: Duration,
        clock: Rc<Cell<Micros>>,
        receipts: Rc<RefCell<Receipts>>,
    ) -> Self {
        let book = RecordingBook {
            book: LoadBook::default(),
            node: index,
            clock,
            receipts,
        };
        let rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self {
            foca: Foca::with_custom_broadcast(identity(index), config, rng, PostcardCodec, book),
            alive: true,
            pacer: LoadPacer::new(load, micros(heartbeat)),
            flush_scheduled: false,
        }
    }

    /// Queues the current load as this node's newest record and pushes it out, as the
    /// proxy's `broadcast_load` does.
    pub fn broadcast_load(&mut self, now: Micros, outbox: &mut Outbox) {
        let version = self.pacer.sent(now);
        let identity = self.foca.identity();
        let record = LoadBroadcast {
            key: BroadcastKey {
                origin: identity.node_id.clone(),
                generation: identity.generation,
                version,
            },
            load: self.pacer.local_load,
            leaving: false,
        };
        // Errors only mean "nothing to send to yet": the proxy logs and goes on.
        let _ = self.foca.add_broadcast(&record.encode());
        let _ = self.foca.broadcast(outbox);
    }
}
