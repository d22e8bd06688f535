//! Pessimistic lock waiting through [`Storage`] on a one-store raftstore
//! (real RocksDB, real raft, no network): a blocked request waits while the
//! lock is held, wakes when any command removes the lock, times out with
//! `locked`, and gets `deadlock` when its wait would close a cycle.

use std::sync::Arc;
use std::time::Duration;

use proto::kvrpcpb::{self, Context, Op, PessimisticLockRequest, PessimisticLockResponse};
use proto::metapb;
use tokio::task::JoinHandle as TaskHandle;

use super::tests::{raft_cfg, MockTso};
use super::{Storage, StorageConfig};
use crate::lock_manager::{LockManager, PessimisticTxnConfig};
use crate::percolator::test_util::{mutation, pessimistic_lock_req, pessimistic_prewrite_req};
use crate::percolator::ConcurrencyManager;
use crate::raftstore::test_cluster::{region_on, TestCluster};

/// Longest wait the store allows; a waiter that is not woken answers only then.
const WAIT_CAP_MS: u64 = 10_000;
/// A window in which a blocked request must not answer.
const STILL_BLOCKED: Duration = Duration::from_millis(500);
/// Well under [`WAIT_CAP_MS`]: answering within it means the waiter was woken.
const WOKEN_WITHIN: Duration = Duration::from_secs(5);

struct TestStorage {
    storage: Storage,
    _cluster: TestCluster,
}

fn region() -> metapb::Region {
    region_on(1, &[1])
}

fn ctx() -> Option<Context> {
    let r = region();
    Some(Context {
        region_id: r.id,
        region_epoch: r.region_epoch,
        peer: r.peers.first().copied(),
        ..Default::default()
    })
}

impl TestStorage {
    async fn must_start() -> Self {
        let c = TestCluster::new(1, &region(), raft_cfg());
        c.must_leader(1, &[1]).await;
        let lock_cfg = PessimisticTxnConfig {
            wait_for_lock_timeout_ms: WAIT_CAP_MS,
            ..Default::default()
        };
        let storage = Storage::new(
            c.engine(1).clone(),
            c.router(1),
            c.meta(1),
            Arc::new(ConcurrencyManager::new(1)),
            StorageConfig::default(),
            MockTso::starting_at(1 << 20),
            LockManager::new(lock_cfg, c.meta(1)),
        );
        TestStorage {
            storage,
            _cluster: c,
        }
    }

    async fn lock(&self, mut req: PessimisticLockRequest) -> PessimisticLockResponse {
        req.context = ctx();
        self.storage.kv_pessimistic_lock(req).await.unwrap()
    }

    async fn must_lock(&self, keys: &[&[u8]], ts: u64) {
        let resp = self.lock(lock_req(keys, ts, ts, -1)).await;
        assert!(resp.errors.is_empty(), "txn {ts} locking: {resp:?}");
    }

    /// Starts a lock request that is expected to wait.
    fn spawn_lock(&self, req: PessimisticLockRequest) -> TaskHandle<PessimisticLockResponse> {
        let storage = self.storage.clone();
        tokio::spawn(async move {
            let mut req = req;
            req.context = ctx();
            storage.kv_pessimistic_lock(req).await.unwrap()
        })
    }

    async fn must_pessimistic_rollback(&self, keys: &[&[u8]], ts: u64) {
        let req = kvrpcpb::PessimisticRollbackRequest {
            context: ctx(),
            start_version: ts,
            for_update_ts: ts,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
        };
        let resp = self.storage.kv_pessimistic_rollback(req).await.unwrap();
        assert!(resp.errors.is_empty(), "{resp:?}");
    }
}

fn lock_req(keys: &[&[u8]], ts: u64, for_update_ts: u64, wait: i64) -> PessimisticLockRequest {
    let mut req = pessimistic_lock_req(keys, keys[0], ts, for_update_ts);
    req.wait_timeout = wait;
    req
}

/// Asserts `task` has not answered within [`STILL_BLOCKED`].
async fn must_still_wait(task: &mut TaskHandle<PessimisticLockResponse>, what: &str) {
    let early = tokio::time::timeout(STILL_BLOCKED, &mut *task).await;
    assert!(
        early.is_err(),
        "{what} answered while the lock was held: {early:?}"
    );
}

/// The answer of a task woken by a release: well before the wait cap.
async fn must_be_woken(
    task: TaskHandle<PessimisticLockResponse>,
    what: &str,
) -> PessimisticLockResponse {
    match tokio::time::timeout(WOKEN_WITHIN, task).await {
        Ok(resp) => resp.unwrap(),
        Err(_) => panic!("{what} was not woken by the release"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_pessimistic_lock_waits_for_the_holder_then_takes_the_lock() {
    let t = TestStorage::must_start().await;
    t.must_lock(&[b"k"], 10).await;
    let mut waiter = t.spawn_lock(lock_req(&[b"k"], 20, 20, 0));
    must_still_wait(&mut waiter, "txn 20").await;
    t.must_pessimistic_rollback(&[b"k"], 10).await;
    let resp = must_be_woken(waiter, "txn 20").await;
    assert!(resp.errors.is_empty(), "txn 20 must get the lock: {resp:?}");
    // Txn 20 holds it now.
    let resp = t.lock(lock_req(&[b"k"], 30, 30, -1)).await;
    let locked = resp.errors[0].locked.as_ref().expect("locked");
    assert_eq!(locked.lock_version, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woken_waiter_meets_the_newer_commit_as_a_write_conflict() {
    let t = TestStorage::must_start().await;
    t.must_lock(&[b"k"], 10).await;
    let mut waiter = t.spawn_lock(lock_req(&[b"k"], 20, 20, 0));
    must_still_wait(&mut waiter, "txn 20").await;
    let mut prewrite =
        pessimistic_prewrite_req(vec![mutation(Op::Put, b"k", b"v10")], b"k", 10, 10);
    prewrite.context = ctx();
    let resp = t.storage.kv_prewrite(prewrite).await.unwrap();
    assert!(resp.errors.is_empty(), "{resp:?}");
    must_still_wait(&mut waiter, "txn 20 (after the prewrite)").await;
    let commit = kvrpcpb::CommitRequest {
        context: ctx(),
        start_version: 10,
        keys: vec![b"k".to_vec()],
        commit_version: 30,
        ..Default::default()
    };
    let resp = t.storage.kv_commit(commit).await.unwrap();
    assert!(resp.error.is_none(), "{resp:?}");
    let resp = must_be_woken(waiter, "txn 20").await;
    let conflict = resp.errors[0].conflict.as_ref().expect("write conflict");
    assert_eq!(
        (conflict.conflict_ts, conflict.conflict_commit_ts),
        (10, 30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_an_abandoned_lock_wakes_its_waiter() {
    let t = TestStorage::must_start().await;
    let mut prewrite =
        crate::percolator::test_util::prewrite_req(vec![mutation(Op::Put, b"k", b"v")], b"k", 10);
    prewrite.context = ctx();
    assert!(t
        .storage
        .kv_prewrite(prewrite)
        .await
        .unwrap()
        .errors
        .is_empty());
    let mut waiter = t.spawn_lock(lock_req(&[b"k"], 20, 20, 0));
    must_still_wait(&mut waiter, "txn 20").await;
    // Roll txn 10 back in the whole region (no keys: every lock of it).
    let resolve = kvrpcpb::ResolveLockRequest {
        context: ctx(),
        start_version: 10,
        commit_version: 0,
        ..Default::default()
    };
    assert!(t
        .storage
        .kv_resolve_lock(resolve)
        .await
        .unwrap()
        .error
        .is_none());
    let resp = must_be_woken(waiter, "txn 20").await;
    assert!(resp.errors.is_empty(), "txn 20 must get the lock: {resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_bounds_the_wait_and_negative_means_no_wait() {
    let t = TestStorage::must_start().await;
    t.must_lock(&[b"k"], 10).await;
    let start = tokio::time::Instant::now();
    let resp = t.lock(lock_req(&[b"k"], 20, 20, -1)).await;
    assert_eq!(resp.errors[0].locked.as_ref().unwrap().lock_version, 10);
    assert!(start.elapsed() < STILL_BLOCKED, "a no-wait request waited");
    let start = tokio::time::Instant::now();
    let resp = t.lock(lock_req(&[b"k"], 20, 20, 300)).await;
    assert_eq!(resp.errors[0].locked.as_ref().unwrap().lock_version, 10);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "answered before its 300 ms wait: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opposite_lock_order_gets_a_deadlock_error_naming_the_cycle() {
    let t = TestStorage::must_start().await;
    t.must_lock(&[b"k1"], 10).await;
    t.must_lock(&[b"k2"], 20).await;
    let mut first = t.spawn_lock(lock_req(&[b"k2"], 10, 10, 0));
    must_still_wait(&mut first, "txn 10").await;
    let resp = t.lock(lock_req(&[b"k1"], 20, 20, 0)).await;
    let deadlock = resp.errors[0].deadlock.as_ref().expect("deadlock error");
    assert_eq!(deadlock.lock_ts, 10);
    assert_eq!(deadlock.lock_key, b"k1");
    assert_eq!(
        deadlock.deadlock_key_hash,
        crate::lock_manager::key_hash(b"k2")
    );
    let chain: Vec<_> = deadlock
        .wait_chain
        .iter()
        .map(|e| (e.txn, e.wait_for_txn, e.key.clone()))
        .collect();
    assert_eq!(
        chain,
        vec![(10, 20, b"k2".to_vec()), (20, 10, b"k1".to_vec())]
    );
    // The victim gives up; the other proceeds.
    must_still_wait(&mut first, "txn 10").await;
    t.must_pessimistic_rollback(&[b"k2"], 20).await;
    let resp = must_be_woken(first, "txn 10").await;
    assert!(resp.errors.is_empty(), "txn 10 must get k2: {resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_range_with_the_lock_wakes_its_waiter() {
    let t = TestStorage::must_start().await;
    t.must_lock(&[b"k"], 10).await;
    let mut waiter = t.spawn_lock(lock_req(&[b"k"], 20, 20, 0));
    must_still_wait(&mut waiter, "txn 20").await;
    let delete = kvrpcpb::DeleteRangeRequest {
        context: ctx(),
        start_key: b"a".to_vec(),
        end_key: b"z".to_vec(),
        ..Default::default()
    };
    let resp = t.storage.kv_delete_range(delete).await.unwrap();
    assert!(resp.error.is_empty(), "{resp:?}");
    let resp = must_be_woken(waiter, "txn 20").await;
    assert!(resp.errors.is_empty(), "txn 20 must get the lock: {resp:?}");
}
