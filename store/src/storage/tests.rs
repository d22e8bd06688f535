//! Storage over in-process raftstores (`raftstore::test_cluster`): request
//! paths whose correctness rests on raft leadership and terms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::kvrpcpb::{self, Context, Mutation, Op};

use super::{Storage, StorageConfig, TsoSource};
use crate::lock_manager::{LockManager, PessimisticTxnConfig};
use crate::percolator::ConcurrencyManager;
use crate::raftstore::test_cluster::{region_on, TestCluster};
use crate::raftstore::RaftStoreConfig;

/// MOCK timestamp oracle: strictly increasing numbers from a counter.
pub(crate) struct MockTso(AtomicU64);

impl MockTso {
    pub(crate) fn starting_at(ts: u64) -> Arc<Self> {
        Arc::new(MockTso(AtomicU64::new(ts)))
    }

    pub(crate) fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn jump_to(&self, ts: u64) {
        self.0.fetch_max(ts, Ordering::SeqCst);
    }
}

impl TsoSource for MockTso {
    fn get_ts(&self) -> futures::future::BoxFuture<'_, Result<u64, super::TsoError>> {
        Box::pin(async move { Ok(self.next()) })
    }
}

pub(crate) fn raft_cfg() -> RaftStoreConfig {
    RaftStoreConfig {
        base_tick: Duration::from_millis(20),
        ..Default::default()
    }
}

/// A storage over the replica of `store` (own concurrency manager, as a
/// store process has).
pub(crate) fn storage_on(c: &TestCluster, store: u64, tso: Arc<MockTso>) -> Storage {
    Storage::new(
        c.engine(store).clone(),
        c.router(store),
        c.meta(store),
        Arc::new(ConcurrencyManager::new(0)),
        StorageConfig::default(),
        tso,
        default_lock_manager(c, store),
    )
}

/// A lock manager with the default configuration.
fn default_lock_manager(c: &TestCluster, store: u64) -> LockManager {
    LockManager::new(PessimisticTxnConfig::default(), c.meta(store))
}

/// The request context addressing `store`'s replica of `region_id`.
pub(crate) fn ctx(c: &TestCluster, store: u64, region_id: u64) -> Context {
    let region = c.region(store, region_id).expect("replica on store");
    Context {
        region_id,
        region_epoch: region.region_epoch,
        peer: region.peers.iter().find(|p| p.store_id == store).copied(),
        ..Default::default()
    }
}

/// A one-key prewrite of `key` = `v` by transaction `start_ts`.
pub(crate) fn prewrite(context: Context, key: &[u8], start_ts: u64) -> kvrpcpb::PrewriteRequest {
    kvrpcpb::PrewriteRequest {
        context: Some(context),
        mutations: vec![Mutation {
            op: Op::Put as i32,
            key: key.to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }],
        primary_lock: key.to_vec(),
        start_version: start_ts,
        lock_ttl: 3000,
        ..Default::default()
    }
}

fn async_commit_prewrite(context: Context, key: &[u8], start_ts: u64) -> kvrpcpb::PrewriteRequest {
    kvrpcpb::PrewriteRequest {
        use_async_commit: true,
        secondaries: vec![],
        ..prewrite(context, key, start_ts)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commit_after_leadership_left_and_returned_lands_above_reads_served_meanwhile() {
    let c = TestCluster::new(2, &region_on(1, &[1, 2]), raft_cfg());
    c.must_leader(1, &[1, 2]).await;
    c.must_transfer_leader(1, 1).await;
    let tso = MockTso::starting_at(100);
    let (s1, s2) = (
        storage_on(&c, 1, tso.clone()),
        storage_on(&c, 2, tso.clone()),
    );
    // A first async-commit prewrite syncs store 1's max_ts for this term.
    let first = s1
        .kv_prewrite(async_commit_prewrite(ctx(&c, 1, 1), b"a", tso.next()))
        .await
        .unwrap();
    assert!(first.errors.is_empty(), "{first:?}");

    // A second one is held at its latch while leadership goes away and back.
    let latch = s1.inner.latches.acquire([b"k".as_slice()]).await;
    let pending = tokio::spawn({
        let (s1, req) = (
            s1.clone(),
            async_commit_prewrite(ctx(&c, 1, 1), b"k", tso.next()),
        );
        async move { s1.kv_prewrite(req).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.must_transfer_leader(1, 2).await;
    tso.jump_to(10_000);
    let read_ts = tso.next();
    let read = s2
        .kv_get(kvrpcpb::GetRequest {
            context: Some(ctx(&c, 2, 1)),
            key: b"k".to_vec(),
            version: read_ts,
        })
        .await
        .unwrap();
    assert!(read.not_found && read.error.is_none(), "{read:?}");
    c.must_transfer_leader(1, 1).await;
    drop(latch);

    let resp = pending.await.unwrap().unwrap();
    assert!(resp.errors.is_empty(), "{resp:?}");
    assert!(
        resp.min_commit_ts > read_ts,
        "async commit at {} would change what the read at {read_ts} on the other leader saw",
        resp.min_commit_ts
    );
}

/// A single-store cluster whose one region holds `[b, m)` (boundaries
/// memcomparable-encoded, as placement cuts them).
async fn must_bounded_region() -> (TestCluster, Storage) {
    let mut region = region_on(1, &[1]);
    region.start_key = proto::codec::encode_bytes(b"b");
    region.end_key = proto::codec::encode_bytes(b"m");
    let c = TestCluster::new(1, &region, raft_cfg());
    c.must_leader(1, &[1]).await;
    let s = storage_on(&c, 1, MockTso::starting_at(100));
    (c, s)
}

fn key_not_in_region(resp_region_error: Option<proto::errorpb::Error>) -> bool {
    resp_region_error.is_some_and(|e| e.key_not_in_region.is_some())
}

/// Puts a committed txn value straight into the engine, as a neighbouring
/// region's replica on this store would hold it.
fn must_put_txn_directly(s: &Storage, key: &[u8]) {
    use crate::engine::Modify;
    let mut txn = crate::mvcc::MvccTxn::new();
    txn.put_write(
        key,
        20,
        &crate::mvcc::Write::new(crate::mvcc::WriteType::Put, 10, Some(b"v".to_vec())),
    );
    let modifies: Vec<Modify> = txn.into_modifies();
    s.engine().write(&modifies, true).unwrap();
}

fn must_txn_get(s: &Storage, key: &[u8]) -> Option<Vec<u8>> {
    let snap = s.engine().snapshot();
    let reader = crate::mvcc::MvccReader::new(&snap);
    reader.get(key, 100).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_range_beyond_region_is_refused() {
    let (c, s) = must_bounded_region().await;
    must_put_txn_directly(&s, b"c");
    must_put_txn_directly(&s, b"x");
    for (start, end) in [
        (&b"c"[..], &b""[..]),
        (b"c", b"z"),
        (b"", b"d"),
        (b"a", b"d"),
    ] {
        let resp = s
            .kv_delete_range(kvrpcpb::DeleteRangeRequest {
                context: Some(ctx(&c, 1, 1)),
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                ..Default::default()
            })
            .await;
        let region_error = match resp {
            Err(super::Error::Region(e)) => Some(*e),
            other => panic!("delete range {start:?}..{end:?} answered {other:?}"),
        };
        assert!(key_not_in_region(region_error), "{start:?}..{end:?}");
    }
    assert!(
        must_txn_get(&s, b"x").is_some(),
        "a neighbour's key was deleted"
    );
    assert!(must_txn_get(&s, b"c").is_some());
    let raw = s
        .raw_delete_range(kvrpcpb::RawDeleteRangeRequest {
            context: Some(ctx(&c, 1, 1)),
            start_key: proto::codec::encode_bytes(b"c"),
            end_key: vec![],
            ..Default::default()
        })
        .await;
    assert!(matches!(raw, Err(super::Error::Region(e)) if e.key_not_in_region.is_some()));
    // Inside the region it works.
    s.kv_delete_range(kvrpcpb::DeleteRangeRequest {
        context: Some(ctx(&c, 1, 1)),
        start_key: b"c".to_vec(),
        end_key: b"d".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(must_txn_get(&s, b"c").is_none());
    assert!(must_txn_get(&s, b"x").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_key_outside_the_region_is_refused() {
    let (c, s) = must_bounded_region().await;
    let put = s
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx(&c, 1, 1)),
            key: vec![],
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(&put, Err(super::Error::Region(e)) if e.key_not_in_region.is_some()),
        "{put:?}"
    );
    let get = s
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx(&c, 1, 1)),
            key: vec![],
            ..Default::default()
        })
        .await;
    assert!(matches!(get, Err(super::Error::Region(_))), "{get:?}");
}

/// A storage whose raft entries may not exceed 16 KiB, over a one-store
/// region holding everything.
async fn must_small_entry_storage() -> (TestCluster, Storage) {
    let c = TestCluster::new(1, &region_on(1, &[1]), raft_cfg());
    c.must_leader(1, &[1]).await;
    let cfg = StorageConfig {
        raft_entry_max_size: 16 << 10,
        ..StorageConfig::default()
    };
    let s = Storage::new(
        c.engine(1).clone(),
        c.router(1),
        c.meta(1),
        Arc::new(ConcurrencyManager::new(0)),
        cfg,
        MockTso::starting_at(100),
        default_lock_manager(&c, 1),
    );
    (c, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_of_a_region_larger_than_one_raft_entry_runs_in_batches() {
    let (c, s) = must_small_entry_storage().await;
    // 1500 keys with an old version each: one entry dropping them all would
    // be about 40 KiB.
    let mut txn = crate::mvcc::MvccTxn::new();
    for i in 0..1500u32 {
        let key = format!("gc{i:05}");
        for (start, commit) in [(10, 11), (20, 21)] {
            let w =
                crate::mvcc::Write::new(crate::mvcc::WriteType::Put, start, Some(b"v".to_vec()));
            txn.put_write(key.as_bytes(), commit, &w);
        }
    }
    s.engine().write(&txn.into_modifies(), true).unwrap();
    let resp = s
        .kv_gc(kvrpcpb::GcRequest {
            context: Some(ctx(&c, 1, 1)),
            safe_point: 30,
        })
        .await
        .unwrap();
    assert!(
        resp.error.is_none() && resp.region_error.is_none(),
        "{resp:?}"
    );
    let snap = s.engine().snapshot();
    let reader = crate::mvcc::MvccReader::new(&snap);
    for i in [0u32, 777, 1499] {
        let key = format!("gc{i:05}");
        assert_eq!(reader.get(key.as_bytes(), 25).unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            reader.get(key.as_bytes(), 15).unwrap(),
            None,
            "{key} kept its old version"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_the_locks_of_a_large_region_runs_in_batches() {
    let (c, s) = must_small_entry_storage().await;
    let mut txn = crate::mvcc::MvccTxn::new();
    for i in 0..1500u32 {
        let key = format!("lock{i:05}");
        let mut lock =
            crate::mvcc::Lock::new(crate::mvcc::LockType::Put, b"lock00000".to_vec(), 10, 3000);
        lock.short_value = Some(b"v".to_vec());
        txn.put_lock(key.as_bytes(), &lock);
    }
    s.engine().write(&txn.into_modifies(), true).unwrap();
    let resp = s
        .kv_resolve_lock(kvrpcpb::ResolveLockRequest {
            context: Some(ctx(&c, 1, 1)),
            start_version: 10,
            commit_version: 12,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        resp.error.is_none() && resp.region_error.is_none(),
        "{resp:?}"
    );
    let snap = s.engine().snapshot();
    let reader = crate::mvcc::MvccReader::new(&snap);
    assert!(reader
        .scan_locks(b"", None, |_| true, 0)
        .unwrap()
        .is_empty());
    assert_eq!(reader.get(b"lock01234", 20).unwrap(), Some(b"v".to_vec()));
}
