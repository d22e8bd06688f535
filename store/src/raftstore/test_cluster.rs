//! An in-process cluster of raftstores for tests: real engines in temp dirs,
//! real raft, and a local transport whose per-store [`Filters`] partition,
//! isolate or drop traffic. Assertions wait on conditions with deadlines.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use proto::{metapb, storepb};
use tokio::sync::Notify;

use super::cmd::RaftCmd;
use super::peer_storage;
use super::transport::{BlockStores, FilteredTransport, Filters, Transport};
use super::{ProposeError, RaftStore, RaftStoreConfig, Router, StoreMeta};
use crate::engine::{Engine, Modify, CF_DEFAULT};
use crate::keys::RawSpace;

type Routers = Arc<RwLock<HashMap<u64, Router>>>;

/// Delivers messages straight to the destination store's router.
struct LocalTransport(Routers);

impl Transport for LocalTransport {
    fn send(&self, msgs: Vec<storepb::RaftMessage>) {
        let routers = self.0.read();
        for m in msgs {
            let to = m.to_peer.map(|p| p.store_id).unwrap_or(0);
            if let Some(r) = routers.get(&to) {
                let _ = r.send_raft_message(m);
            }
        }
    }
}

struct Node {
    engine: Engine,
    _dir: tempfile::TempDir,
    meta: Arc<RwLock<StoreMeta>>,
    filters: Filters,
    thread: Option<JoinHandle<()>>,
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
    RaftCmd::Write(vec![Modify::Put {
        cf: CF_DEFAULT,
        key: RawSpace::V1.key(key.as_bytes()),
        value: value.as_bytes().to_vec(),
    }])
}

impl TestCluster {
    /// `stores` stores; `region` is bootstrapped on the stores it names.
    pub fn new(stores: u64, region: &metapb::Region, cfg: RaftStoreConfig) -> Self {
        let mut nodes = HashMap::new();
        for id in 1..=stores {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(dir.path()).unwrap();
            if region.peers.iter().any(|p| p.store_id == id) {
                engine
                    .write(&peer_storage::bootstrap_writes(region), true)
                    .unwrap();
            }
            let node = Node {
                engine,
                _dir: dir,
                meta: Arc::new(RwLock::new(StoreMeta::default())),
                filters: Filters::default(),
                thread: None,
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
        let transport =
            FilteredTransport::new(LocalTransport(self.routers.clone()), node.filters.clone());
        let (store, router) = RaftStore::new(
            node.engine.clone(),
            store_id,
            self.cfg.clone(),
            node.meta.clone(),
            Arc::new(Notify::new()),
            Box::new(transport),
        )
        .unwrap();
        node.thread = Some(std::thread::spawn(move || store.run()));
        self.routers.write().insert(store_id, router);
    }

    pub fn stop(&mut self, store_id: u64) {
        if let Some(r) = self.routers.write().remove(&store_id) {
            r.shutdown();
        }
        if let Some(t) = self.nodes.get_mut(&store_id).and_then(|n| n.thread.take()) {
            t.join().unwrap();
        }
    }

    pub fn router(&self, store_id: u64) -> Router {
        self.routers.read()[&store_id].clone()
    }

    pub fn engine(&self, store_id: u64) -> &Engine {
        &self.nodes[&store_id].engine
    }

    /// Cuts `store_id` off from every other store, both ways.
    pub fn isolate(&self, store_id: u64) {
        let others: HashSet<u64> = self
            .nodes
            .keys()
            .copied()
            .filter(|s| *s != store_id)
            .collect();
        self.nodes[&store_id]
            .filters
            .add(Box::new(BlockStores(others)));
        for (id, n) in &self.nodes {
            if *id != store_id {
                n.filters.add(Box::new(BlockStores([store_id].into())));
            }
        }
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
        must_until(
            &format!("one leader of region {region_id} among {among:?}"),
            || {
                let l: Vec<_> = self
                    .leaders(region_id)
                    .into_iter()
                    .filter(|s| among.contains(s))
                    .collect();
                (l.len() == 1).then(|| l[0])
            },
        )
        .await
    }

    /// Proposes through whichever store leads, retrying until applied there.
    pub async fn must_put(&self, region_id: u64, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for s in self.leaders(region_id) {
                let Some(r) = self.routers.read().get(&s).cloned() else {
                    continue;
                };
                let put = r.propose(region_id, put_cmd(key, value));
                if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), put).await {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "put {key} to region {region_id} never applied"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn get(&self, store_id: u64, key: &str) -> Option<String> {
        self.engine(store_id)
            .get_cf(CF_DEFAULT, &RawSpace::V1.key(key.as_bytes()))
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub async fn must_get_on(&self, store_id: u64, key: &str, value: &str) {
        must_until(&format!("{key}={value} on store {store_id}"), || {
            (self.get(store_id, key).as_deref() == Some(value)).then_some(())
        })
        .await
    }

    pub async fn read_index(&self, store_id: u64, region_id: u64) -> Result<(), ProposeError> {
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

/// Polls `f` until it yields a value; panics naming `what` after 20 s.
pub async fn must_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
