//! [`Detector`]: where this store's wait-for edges go, and the detector
//! leader's handling of every store's edges.
//!
//! One store in the cluster keeps the [`DetectTable`]: the one leading the
//! region that holds the empty key (the first region), as in TiKV. The role is
//! read from this store's region metadata on every call, so it follows that
//! region's leadership; on every change of role the table is emptied (edges
//! kept by a former leader may be stale). A store that does not lead sends its
//! edges through a [`LeaderLink`] (the server layer's gRPC `Detect` stream to
//! the leader) and learns of deadlocks through `LockManager::on_deadlock`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use proto::deadlock::{DeadlockRequest, DeadlockRequestType, DeadlockResponse, WaitForEntry};

use super::detect_table::{Cycle, DetectTable};
use crate::raftstore::StoreMeta;

/// Carries this store's requests to the detector leader on another store.
pub trait LeaderLink: Send + Sync + 'static {
    /// Queues `req`; never blocks. A request that cannot be delivered is
    /// dropped: its waiter then simply waits out its timeout.
    fn send(&self, req: DeadlockRequest);
}

/// This store does not lead the first region, so it keeps no wait-for graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this store is not the deadlock detector leader")]
pub struct NotLeader;

struct State {
    leader: bool,
    table: DetectTable,
}

pub struct Detector {
    meta: Arc<RwLock<StoreMeta>>,
    state: Mutex<State>,
    link: OnceLock<Arc<dyn LeaderLink>>,
}

/// Whether this store leads the region holding the empty key.
pub fn leads_first_region(meta: &StoreMeta) -> bool {
    meta.regions
        .values()
        .any(|r| r.is_leader && r.region.start_key.is_empty() && !r.region.peers.is_empty())
}

impl Detector {
    /// `ttl`: how long an edge lives after it was last reported.
    pub fn new(meta: Arc<RwLock<StoreMeta>>, ttl: Duration) -> Self {
        Detector {
            meta,
            state: Mutex::new(State {
                leader: false,
                table: DetectTable::new(ttl),
            }),
            link: OnceLock::new(),
        }
    }

    /// Sets the link to the leader (once; later calls are ignored).
    pub fn set_link(&self, link: Arc<dyn LeaderLink>) {
        let _ = self.link.set(link);
    }

    pub fn is_leader(&self) -> bool {
        leads_first_region(&self.meta.read())
    }

    /// Runs `f` on the table if this store leads, after emptying the table
    /// if the role changed since the last call.
    fn with_table<R>(&self, f: impl FnOnce(&mut DetectTable) -> R) -> Result<R, NotLeader> {
        let leader = self.is_leader();
        let mut state = self.state.lock();
        if state.leader != leader {
            state.table.clear();
            state.leader = leader;
            tracing::info!(leader, "deadlock detector role changed");
        }
        if !leader {
            return Err(NotLeader);
        }
        Ok(f(&mut state.table))
    }

    /// A request of this store: applied here when this store leads (a cycle
    /// found is returned), otherwise sent to the leader.
    pub fn submit(&self, tp: DeadlockRequestType, entry: WaitForEntry) -> Option<Cycle> {
        match self.with_table(|t| apply(t, tp, &entry, Instant::now())) {
            Ok(cycle) => cycle,
            Err(NotLeader) => {
                if let Some(link) = self.link.get() {
                    link.send(DeadlockRequest {
                        tp: tp as i32,
                        entry: Some(entry),
                        replace_locks_by_keys: None,
                    });
                }
                None
            }
        }
    }

    /// A request from another store's `Detect` stream; the answer to send
    /// back when it closes a cycle.
    pub fn handle_remote(
        &self,
        req: DeadlockRequest,
    ) -> Result<Option<DeadlockResponse>, NotLeader> {
        let entry = req.entry.unwrap_or_default();
        let tp = DeadlockRequestType::try_from(req.tp);
        let cycle = self.with_table(|t| {
            // A request type from a newer peer: nothing to do.
            tp.ok().and_then(|tp| apply(t, tp, &entry, Instant::now()))
        })?;
        Ok(cycle.map(|c| DeadlockResponse {
            entry: Some(entry),
            deadlock_key_hash: c.deadlock_key_hash,
            wait_chain: c.wait_chain,
            deadlock_key: c.deadlock_key,
        }))
    }

    /// Number of edges in this store's table (0 unless it leads).
    pub fn edge_count(&self) -> usize {
        self.state.lock().table.edge_count()
    }
}

fn apply(
    t: &mut DetectTable,
    tp: DeadlockRequestType,
    entry: &WaitForEntry,
    now: Instant,
) -> Option<Cycle> {
    match tp {
        DeadlockRequestType::Detect => t.detect(entry, now),
        DeadlockRequestType::CleanUpWaitFor => {
            t.clean_up_wait_for(entry.txn, entry.wait_for_txn, entry.key_hash);
            None
        }
        DeadlockRequestType::CleanUp => {
            t.clean_up(entry.txn);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::RegionMeta;
    use proto::metapb;

    /// Records what would go to the leader (a mock link, for unit tests).
    #[derive(Default)]
    struct MockLink(Mutex<Vec<DeadlockRequest>>);

    impl LeaderLink for MockLink {
        fn send(&self, req: DeadlockRequest) {
            self.0.lock().push(req);
        }
    }

    fn region(id: u64, start: &[u8], leader: bool) -> RegionMeta {
        RegionMeta {
            region: metapb::Region {
                id,
                start_key: start.to_vec(),
                peers: vec![metapb::Peer {
                    id: id * 10,
                    store_id: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            leader_id: 0,
            is_leader: leader,
            term: 1,
            pending_peers: vec![],
            down_peers: vec![],
            written: Default::default(),
            lease: Default::default(),
            progress: Default::default(),
        }
    }

    fn edge(txn: u64, holder: u64, key: &[u8]) -> WaitForEntry {
        WaitForEntry {
            txn,
            wait_for_txn: holder,
            key_hash: u64::from(key[0]),
            key: key.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_role_follows_leadership_of_the_first_region_and_resets_the_table() {
        let meta = Arc::new(RwLock::new(StoreMeta::default()));
        meta.write().regions.insert(2, region(2, b"m", true));
        let d = Detector::new(meta.clone(), Duration::from_secs(3));
        let link = Arc::new(MockLink::default());
        d.set_link(link.clone());
        // Leading another region does not make a detector.
        assert_eq!(
            d.submit(DeadlockRequestType::Detect, edge(1, 2, b"a")),
            None
        );
        assert_eq!(link.0.lock().len(), 1, "sent to the leader");
        let remote = DeadlockRequest {
            entry: Some(edge(2, 1, b"b")),
            ..Default::default()
        };
        assert_eq!(d.handle_remote(remote.clone()), Err(NotLeader));
        // Leading the first region: edges are kept here.
        meta.write().regions.insert(1, region(1, b"", true));
        assert_eq!(
            d.submit(DeadlockRequestType::Detect, edge(1, 2, b"a")),
            None
        );
        let resp = d.handle_remote(remote.clone()).unwrap().expect("deadlock");
        assert_eq!(resp.entry.unwrap().txn, 2);
        assert_eq!(resp.deadlock_key, b"a");
        assert_eq!(resp.wait_chain.len(), 1);
        assert_eq!(link.0.lock().len(), 1, "nothing more sent away");
        // Losing and regaining leadership forgets the old edges.
        meta.write().regions.get_mut(&1).unwrap().is_leader = false;
        assert_eq!(d.handle_remote(remote.clone()), Err(NotLeader));
        meta.write().regions.get_mut(&1).unwrap().is_leader = true;
        assert_eq!(d.handle_remote(remote), Ok(None));
        assert_eq!(d.edge_count(), 1);
    }
}
