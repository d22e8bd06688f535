//! The raftstore loop: one thread drives every region replica of the store.
//!
//! Each round drains the inbox (proposals, raft messages, conf changes,
//! reads), ticks when due, then handles the readies of all regions together
//! (`ready.rs`): log entries and hard states of every region persisted with a
//! single synced write, committed entries applied in one batch, messages
//! handed to the [`Transport`]. Upper layers talk to the loop through a
//! [`Router`] and read region routing from [`StoreMeta`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;
use raft::prelude::ConfChangeType;
use tokio::sync::{oneshot, Notify};

use super::cmd::RaftCmd;
use super::lease::LocalLease;
use super::logger::raft_logger;
use super::membership::PeerChange;
use super::peer::{Callback, Peer, PeerConfig, PeerCtx, ReadCallback};
use super::peer_storage::{self, RaftStateError};
use super::read_progress::{ReadProgress, RESOLVED_TS_INTERVAL};
use super::snap::worker::{ApplyGate, SnapWorkers};
use super::snap::SnapManager;
use super::transport::{Feedback, Transport};
use super::ProposeError;
use crate::engine::Engine;
use crate::percolator::ConcurrencyManager;
use proto::{kvrpcpb, metapb, storepb};

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
    /// The replica's leader lease as published for reads on request threads.
    pub lease: Arc<LocalLease>,
    /// Its applied index and safe ts (stale reads), and as leader its resolved ts.
    pub progress: Arc<ReadProgress>,
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
        /// Leader term the proposer read its input in (None: any term).
        term: Option<u64>,
        cb: Callback,
    },
    ChangePeer {
        region_id: u64,
        change: ConfChangeType,
        peer: metapb::Peer,
        cb: Callback,
    },
    /// A joint-consensus membership change: non-empty `changes` enter a joint state, empty
    /// ones leave it.
    ChangePeerV2 {
        region_id: u64,
        changes: Vec<PeerChange>,
        cb: Callback,
    },
    TransferLeader {
        region_id: u64,
        peer_id: u64,
    },
    ReadIndex {
        region_id: u64,
        cb: ReadCallback,
    },
    /// A follower's or learner's read ([`Peer::replica_read_index`]).
    ReplicaReadIndex {
        region_id: u64,
        check: kvrpcpb::ReadIndexRequest,
        cb: ReadCallback,
    },
    Raft(storepb::RaftMessage),
    /// Tests: the raft configuration the replica of `region_id` runs with.
    #[cfg(test)]
    ConfStateOf {
        region_id: u64,
        cb: oneshot::Sender<Option<raft::prelude::ConfState>>,
    },
}

/// What the store's own machinery (transport, workers, shutdown) tells the
/// loop. It travels on an unbounded channel of its own, so it is never
/// refused or blocked by a full request inbox; it is rare and small.
#[derive(Debug)]
pub enum ControlMsg {
    Shutdown,
    /// A snapshot message was delivered with its data, or lost.
    SnapshotStatus {
        region_id: u64,
        to_peer_id: u64,
        delivered: bool,
    },
    /// A message to this peer could not reach its store.
    Unreachable {
        region_id: u64,
        to_peer_id: u64,
    },
    /// The apply worker finished installing a received snapshot.
    SnapshotInstalled {
        region_id: u64,
        index: u64,
        result: Result<(), super::snap::worker::InstallError>,
    },
    /// Unit tests only: the loop sleeps this long, as a paused process would.
    #[cfg(test)]
    Stall(Duration),
}

/// Handle through which upper layers reach the raftstore loop.
#[derive(Clone)]
pub struct Router {
    tx: Sender<StoreMsg>,
    ctl: Sender<ControlMsg>,
    /// Set (write side) when the loop stops: a request queued after that
    /// would wait forever in the dead inbox, so senders check it (read side)
    /// and the loop answers whatever was queued before.
    closed: Arc<RwLock<bool>>,
}

impl Router {
    /// A router with no raftstore behind it: what is sent through it lands
    /// in the returned receiver, for tests of the layers above.
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (Router, Receiver<StoreMsg>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let (ctl, _) = crossbeam_channel::unbounded();
        let closed = Arc::default();
        (Router { tx, ctl, closed }, rx)
    }

    /// Queues a request without waiting: a full inbox refuses it as busy.
    fn try_send(&self, msg: StoreMsg) -> Result<(), ProposeError> {
        let closed = self.closed.read();
        if *closed {
            return Err(ProposeError::Shutdown);
        }
        self.tx.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => ProposeError::Busy,
            TrySendError::Disconnected(_) => ProposeError::Shutdown,
        })
    }

    /// Tells the loop about its own machinery; never blocks.
    pub(crate) fn control(&self, msg: ControlMsg) {
        let _ = self.ctl.send(msg);
    }

    /// Queues a request; a full inbox means the store is overloaded and the
    /// request is refused at once rather than queued without bound.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ProposeError>>) -> StoreMsg,
    ) -> Result<T, ProposeError> {
        let (cb, rx) = oneshot::channel();
        self.try_send(make(cb))?;
        rx.await.map_err(|_| ProposeError::Shutdown)?
    }

    /// Proposes `cmd` to `region_id`; resolves once applied on this replica.
    pub async fn propose(&self, region_id: u64, cmd: RaftCmd) -> Result<(), ProposeError> {
        self.call(|cb| StoreMsg::Propose {
            region_id,
            cmd,
            term: None,
            cb,
        })
        .await
    }

    /// Proposes `cmd` only if this replica still leads in `term` (the term
    /// its input was read in, from [`Router::read_index`]).
    pub async fn propose_in_term(
        &self,
        region_id: u64,
        term: u64,
        cmd: RaftCmd,
    ) -> Result<(), ProposeError> {
        self.call(|cb| StoreMsg::Propose {
            region_id,
            cmd,
            term: Some(term),
            cb,
        })
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

    /// Enters a joint state with `changes` (promotions, demotions, new peers, learners
    /// removed) in one raft change, or leaves it if `changes` is empty; resolves once
    /// applied here.
    pub async fn change_peer_v2(
        &self,
        region_id: u64,
        changes: Vec<PeerChange>,
    ) -> Result<(), ProposeError> {
        self.call(|cb| StoreMsg::ChangePeerV2 {
            region_id,
            changes,
            cb,
        })
        .await
    }

    /// Resolves once this replica, as leader, may serve a linearizable read,
    /// with the leader term the read was confirmed in.
    pub async fn read_index(&self, region_id: u64) -> Result<u64, ProposeError> {
        self.call(|cb| StoreMsg::ReadIndex { region_id, cb }).await
    }

    /// Resolves once this replica (not the leader) may serve a read: it has applied what the
    /// leader had committed when it confirmed the read, after the leader checked `check`.
    pub async fn replica_read_index(
        &self,
        region_id: u64,
        check: kvrpcpb::ReadIndexRequest,
    ) -> Result<u64, ProposeError> {
        self.call(|cb| StoreMsg::ReplicaReadIndex {
            region_id,
            check,
            cb,
        })
        .await
    }

    /// Asks the region's leader here to hand leadership to `peer_id`; a
    /// full inbox refuses it (placement asks again).
    pub fn transfer_leader(&self, region_id: u64, peer_id: u64) -> Result<(), ProposeError> {
        self.try_send(StoreMsg::TransferLeader { region_id, peer_id })
    }

    /// Delivers a raft message from another store without blocking: a full
    /// inbox drops it with `Busy` (raft retransmits what matters).
    pub fn send_raft_message(&self, msg: storepb::RaftMessage) -> Result<(), ProposeError> {
        self.try_send(StoreMsg::Raft(msg))
    }

    /// Tests: the raft configuration the replica of `region_id` runs with (None: no
    /// replica, or the store stopped).
    #[cfg(test)]
    pub(crate) async fn conf_state(&self, region_id: u64) -> Option<raft::prelude::ConfState> {
        let (cb, rx) = oneshot::channel();
        self.try_send(StoreMsg::ConfStateOf { region_id, cb })
            .ok()?;
        rx.await.ok()?
    }

    pub fn shutdown(&self) {
        self.control(ControlMsg::Shutdown);
    }

    /// Unit tests only: stalls the loop for `d` (a paused store, as SIGSTOP makes one).
    #[cfg(test)]
    pub fn stall(&self, d: Duration) {
        self.control(ControlMsg::Stall(d));
    }
}

#[derive(Debug, Clone)]
pub struct RaftStoreConfig {
    pub base_tick: Duration,
    pub peer: PeerConfig,
    /// Applied entries kept in the log before it is truncated.
    pub log_gc_threshold: u64,
    /// A leader keeps the entries a lagging follower still needs (so one
    /// that restarted catches up from the log, not a snapshot) until the
    /// log holds this many entries past the truncation point...
    pub log_gc_count_limit: u64,
    /// ... or this many bytes of entry data.
    pub log_gc_size_limit: u64,
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
            log_gc_count_limit: 50_000,
            log_gc_size_limit: 64 << 20,
            max_batch: 4096,
            peer_down_after: Duration::from_secs(10),
            inbox_capacity: 65536,
        }
    }
}

/// How often (and after how long unused) received snapshot files that no
/// replica installs are removed.
const SNAP_GC_INTERVAL: Duration = Duration::from_secs(60);

/// What the raftstore does when it cannot go on safely (a failed engine
/// write, a raft panic): the default logs and aborts the process, so
/// placement sees the store down and clients go elsewhere instead of a
/// store that answers health checks but no longer replicates.
pub type FatalHandler = Arc<dyn Fn(&str) + Send + Sync>;

pub fn abort_on_fatal() -> FatalHandler {
    Arc::new(|reason: &str| {
        tracing::error!(%reason, "raftstore cannot go on; aborting the store process");
        eprintln!("FATAL: raftstore cannot go on: {reason}");
        std::process::abort();
    })
}

pub struct RaftStore {
    pub(super) engine: Engine,
    pub(super) store_id: u64,
    pub(super) cfg: RaftStoreConfig,
    pub(super) peers: HashMap<u64, Peer>,
    pub(super) meta: Arc<RwLock<StoreMeta>>,
    rx: Receiver<StoreMsg>,
    ctl_rx: Receiver<ControlMsg>,
    closed: Arc<RwLock<bool>>,
    pub(super) peer_ctx: PeerCtx,
    pub(super) transport: Box<dyn Transport>,
    pub(super) feedback: Feedback,
    pub(super) snap_mgr: Arc<SnapManager>,
    pub(super) workers: SnapWorkers,
    /// Held while applied data is written and published (see `snap::worker`).
    pub(super) gate: ApplyGate,
    /// Woken when a region's leadership or shape changes (for heartbeats).
    pub(super) changed: Arc<Notify>,
    /// Regions whose meta must be republished after this round.
    pub(super) dirty: bool,
    fatal: FatalHandler,
    /// Set once a fatal error was reported: the loop stops.
    stopped: bool,
}

/// What a [`RaftStore`] is built from besides its engine.
pub struct RaftStoreParts {
    pub store_id: u64,
    pub cfg: RaftStoreConfig,
    pub meta: Arc<RwLock<StoreMeta>>,
    pub changed: Arc<Notify>,
    pub transport: Box<dyn Transport>,
    pub snap_mgr: Arc<SnapManager>,
    pub fatal: FatalHandler,
    /// The store's max ts and in-memory locks, shared with `storage`: a leader checks them
    /// for its followers' reads.
    pub cm: ConcurrencyManager,
}

impl RaftStore {
    /// Loads every region replica stored in `engine` and returns the loop
    /// (to run on its own thread) with the router that feeds it.
    pub fn new(
        engine: Engine,
        parts: RaftStoreParts,
    ) -> Result<(RaftStore, Router), RaftStateError> {
        let RaftStoreParts {
            store_id,
            cfg,
            meta,
            changed,
            transport,
            snap_mgr,
            fatal,
            cm,
        } = parts;
        let (tx, rx) = crossbeam_channel::bounded(cfg.inbox_capacity);
        let (ctl, ctl_rx) = crossbeam_channel::unbounded();
        let gate = ApplyGate::default();
        let workers =
            SnapWorkers::start(engine.clone(), snap_mgr.clone(), gate.clone(), ctl.clone())
                .map_err(RaftStateError::Worker)?;
        let peer_ctx = PeerCtx {
            cfg: cfg.peer.clone(),
            logger: raft_logger(),
            gen_tx: workers.gen.clone(),
            max_lease: super::lease::max_lease(cfg.base_tick, cfg.peer.election_tick),
            cm,
        };
        let mut store = RaftStore {
            engine,
            store_id,
            cfg,
            peers: HashMap::new(),
            meta,
            rx,
            ctl_rx,
            closed: Arc::default(),
            peer_ctx,
            transport,
            feedback: Feedback::new(ctl.clone()),
            snap_mgr,
            workers,
            gate,
            changed,
            dirty: false,
            fatal,
            stopped: false,
        };
        store.load_peers()?;
        store.meta.write().store_id = store_id;
        store.refresh_meta();
        let closed = store.closed.clone();
        Ok((store, Router { tx, ctl, closed }))
    }

    /// The raft election timeout (ticks times the tick).
    fn election_timeout(&self) -> Duration {
        let ticks = u32::try_from(self.cfg.peer.election_tick).unwrap_or(u32::MAX);
        self.cfg.base_tick.saturating_mul(ticks)
    }

    /// Creates a replica for every region stored here; one whose snapshot
    /// install a crash interrupted installs it again first.
    fn load_peers(&mut self) -> Result<(), RaftStateError> {
        for region in peer_storage::load_regions(&self.engine)? {
            let Some(me) = region.peers.iter().find(|p| p.store_id == self.store_id) else {
                tracing::warn!(
                    region_id = region.id,
                    store_id = self.store_id,
                    "region has no peer on this store; skipped"
                );
                continue;
            };
            let ps = peer_storage::load(&self.engine, &region)?;
            let mut peer = Peer::new(region.clone(), me.id, ps, &self.peer_ctx)?;
            peer.refuse_votes_until(Instant::now() + self.election_timeout());
            if let Some(pending) = peer_storage::pending_install(&self.engine, region.id)? {
                tracing::info!(
                    region_id = region.id,
                    index = pending.key.index,
                    "finishing an interrupted snapshot install"
                );
                self.start_install(&mut peer, pending);
            } else if region.peers.len() == 1 {
                // A lone voter need not wait out an election timeout.
                peer.node.campaign()?;
            }
            self.peers.insert(region.id, peer);
        }
        Ok(())
    }

    /// Reports a failure the store cannot go on from and stops the loop.
    pub(super) fn fatal(&mut self, reason: &str) {
        self.stopped = true;
        (self.fatal)(reason);
    }

    /// Runs the loop until [`Router::shutdown`] or every router is dropped.
    pub fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut last_snap_gc = Instant::now();
        let mut ticks: u64 = 0;
        loop {
            let timeout = self.cfg.base_tick.saturating_sub(last_tick.elapsed());
            crossbeam_channel::select! {
                recv(self.ctl_rx) -> m => match m {
                    Ok(ControlMsg::Shutdown) | Err(_) => break,
                    Ok(m) => self.on_control(m),
                },
                recv(self.rx) -> m => match m {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                },
                default(timeout) => {}
            }
            while let Ok(m) = self.ctl_rx.try_recv() {
                match m {
                    ControlMsg::Shutdown => return self.stop(),
                    m => self.on_control(m),
                }
            }
            if self.stopped {
                break;
            }
            let mut handled = 1;
            while handled < self.cfg.max_batch {
                match self.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
                handled += 1;
            }
            if last_tick.elapsed() >= self.cfg.base_tick {
                last_tick = Instant::now();
                ticks += 1;
                let now = Instant::now();
                for p in self.peers.values_mut() {
                    p.node.tick();
                    p.expire_reads(now);
                }
                // Refresh pending/down peers for heartbeats about once a second.
                if ticks.is_multiple_of(10) {
                    self.dirty = true;
                }
                // Followers ask their leaders for the resolved ts as often as it moves.
                let safe_ts_every = (RESOLVED_TS_INTERVAL.as_millis()
                    / self.cfg.base_tick.as_millis().max(1))
                .max(1) as u64;
                if ticks.is_multiple_of(safe_ts_every) {
                    for p in self.peers.values_mut() {
                        p.request_safe_ts();
                    }
                }
                if last_snap_gc.elapsed() >= SNAP_GC_INTERVAL {
                    last_snap_gc = Instant::now();
                    self.gc_received_snapshots();
                }
            }
            for p in self.peers.values_mut() {
                p.flush_reads();
                // Before this round's messages leave: a lease ended early (a transfer, a
                // step-down) must no longer answer reads on other threads when they do.
                p.publish_lease();
            }
            if let Err(e) = self.on_ready() {
                self.fatal(&format!("persisting or applying raft state failed: {e}"));
            }
            if self.stopped {
                break;
            }
            if self.dirty {
                self.dirty = false;
                self.refresh_meta();
            }
        }
        self.stop();
    }

    /// Removes received snapshot files no replica is installing (their
    /// message was refused, or raft found them stale).
    fn gc_received_snapshots(&self) {
        let keep: Vec<PathBuf> = self
            .peers
            .values()
            .filter_map(|p| p.installing.as_ref())
            .map(|i| self.snap_mgr.recv_path(&i.key))
            .collect();
        self.snap_mgr.remove_stale_received(&keep, SNAP_GC_INTERVAL);
    }

    /// Answers everything still waiting: no request is left hanging.
    fn stop(&mut self) {
        *self.closed.write() = true;
        for p in self.peers.values_mut() {
            p.withdraw_lease();
            p.fail_pending();
        }
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                StoreMsg::Propose { cb, .. }
                | StoreMsg::ChangePeer { cb, .. }
                | StoreMsg::ChangePeerV2 { cb, .. } => {
                    let _ = cb.send(Err(ProposeError::Shutdown));
                }
                StoreMsg::ReadIndex { cb, .. } | StoreMsg::ReplicaReadIndex { cb, .. } => {
                    let _ = cb.send(Err(ProposeError::Shutdown));
                }
                StoreMsg::TransferLeader { .. } | StoreMsg::Raft(_) => {}
                #[cfg(test)]
                StoreMsg::ConfStateOf { .. } => {}
            }
        }
        tracing::info!("raftstore stopped");
    }

    fn with_peer<T>(
        &mut self,
        region_id: u64,
        cb: oneshot::Sender<Result<T, ProposeError>>,
        f: impl FnOnce(&mut Peer, oneshot::Sender<Result<T, ProposeError>>),
    ) {
        match self.peers.get_mut(&region_id) {
            Some(p) if p.is_initialized() => f(p, cb),
            _ => {
                let _ = cb.send(Err(ProposeError::RegionNotFound(region_id)));
            }
        }
    }

    fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::Propose {
                region_id,
                cmd,
                term,
                cb,
            } => self.with_peer(region_id, cb, |p, cb| p.propose(&cmd, term, cb)),
            StoreMsg::ChangePeer {
                region_id,
                change,
                peer,
                cb,
            } => self.with_peer(region_id, cb, |p, cb| {
                p.propose_conf_change(change, peer, cb)
            }),
            StoreMsg::ChangePeerV2 {
                region_id,
                changes,
                cb,
            } => self.with_peer(region_id, cb, |p, cb| p.propose_conf_change_v2(changes, cb)),
            StoreMsg::ReadIndex { region_id, cb } => {
                self.with_peer(region_id, cb, |p, cb| p.read_index(cb))
            }
            StoreMsg::ReplicaReadIndex {
                region_id,
                check,
                cb,
            } => self.with_peer(region_id, cb, |p, cb| p.replica_read_index(check, cb)),
            StoreMsg::TransferLeader { region_id, peer_id } => {
                if let Some(p) = self.peers.get_mut(&region_id) {
                    if !p.transfer_leader(peer_id) {
                        tracing::debug!(
                            region_id,
                            peer_id,
                            "leader transfer skipped: target not a caught-up voter of the incoming configuration"
                        );
                    }
                }
            }
            StoreMsg::Raft(m) => self.on_raft_message(m),
            #[cfg(test)]
            StoreMsg::ConfStateOf { region_id, cb } => {
                let cs = self
                    .peers
                    .get(&region_id)
                    .map(|p| p.node.raft.prs().conf().to_conf_state());
                let _ = cb.send(cs);
            }
        }
    }

    fn on_control(&mut self, m: ControlMsg) {
        match m {
            ControlMsg::Shutdown => {}
            #[cfg(test)]
            ControlMsg::Stall(d) => std::thread::sleep(d),
            ControlMsg::SnapshotStatus {
                region_id,
                to_peer_id,
                delivered,
            } => {
                if let Some(p) = self.peers.get_mut(&region_id) {
                    let status = if delivered {
                        raft::SnapshotStatus::Finish
                    } else {
                        raft::SnapshotStatus::Failure
                    };
                    tracing::debug!(
                        region_id,
                        to_peer_id,
                        delivered,
                        "snapshot reported to raft"
                    );
                    p.node.report_snapshot(to_peer_id, status);
                }
            }
            ControlMsg::Unreachable {
                region_id,
                to_peer_id,
            } => {
                if let Some(p) = self.peers.get_mut(&region_id) {
                    p.node.report_unreachable(to_peer_id);
                }
            }
            ControlMsg::SnapshotInstalled {
                region_id,
                index,
                result,
            } => {
                if let Err(e) = result.map_err(|e| e.to_string()).and_then(|()| {
                    self.finish_install(region_id, index)
                        .map_err(|e| e.to_string())
                }) {
                    self.fatal(&format!(
                        "installing a snapshot of region {region_id} failed: {e}"
                    ));
                }
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
        lease: p.local_lease.clone(),
        progress: p.progress.clone(),
    }
}
