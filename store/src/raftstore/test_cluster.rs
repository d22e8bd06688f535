//! An in-process cluster of raftstores for tests: real engines in temp dirs,
//! real raft, and a local transport whose per-store [`Filters`] partition,
//! isolate or drop traffic. Assertions wait on conditions with deadlines.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::RwLock;
use proto::{metapb, storepb};
use testkit::wait;
use tokio::sync::Notify;

use super::cmd::RaftCmd;
use super::peer_storage;
use super::snap::{SnapKey, SnapManager};
use super::test_filters::{FilterFactory, Isolation, Partition};
use super::transport::{Feedback, FilteredTransport, Filters, Transport};
use super::{ProposeError, RaftStore, RaftStoreConfig, RaftStoreParts, Router, StoreMeta};
use crate::data_keys::RawSpace;
use crate::engine::{Engine, Modify, CF_DEFAULT};
use crate::percolator::ConcurrencyManager;

type Routers = Arc<RwLock<HashMap<u64, (Router, Arc<SnapManager>)>>>;

/// Delivers messages straight to the destination store's router; a
/// snapshot's file is copied into the destination's snapshot directory
/// first, as the gRPC transport streams it.
struct LocalTransport {
    routers: Routers,
    snaps: Arc<SnapManager>,
}

impl LocalTransport {
    fn copy_snapshot(&self, m: &storepb::RaftMessage, to: &SnapManager) -> bool {
        let Ok(msg) = <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&m.message)
        else {
            return false;
        };
        let meta = msg.get_snapshot().get_metadata();
        let key = SnapKey {
            region_id: m.region_id,
            term: meta.term,
            index: meta.index,
        };
        let tmp = to.recv_tmp_path(&key);
        let copied = std::fs::copy(self.snaps.gen_path(&key), &tmp).is_ok()
            && crate::raftstore::snap::file::publish(&tmp, &to.recv_path(&key)).is_ok();
        if copied {
            to.count_received();
        }
        copied
    }
}

impl Transport for LocalTransport {
    fn send(&self, msgs: Vec<storepb::RaftMessage>, feedback: &Feedback) {
        let routers = self.routers.read();
        for m in msgs {
            let to = m.to_peer.map(|p| p.store_id).unwrap_or(0);
            let Some((r, snaps)) = routers.get(&to) else {
                if m.is_snapshot {
                    feedback.snapshot_status(&m, false);
                }
                continue;
            };
            if m.is_snapshot {
                let delivered =
                    self.copy_snapshot(&m, snaps) && r.send_raft_message(m.clone()).is_ok();
                feedback.snapshot_status(&m, delivered);
            } else {
                let _ = r.send_raft_message(m);
            }
        }
    }
}

struct Node {
    engine: Engine,
    _dir: tempfile::TempDir,
    snaps: Arc<SnapManager>,
    meta: Arc<RwLock<StoreMeta>>,
    filters: Filters,
    /// Why the raftstore stopped for good, if it did.
    fatal: Arc<parking_lot::Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
    /// The store's max ts and in-memory locks (kept across restarts, as a test sees fit).
    cm: ConcurrencyManager,
}

pub struct TestCluster {
    nodes: HashMap<u64, Node>,
    routers: Routers,
    cfg: RaftStoreConfig,
}

pub fn region_on(region_id: u64, stores: &[u64]) -> metapb::Region {
    metapb::Region {
        id: region_id,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: stores
            .iter()
            .map(|s| metapb::Peer {
                id: region_id * 100 + s,
                store_id: *s,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn put_cmd(key: &str, value: &str) -> RaftCmd {
    // Every test region starts at epoch version 1 and never splits.
    RaftCmd::write(
        1,
        vec![Modify::Put {
            cf: CF_DEFAULT,
            key: RawSpace::V1.key(key.as_bytes()),
            value: value.as_bytes().to_vec(),
        }],
    )
}

impl TestCluster {
    /// `stores` stores; `region` is bootstrapped on the stores it names.
    pub fn new(stores: u64, region: &metapb::Region, cfg: RaftStoreConfig) -> Self {
        let mut nodes = HashMap::new();
        for id in 1..=stores {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(&dir.path().join("db")).unwrap();
            let snaps = Arc::new(SnapManager::open(&dir.path().join("snap")).unwrap());
            if region.peers.iter().any(|p| p.store_id == id) {
                engine
                    .write(&peer_storage::bootstrap_writes(region).unwrap(), true)
                    .unwrap();
            }
            let node = Node {
                engine,
                _dir: dir,
                snaps,
                meta: Arc::new(RwLock::new(StoreMeta::default())),
                filters: Filters::default(),
                fatal: Arc::default(),
                thread: None,
                cm: ConcurrencyManager::new(0),
            };
            nodes.insert(id, node);
        }
        let mut c = TestCluster {
            nodes,
            routers: Arc::default(),
            cfg,
        };
        for id in 1..=stores {
            c.start(id);
        }
        c
    }

    pub fn start(&mut self, store_id: u64) {
        let node = self.nodes.get_mut(&store_id).unwrap();
        node.meta = Arc::new(RwLock::new(StoreMeta::default()));
        let local = LocalTransport {
            routers: self.routers.clone(),
            snaps: node.snaps.clone(),
        };
        let fatal = node.fatal.clone();
        let parts = RaftStoreParts {
            store_id,
            cfg: self.cfg.clone(),
            meta: node.meta.clone(),
            changed: Arc::new(Notify::new()),
            transport: Box::new(FilteredTransport::new(local, node.filters.clone())),
            snap_mgr: node.snaps.clone(),
            fatal: Arc::new(move |reason: &str| *fatal.lock() = Some(reason.to_string())),
            cm: node.cm.clone(),
        };
        let (store, router) = RaftStore::new(node.engine.clone(), parts).unwrap();
        node.thread = Some(std::thread::spawn(move || store.run()));
        self.routers
            .write()
            .insert(store_id, (router, node.snaps.clone()));
    }

    pub fn stop(&mut self, store_id: u64) {
        if let Some((r, _)) = self.routers.write().remove(&store_id) {
            r.shutdown();
        }
        if let Some(t) = self.nodes.get_mut(&store_id).and_then(|n| n.thread.take()) {
            t.join().unwrap();
        }
    }

    /// The read progress (applied index, safe ts) of `store_id`'s replica of `region_id`, once
    /// it is published.
    pub async fn progress(
        &self,
        store_id: u64,
        region_id: u64,
    ) -> std::sync::Arc<super::read_progress::ReadProgress> {
        let meta = self.nodes[&store_id].meta.clone();
        wait::for_(format!("store {store_id}'s replica of region {region_id}"))
            .until_some(|| {
                meta.read()
                    .regions
                    .get(&region_id)
                    .map(|r| r.progress.clone())
            })
            .await
    }

    /// `store_id`'s max ts and in-memory locks.
    pub fn cm(&self, store_id: u64) -> ConcurrencyManager {
        self.nodes[&store_id].cm.clone()
    }

    /// A replica read on `store_id` (a follower or learner there), checked by the leader
    /// with `check`.
    pub async fn replica_read_index(
        &self,
        store_id: u64,
        region_id: u64,
        check: proto::kvrpcpb::ReadIndexRequest,
    ) -> Result<u64, ProposeError> {
        self.router(store_id)
            .replica_read_index(region_id, check)
            .await
    }

    pub fn router(&self, store_id: u64) -> Router {
        self.routers.read()[&store_id].0.clone()
    }

    /// `store_id`'s router, unless the store is stopped.
    pub fn try_router(&self, store_id: u64) -> Option<Router> {
        self.routers.read().get(&store_id).map(|(r, _)| r.clone())
    }

    pub fn snaps(&self, store_id: u64) -> &SnapManager {
        &self.nodes[&store_id].snaps
    }

    /// Why `store_id`'s raftstore stopped for good, if it did.
    pub fn fatal(&self, store_id: u64) -> Option<String> {
        self.nodes[&store_id].fatal.lock().clone()
    }

    pub fn meta(&self, store_id: u64) -> Arc<RwLock<StoreMeta>> {
        self.nodes[&store_id].meta.clone()
    }

    /// Hands leadership of `region_id` to the replica on `to`, retrying
    /// until that replica leads.
    pub async fn must_transfer_leader(&self, region_id: u64, to: u64) {
        let peer_id = self
            .region(to, region_id)
            .and_then(|r| r.peers.iter().find(|p| p.store_id == to).map(|p| p.id))
            .expect("a replica on the target store");
        wait::for_(format!("store {to} to lead region {region_id}"))
            .until(|| {
                if self.leaders(region_id) == [to] {
                    return true;
                }
                for s in self.leaders(region_id) {
                    let _ = self.router(s).transfer_leader(region_id, peer_id);
                }
                false
            })
            .await
    }

    pub fn engine(&self, store_id: u64) -> &Engine {
        &self.nodes[&store_id].engine
    }

    /// Cuts `store_id` off from every other store, both ways.
    pub fn isolate(&self, store_id: u64) {
        let stores = self.nodes.keys().copied().collect();
        self.add_send_filter(&Isolation { store_id, stores });
    }

    /// Cuts stores `left` off from stores `right`, both ways.
    pub fn partition(&self, left: &[u64], right: &[u64]) {
        self.add_send_filter(&Partition {
            left: left.to_vec(),
            right: right.to_vec(),
        });
    }

    /// Installs on every store the filters `factory` makes for it.
    pub fn add_send_filter(&self, factory: &dyn FilterFactory) {
        for (id, n) in &self.nodes {
            for f in factory.generate(*id) {
                n.filters.add(f);
            }
        }
    }

    /// Adds a filter to the outgoing raft traffic of `store_id`.
    pub fn add_filter(&self, store_id: u64, f: Box<dyn super::transport::Filter>) {
        self.nodes[&store_id].filters.add(f);
    }

    pub fn heal(&self) {
        for n in self.nodes.values() {
            n.filters.clear();
        }
    }

    /// Stores whose replica of `region_id` believes it leads.
    pub fn leaders(&self, region_id: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| {
                n.meta
                    .read()
                    .regions
                    .get(&region_id)
                    .is_some_and(|r| r.is_leader)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn region(&self, store_id: u64, region_id: u64) -> Option<metapb::Region> {
        self.nodes[&store_id]
            .meta
            .read()
            .regions
            .get(&region_id)
            .map(|r| r.region.clone())
    }

    /// Waits for exactly one leader of `region_id` among `among`.
    pub async fn must_leader(&self, region_id: u64, among: &[u64]) -> u64 {
        wait::for_(format!("one leader of region {region_id} among {among:?}"))
            .until_some(|| {
                let l: Vec<_> = self
                    .leaders(region_id)
                    .into_iter()
                    .filter(|s| among.contains(s))
                    .collect();
                (l.len() == 1).then(|| l[0])
            })
            .await
    }

    /// Proposes through whichever store leads, retrying until applied there.
    pub async fn must_put(&self, region_id: u64, key: &str, value: &str) {
        wait::for_(format!("the put of {key} to region {region_id} to apply"))
            .every(Duration::from_millis(50))
            .until_async(|| async {
                for s in self.leaders(region_id) {
                    let Some(r) = self.routers.read().get(&s).map(|(r, _)| r.clone()) else {
                        continue;
                    };
                    let put = r.propose(region_id, put_cmd(key, value));
                    if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), put).await {
                        return true;
                    }
                }
                false
            })
            .await
    }

    pub fn get(&self, store_id: u64, key: &str) -> Option<String> {
        self.engine(store_id)
            .get_cf(CF_DEFAULT, &RawSpace::V1.key(key.as_bytes()))
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub async fn must_get_on(&self, store_id: u64, key: &str, value: &str) {
        wait::for_(format!("{key}={value} on store {store_id}"))
            .until(|| self.get(store_id, key).as_deref() == Some(value))
            .await
    }

    /// The raft configuration `store_id`'s replica of `region_id` runs with, every list
    /// sorted (None: no replica there, or the store is down).
    pub async fn conf_state(
        &self,
        store_id: u64,
        region_id: u64,
    ) -> Option<raft::prelude::ConfState> {
        let mut cs = self.try_router(store_id)?.conf_state(region_id).await?;
        cs.voters.sort_unstable();
        cs.learners.sort_unstable();
        cs.voters_outgoing.sort_unstable();
        cs.learners_next.sort_unstable();
        Some(cs)
    }

    pub async fn read_index(&self, store_id: u64, region_id: u64) -> Result<u64, ProposeError> {
        self.router(store_id).read_index(region_id).await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}
