//! The raftstore loop: one thread drives every region replica of the store.
//!
//! Each round drains the inbox (proposals), ticks when due, then handles the
//! readies of all regions together: their log entries and hard states go into
//! one write batch persisted with a single synced write, and their committed
//! entries into one apply batch. Upper layers talk to the loop through a
//! [`Router`] and read region routing from [`StoreMeta`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::RwLock;
use raft::prelude::Entry;
use rocksdb::WriteBatch;
use tokio::sync::{oneshot, Notify};

use super::cmd::RaftCmd;
use super::logger::raft_logger;
use super::peer::{Peer, PeerConfig};
use super::peer_storage::{self, StorageError};
use super::split;
use super::ProposeError;
use crate::engine::{Engine, Modify};
use proto::metapb;

/// What the store knows of one region it holds, shared with upper layers.
#[derive(Debug, Clone)]
pub struct RegionMeta {
    pub region: metapb::Region,
    /// Peer id of the leader this replica last heard of (0 = unknown).
    pub leader_id: u64,
    pub is_leader: bool,
    pub term: u64,
}

impl RegionMeta {
    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        self.region
            .peers
            .iter()
            .find(|p| p.id == self.leader_id)
            .cloned()
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
        cb: oneshot::Sender<Result<(), ProposeError>>,
    },
    Shutdown,
}

/// Handle through which upper layers reach the raftstore loop.
#[derive(Clone)]
pub struct Router {
    tx: Sender<StoreMsg>,
}

impl Router {
    /// Proposes `cmd` to `region_id`; resolves once applied on this replica.
    pub async fn propose(&self, region_id: u64, cmd: RaftCmd) -> Result<(), ProposeError> {
        let (cb, rx) = oneshot::channel();
        self.tx
            .send(StoreMsg::Propose { region_id, cmd, cb })
            .map_err(|_| ProposeError::Shutdown)?;
        rx.await.map_err(|_| ProposeError::Shutdown)?
    }

    pub fn shutdown(&self) {
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
        }
    }
}

pub struct RaftStore {
    engine: Engine,
    cfg: RaftStoreConfig,
    peers: HashMap<u64, Peer>,
    meta: Arc<RwLock<StoreMeta>>,
    rx: Receiver<StoreMsg>,
    logger: slog::Logger,
    /// Woken when a region's leadership or shape changes (for heartbeats).
    changed: Arc<Notify>,
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
            let mut peer = Peer::new(region.clone(), me.id, ps, &cfg.peer, &logger)?;
            if region.peers.len() == 1 {
                // A lone voter need not wait out an election timeout.
                peer.node.campaign()?;
            }
            peers.insert(region.id, peer);
        }
        {
            let mut m = meta.write();
            m.store_id = store_id;
            for p in peers.values() {
                m.regions.insert(p.region.id, region_meta(p));
            }
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let store = RaftStore {
            engine,
            cfg,
            peers,
            meta,
            rx,
            logger,
            changed,
        };
        Ok((store, Router { tx }))
    }

    /// Runs the loop until [`Router::shutdown`] or every router is dropped.
    pub fn run(mut self) {
        let mut last_tick = Instant::now();
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
                for p in self.peers.values_mut() {
                    p.node.tick();
                }
            }
            if let Err(e) = self.on_ready() {
                tracing::error!(error = %e, "raftstore failed to persist; stopping");
                break;
            }
        }
        self.stop();
    }

    fn stop(&mut self) {
        for p in self.peers.values_mut() {
            p.fail_proposals();
        }
        tracing::info!("raftstore stopped");
    }

    fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::Propose { region_id, cmd, cb } => match self.peers.get_mut(&region_id) {
                Some(p) => p.propose(&cmd, cb),
                None => {
                    let _ = cb.send(Err(ProposeError::RegionNotFound(region_id)));
                }
            },
            StoreMsg::Shutdown => {}
        }
    }

    /// Persists, applies and advances every region that has a ready.
    fn on_ready(&mut self) -> Result<(), StorageError> {
        let mut log_wb = WriteBatch::default();
        let mut readies = Vec::new();
        let mut to_apply: Vec<(u64, Vec<Entry>)> = Vec::new();
        let mut leadership_changed = false;
        for (id, p) in self.peers.iter_mut() {
            if !p.node.has_ready() {
                continue;
            }
            let mut rd = p.node.ready();
            if rd.ss().is_some() {
                leadership_changed = true;
                if !p.is_leader() {
                    p.fail_proposals();
                }
            }
            // Messages to other replicas travel once replication exists.
            drop(rd.take_messages());
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((*id, committed));
            }
            p.ps.append(rd.entries(), &self.engine, &mut log_wb)?;
            if let Some(hs) = rd.hs() {
                p.ps.set_hard_state(hs, &self.engine, &mut log_wb)?;
            }
            drop(rd.take_persisted_messages());
            readies.push((*id, rd));
        }
        if readies.is_empty() {
            return Ok(());
        }
        if !log_wb.is_empty() {
            self.engine.write_batch(log_wb, true)?;
        }
        let mut apply_wb = WriteBatch::default();
        for (id, rd) in readies {
            let p = self.peers.get_mut(&id).expect("peer with ready");
            let mut light = p.node.advance(rd);
            if let Some(commit) = light.commit_index() {
                p.ps.set_commit(commit, &self.engine, &mut apply_wb)?;
            }
            drop(light.take_messages());
            let committed = light.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((id, committed));
            }
        }
        self.apply(to_apply, apply_wb)?;
        if leadership_changed {
            self.refresh_meta();
        }
        Ok(())
    }

    /// Applies committed entries of every region in one write batch, then
    /// answers their proposals and starts the regions splits created.
    fn apply(
        &mut self,
        to_apply: Vec<(u64, Vec<Entry>)>,
        mut wb: WriteBatch,
    ) -> Result<(), StorageError> {
        let mut results = Vec::with_capacity(to_apply.len());
        let mut splits = Vec::new();
        for (id, entries) in &to_apply {
            let p = self.peers.get_mut(id).expect("peer with entries");
            let mut modifies: Vec<Modify> = Vec::new();
            let mut entry_results = Vec::with_capacity(entries.len());
            for e in entries {
                let result = match p.entry_cmd(e) {
                    None => Ok(()),
                    Some(RaftCmd::Write(m)) => {
                        modifies.extend(m);
                        Ok(())
                    }
                    Some(RaftCmd::BatchSplit(bs)) => {
                        match split::exec_batch_split(&p.region, &bs) {
                            Ok(outcome) => {
                                modifies.extend(split::split_writes(&outcome));
                                p.region = outcome.left.clone();
                                splits.push((p.is_leader(), outcome));
                                Ok(())
                            }
                            Err(reason) => {
                                tracing::info!(region_id = p.region.id, %reason, "split rejected");
                                Err(ProposeError::Rejected {
                                    region_id: p.region.id,
                                    reason,
                                })
                            }
                        }
                    }
                };
                entry_results.push(result);
                p.ps.apply_state.applied_index = e.index;
            }
            modifies.push(p.ps.apply_state_modify());
            self.engine.fill_batch(&mut wb, &modifies)?;
            results.push(entry_results);
        }
        if wb.is_empty() {
            return Ok(());
        }
        self.engine.write_batch(wb, false)?;
        // New regions are routable before the split's proposer hears back.
        if !splits.is_empty() {
            for (was_leader, outcome) in splits {
                self.start_split_regions(was_leader, outcome)?;
            }
            self.refresh_meta();
        }
        let mut gc_wb = WriteBatch::default();
        for ((id, entries), entry_results) in to_apply.into_iter().zip(results) {
            let p = self.peers.get_mut(&id).expect("peer with entries");
            for (e, r) in entries.iter().zip(entry_results) {
                p.on_applied(e, r);
            }
            p.node.advance_apply();
            let applied = p.ps.apply_state.applied_index;
            if applied - p.ps.apply_state.truncated_index > 2 * self.cfg.log_gc_threshold {
                let to = applied - self.cfg.log_gc_threshold;
                p.ps.compact_to(to, &self.engine, &mut gc_wb)?;
            }
        }
        if !gc_wb.is_empty() {
            self.engine.write_batch(gc_wb, false)?;
        }
        Ok(())
    }

    /// Creates the replicas of regions a split produced on this store; on the
    /// parent's leader they campaign at once so the new ranges stay served.
    fn start_split_regions(
        &mut self,
        was_leader: bool,
        outcome: split::SplitOutcome,
    ) -> Result<(), StorageError> {
        let store_id = self.meta.read().store_id;
        for region in outcome.new_regions {
            let Some(me) = region.peers.iter().find(|p| p.store_id == store_id) else {
                continue;
            };
            let ps = peer_storage::load(&self.engine, &region)?;
            let mut peer = Peer::new(region.clone(), me.id, ps, &self.cfg.peer, &self.logger)?;
            if was_leader {
                peer.node.campaign()?;
            }
            tracing::info!(
                region_id = region.id,
                parent = outcome.left.id,
                "region created by split"
            );
            self.peers.insert(region.id, peer);
        }
        Ok(())
    }

    fn refresh_meta(&self) {
        let mut m = self.meta.write();
        for p in self.peers.values() {
            m.regions.insert(p.region.id, region_meta(p));
        }
        drop(m);
        self.changed.notify_one();
    }
}

fn region_meta(p: &Peer) -> RegionMeta {
    RegionMeta {
        region: p.region.clone(),
        leader_id: p.node.raft.leader_id,
        is_leader: p.is_leader(),
        term: p.node.raft.term,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CF_DEFAULT, CF_RAFT};
    use crate::raftstore::{keys, peer_storage};
    use std::time::Duration;

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer {
                id: 2,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn start(engine: &Engine) -> (Router, Arc<RwLock<StoreMeta>>, std::thread::JoinHandle<()>) {
        let meta = Arc::new(RwLock::new(StoreMeta::default()));
        let (store, router) = RaftStore::new(
            engine.clone(),
            1,
            RaftStoreConfig {
                log_gc_threshold: 8,
                ..Default::default()
            },
            meta.clone(),
            Arc::new(Notify::new()),
        )
        .unwrap();
        let t = std::thread::spawn(move || store.run());
        (router, meta, t)
    }

    async fn must_become_leader(meta: &Arc<RwLock<StoreMeta>>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !meta.read().regions.get(&1).is_some_and(|r| r.is_leader) {
            assert!(Instant::now() < deadline, "region 1 never elected a leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn put(i: u32) -> RaftCmd {
        RaftCmd::Write(vec![Modify::Put {
            cf: CF_DEFAULT,
            key: format!("k{i:04}").into_bytes(),
            value: i.to_be_bytes().to_vec(),
        }])
    }

    #[tokio::test]
    async fn writes_apply_survive_restart_and_log_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .write(&peer_storage::bootstrap_writes(&region()), true)
            .unwrap();

        let (router, meta, t) = start(&engine);
        must_become_leader(&meta).await;
        let writes: Vec<_> = (0..100).map(|i| router.propose(1, put(i))).collect();
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert!(matches!(
            router.propose(9, put(0)).await,
            Err(ProposeError::RegionNotFound(9))
        ));
        router.shutdown();
        t.join().unwrap();
        drop(router);

        for i in 0..100u32 {
            let v = engine
                .get_cf(CF_DEFAULT, format!("k{i:04}").as_bytes())
                .unwrap();
            assert_eq!(v, Some(i.to_be_bytes().to_vec()));
        }
        let apply = engine
            .get_cf(CF_RAFT, &keys::apply_state_key(1))
            .unwrap()
            .and_then(|v| keys::ApplyState::decode(&v))
            .unwrap();
        assert!(apply.applied_index > 100, "{apply:?}");
        assert!(
            apply.truncated_index > peer_storage::INIT_INDEX,
            "log never truncated: {apply:?}"
        );

        // Restart: the log reloads and new writes continue after the old ones.
        let (router, meta, t) = start(&engine);
        must_become_leader(&meta).await;
        router.propose(1, put(100)).await.unwrap();
        router.shutdown();
        t.join().unwrap();
        assert!(engine.get_cf(CF_DEFAULT, b"k0100").unwrap().is_some());
    }
}
