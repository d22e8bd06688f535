//! The raftstore loop: one thread drives every region replica of the store.
//!
//! Each round drains the inbox (proposals, raft messages, conf changes,
//! reads), ticks when due, then handles the readies of all regions together
//! (`ready.rs`): log entries and hard states of every region persisted with a
//! single synced write, committed entries applied in one batch, messages
//! handed to the [`Transport`]. Upper layers talk to the loop through a
//! [`Router`] and read region routing from [`StoreMeta`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::RwLock;
use protobuf::Message as _;
use raft::prelude::{ConfChangeType, Message, MessageType};
use tokio::sync::{oneshot, Notify};

use super::cmd::RaftCmd;
use super::logger::raft_logger;
use super::peer::{Callback, Peer, PeerConfig};
use super::peer_storage::{self, StorageError};
use super::snapshot;
use super::transport::Transport;
use super::ProposeError;
use crate::engine::Engine;
use proto::{metapb, storepb};

/// What the store knows of one region it holds, shared with upper layers.
#[derive(Debug, Clone)]
pub struct RegionMeta {
    pub region: metapb::Region,
    /// Peer id of the leader this replica last heard of (0 = unknown).
    pub leader_id: u64,
    pub is_leader: bool,
    pub term: u64,
    /// Leader only: peers still catching up, and peers not heard from.
    pub pending_peers: Vec<metapb::Peer>,
    pub down_peers: Vec<(metapb::Peer, u64)>,
    /// Bytes written since the split checker last looked.
    pub written: Arc<std::sync::atomic::AtomicU64>,
}

impl RegionMeta {
    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        self.region
            .peers
            .iter()
            .find(|p| p.id == self.leader_id)
            .copied()
    }
}

#[derive(Debug, Default)]
pub struct StoreMeta {
    pub store_id: u64,
    pub regions: HashMap<u64, RegionMeta>,
}

pub enum StoreMsg {
    Propose {
        region_id: u64,
        cmd: RaftCmd,
        cb: Callback,
    },
    ChangePeer {
        region_id: u64,
        change: ConfChangeType,
        peer: metapb::Peer,
        cb: Callback,
    },
    TransferLeader {
        region_id: u64,
        peer_id: u64,
    },
    ReadIndex {
        region_id: u64,
        cb: Callback,
    },
    Raft(storepb::RaftMessage),
    Shutdown,
}

/// Handle through which upper layers reach the raftstore loop.
#[derive(Clone)]
pub struct Router {
    tx: Sender<StoreMsg>,
}

impl Router {
    /// A router with no raftstore behind it: what is sent through it lands
    /// in the returned receiver, for tests of the layers above.
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (Router, Receiver<StoreMsg>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (Router { tx }, rx)
    }

    /// Queues a request; a full inbox means the store is overloaded and the
    /// request is refused at once rather than queued without bound.
    async fn call(&self, make: impl FnOnce(Callback) -> StoreMsg) -> Result<(), ProposeError> {
        let (cb, rx) = oneshot::channel();
        self.tx.try_send(make(cb)).map_err(|e| match e {
            TrySendError::Full(_) => ProposeError::Busy,
            TrySendError::Disconnected(_) => ProposeError::Shutdown,
        })?;
        rx.await.map_err(|_| ProposeError::Shutdown)?
    }

    /// Proposes `cmd` to `region_id`; resolves once applied on this replica.
    pub async fn propose(&self, region_id: u64, cmd: RaftCmd) -> Result<(), ProposeError> {
        self.call(|cb| StoreMsg::Propose { region_id, cmd, cb })
            .await
    }

    /// Adds, promotes or removes a replica; resolves once applied here.
    pub async fn change_peer(
        &self,
        region_id: u64,
        change: ConfChangeType,
        peer: metapb::Peer,
    ) -> Result<(), ProposeError> {
        self.call(|cb| StoreMsg::ChangePeer {
            region_id,
            change,
            peer,
            cb,
        })
        .await
    }

    /// Resolves once this replica, as leader, may serve a linearizable read.
    pub async fn read_index(&self, region_id: u64) -> Result<(), ProposeError> {
        self.call(|cb| StoreMsg::ReadIndex { region_id, cb }).await
    }

    pub fn transfer_leader(&self, region_id: u64, peer_id: u64) {
        let _ = self
            .tx
            .send(StoreMsg::TransferLeader { region_id, peer_id });
    }

    /// Delivers a raft message from another store.
    pub fn send_raft_message(&self, msg: storepb::RaftMessage) -> Result<(), ProposeError> {
        self.tx
            .send(StoreMsg::Raft(msg))
            .map_err(|_| ProposeError::Shutdown)
    }

    pub fn shutdown(&self) {
        // Blocks only while the loop drains a full inbox.
        let _ = self.tx.send(StoreMsg::Shutdown);
    }
}

#[derive(Debug, Clone)]
pub struct RaftStoreConfig {
    pub base_tick: Duration,
    pub peer: PeerConfig,
    /// Applied entries kept in the log before it is truncated.
    pub log_gc_threshold: u64,
    /// Most messages handled per round before the readies are processed.
    pub max_batch: usize,
    /// A peer silent this long is reported down to placement.
    pub peer_down_after: Duration,
    /// Requests queued for the loop before new ones are refused as busy.
    pub inbox_capacity: usize,
}

impl Default for RaftStoreConfig {
    fn default() -> Self {
        RaftStoreConfig {
            base_tick: Duration::from_millis(100),
            peer: PeerConfig {
                election_tick: 10,
                heartbeat_tick: 2,
                max_size_per_msg: 1 << 20,
                max_inflight_msgs: 256,
            },
            log_gc_threshold: 1024,
            max_batch: 4096,
            peer_down_after: Duration::from_secs(10),
            inbox_capacity: 65536,
        }
    }
}

pub struct RaftStore {
    pub(super) engine: Engine,
    pub(super) store_id: u64,
    pub(super) cfg: RaftStoreConfig,
    pub(super) peers: HashMap<u64, Peer>,
    pub(super) meta: Arc<RwLock<StoreMeta>>,
    rx: Receiver<StoreMsg>,
    pub(super) logger: slog::Logger,
    pub(super) transport: Box<dyn Transport>,
    /// Woken when a region's leadership or shape changes (for heartbeats).
    pub(super) changed: Arc<Notify>,
    /// Regions whose meta must be republished after this round.
    pub(super) dirty: bool,
}

impl RaftStore {
    /// Loads every region replica stored in `engine` and returns the loop
    /// (to run on its own thread) with the router that feeds it.
    pub fn new(
        engine: Engine,
        store_id: u64,
        cfg: RaftStoreConfig,
        meta: Arc<RwLock<StoreMeta>>,
        changed: Arc<Notify>,
        transport: Box<dyn Transport>,
    ) -> Result<(RaftStore, Router), StorageError> {
        let logger = raft_logger();
        let mut peers = HashMap::new();
        for region in peer_storage::load_regions(&engine)? {
            let Some(me) = region.peers.iter().find(|p| p.store_id == store_id) else {
                tracing::warn!(
                    region_id = region.id,
                    store_id,
                    "region has no peer on this store; skipped"
                );
                continue;
            };
            let ps = peer_storage::load(&engine, &region)?;
            let mut peer = Peer::new(region.clone(), me.id, ps, &engine, &cfg.peer, &logger)?;
            if region.peers.len() == 1 {
                // A lone voter need not wait out an election timeout.
                peer.node.campaign()?;
            }
            peers.insert(region.id, peer);
        }
        meta.write().store_id = store_id;
        let (tx, rx) = crossbeam_channel::bounded(cfg.inbox_capacity);
        let store = RaftStore {
            engine,
            store_id,
            cfg,
            peers,
            meta,
            rx,
            logger,
            transport,
            changed,
            dirty: false,
        };
        store.refresh_meta();
        Ok((store, Router { tx }))
    }

    /// Runs the loop until [`Router::shutdown`] or every router is dropped.
    pub fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut ticks: u64 = 0;
        loop {
            let timeout = self.cfg.base_tick.saturating_sub(last_tick.elapsed());
            match self.rx.recv_timeout(timeout) {
                Ok(StoreMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let mut handled = 1;
            while handled < self.cfg.max_batch {
                match self.rx.try_recv() {
                    Ok(StoreMsg::Shutdown) => return self.stop(),
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
                handled += 1;
            }
            if last_tick.elapsed() >= self.cfg.base_tick {
                last_tick = Instant::now();
                ticks += 1;
                for p in self.peers.values_mut() {
                    p.node.tick();
                }
                // Refresh pending/down peers for heartbeats about once a second.
                if ticks.is_multiple_of(10) {
                    self.dirty = true;
                }
            }
            for p in self.peers.values_mut() {
                p.flush_reads();
            }
            if let Err(e) = self.on_ready() {
                tracing::error!(error = %e, "raftstore failed to persist; stopping");
                break;
            }
            if self.dirty {
                self.dirty = false;
                self.refresh_meta();
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        for p in self.peers.values_mut() {
            p.fail_pending();
        }
        tracing::info!("raftstore stopped");
    }

    fn with_peer(&mut self, region_id: u64, cb: Callback, f: impl FnOnce(&mut Peer, Callback)) {
        match self.peers.get_mut(&region_id) {
            Some(p) if p.is_initialized() => f(p, cb),
            _ => {
                let _ = cb.send(Err(ProposeError::RegionNotFound(region_id)));
            }
        }
    }

    fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::Propose { region_id, cmd, cb } => {
                self.with_peer(region_id, cb, |p, cb| p.propose(&cmd, cb))
            }
            StoreMsg::ChangePeer {
                region_id,
                change,
                peer,
                cb,
            } => self.with_peer(region_id, cb, |p, cb| {
                p.propose_conf_change(change, peer, cb)
            }),
            StoreMsg::ReadIndex { region_id, cb } => {
                self.with_peer(region_id, cb, |p, cb| p.read_index(cb))
            }
            StoreMsg::TransferLeader { region_id, peer_id } => {
                if let Some(p) = self.peers.get_mut(&region_id) {
                    if !p.transfer_leader(peer_id) {
                        tracing::debug!(
                            region_id,
                            peer_id,
                            "leader transfer skipped: target not a caught-up voter"
                        );
                    }
                }
            }
            StoreMsg::Raft(m) => self.on_raft_message(m),
            StoreMsg::Shutdown => {}
        }
    }

    fn on_raft_message(&mut self, m: storepb::RaftMessage) {
        let (Some(from), Some(to)) = (m.from_peer, m.to_peer) else {
            return;
        };
        if to.store_id != self.store_id {
            return;
        }
        if m.is_tombstone {
            self.on_tombstone(&m, to.id);
            return;
        }
        let Ok(msg) = Message::parse_from_bytes(&m.message) else {
            tracing::warn!(region_id = m.region_id, "undecodable raft message dropped");
            return;
        };
        if self
            .peers
            .get(&m.region_id)
            .is_some_and(|p| p.peer_id < to.id)
        {
            // Our replica was removed while we were away, and this store has
            // been added back under a new peer id: start over from a snapshot.
            tracing::info!(
                region_id = m.region_id,
                new_peer_id = to.id,
                "stale replica replaced"
            );
            if let Err(e) = self.destroy_peer(m.region_id) {
                tracing::error!(region_id = m.region_id, error = %e, "removing stale replica failed");
                return;
            }
        }
        if !self.peers.contains_key(&m.region_id) && !self.maybe_create_peer(&m, &msg) {
            return;
        }
        if self.tell_if_removed(&m, from) {
            return;
        }
        let p = self.peers.get_mut(&m.region_id).expect("peer exists");
        if p.peer_id != to.id {
            tracing::debug!(
                region_id = m.region_id,
                to = to.id,
                me = p.peer_id,
                "message for another peer id dropped"
            );
            return;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot && !self.snapshot_fits(&m, &msg) {
            return;
        }
        let p = self.peers.get_mut(&m.region_id).expect("peer exists");
        p.step(from, msg);
    }

    /// Answers a message from a replica that is no longer in the region (it
    /// was removed while away) with a tombstone, so it destroys itself.
    fn tell_if_removed(&self, m: &storepb::RaftMessage, from: metapb::Peer) -> bool {
        let Some(p) = self.peers.get(&m.region_id) else {
            return false;
        };
        let theirs = m.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        let mine = p.region.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        // An uninitialized sender (conf_ver 0) may be a replica being added.
        if !p.is_initialized()
            || theirs == 0
            || theirs >= mine
            || p.region.peers.iter().any(|x| x.id == from.id)
        {
            return false;
        }
        let tombstone = storepb::RaftMessage {
            region_id: m.region_id,
            from_peer: m.to_peer,
            to_peer: Some(from),
            region_epoch: p.region.region_epoch,
            is_tombstone: true,
            ..Default::default()
        };
        tracing::info!(
            region_id = m.region_id,
            peer_id = from.id,
            store_id = from.store_id,
            "telling a removed replica to go"
        );
        self.transport.send(vec![tombstone]);
        true
    }

    fn on_tombstone(&mut self, m: &storepb::RaftMessage, to_peer_id: u64) {
        let Some(p) = self.peers.get(&m.region_id) else {
            return;
        };
        let theirs = m.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        let mine = p.region.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        if p.peer_id != to_peer_id || !p.is_initialized() || theirs <= mine {
            return;
        }
        tracing::info!(
            region_id = m.region_id,
            "replica was removed from its region; destroying it"
        );
        if let Err(e) = self.destroy_peer(m.region_id) {
            tracing::error!(region_id = m.region_id, error = %e, "destroying removed replica failed");
        }
    }

    /// Whether a snapshot's range is free on this store (no other region overlaps it).
    fn snapshot_fits(&self, m: &storepb::RaftMessage, msg: &Message) -> bool {
        let Ok((region, _)) = snapshot::decode_data(&msg.get_snapshot().data) else {
            tracing::warn!(region_id = m.region_id, "undecodable snapshot dropped");
            return false;
        };
        let overlap = self.overlapping(m.region_id, &region.start_key, &region.end_key);
        if let Some(other) = overlap {
            tracing::info!(
                region_id = m.region_id,
                other,
                "snapshot overlaps another region; dropped"
            );
            return false;
        }
        true
    }

    /// An initialized region other than `except` overlapping `[start, end)`.
    fn overlapping(&self, except: u64, start: &[u8], end: &[u8]) -> Option<u64> {
        self.peers
            .values()
            .filter(|p| p.region.id != except && p.is_initialized())
            .find(|p| {
                let r = &p.region;
                (end.is_empty() || r.start_key.as_slice() < end)
                    && (r.end_key.is_empty() || start < r.end_key.as_slice())
            })
            .map(|p| p.region.id)
    }

    /// Creates an empty replica for a region this store is being added to;
    /// it catches up from a snapshot. Messages that cannot create one (a
    /// vote, a range still held by another region) are dropped.
    fn maybe_create_peer(&mut self, m: &storepb::RaftMessage, msg: &Message) -> bool {
        let creates = matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        if !creates || m.is_tombstone {
            return false;
        }
        if self.is_tombstone(m.region_id, m.region_epoch.as_ref()) {
            return false;
        }
        if self
            .overlapping(m.region_id, &m.start_key, &m.end_key)
            .is_some()
        {
            return false;
        }
        let to = m.to_peer.expect("checked by caller");
        let region = metapb::Region {
            id: m.region_id,
            ..Default::default()
        };
        let ps = peer_storage::empty(m.region_id);
        match Peer::new(
            region,
            to.id,
            ps,
            &self.engine,
            &self.cfg.peer,
            &self.logger,
        ) {
            Ok(p) => {
                tracing::info!(
                    region_id = m.region_id,
                    peer_id = to.id,
                    "replica created, waiting for a snapshot"
                );
                self.peers.insert(m.region_id, p);
                true
            }
            Err(e) => {
                tracing::warn!(region_id = m.region_id, error = %e, "creating replica failed");
                false
            }
        }
    }

    /// Whether this store removed its replica of `region_id` at or after `epoch`.
    fn is_tombstone(&self, region_id: u64, epoch: Option<&metapb::RegionEpoch>) -> bool {
        let conf_ver = epoch.map(|e| e.conf_ver).unwrap_or(0);
        match peer_storage::tombstone_conf_ver(&self.engine, region_id) {
            Ok(Some(dead)) => conf_ver <= dead,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(region_id, error = %e, "reading tombstone failed");
                true
            }
        }
    }

    pub(super) fn refresh_meta(&self) {
        let mut m = self.meta.write();
        m.regions
            .retain(|id, _| self.peers.get(id).is_some_and(|p| p.is_initialized()));
        for p in self.peers.values().filter(|p| p.is_initialized()) {
            m.regions
                .insert(p.region.id, region_meta(p, self.cfg.peer_down_after));
        }
        drop(m);
        self.changed.notify_one();
    }
}

fn region_meta(p: &Peer, down_after: Duration) -> RegionMeta {
    RegionMeta {
        region: p.region.clone(),
        leader_id: p.node.raft.leader_id,
        is_leader: p.is_leader(),
        term: p.node.raft.term,
        pending_peers: p.pending_peers(),
        down_peers: p.down_peers(down_after),
        written: p.written.clone(),
    }
}
