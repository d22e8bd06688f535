//! Writes on a full disk, over an in-process raftstore: what adds data is
//! refused with `errorpb.disk_full`, what reads, deletes or finishes a
//! transaction goes on, and writes resume once the disk is normal again.

use std::sync::Arc;

use proto::kvrpcpb::{self, Context, DiskFullOpt, Mutation, Op};

use super::tests::{ctx, prewrite, raft_cfg, storage_on, MockTso};
use super::{Error, Storage};
use crate::disk::{DiskState, DiskStats, DiskUsage};
use crate::raftstore::test_cluster::{region_on, TestCluster};

const MIB: u64 = 1 << 20;

fn go(state: &DiskState, usage: DiskUsage) {
    let stats = DiskStats {
        capacity: 96 * MIB,
        available: 3 * MIB,
        used: 90 * MIB,
    };
    state.publish(stats, 8 * MIB, usage);
}

fn put(context: Context, key: &[u8]) -> kvrpcpb::RawPutRequest {
    kvrpcpb::RawPutRequest {
        context: Some(context),
        key: key.to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

/// The store ids of the `disk_full` error `result` must be.
fn must_disk_full<T: std::fmt::Debug>(what: &str, result: super::Result<T>) -> Vec<u64> {
    match result {
        Err(Error::Region(e)) => {
            assert!(e.message.contains("disk full"), "{what}: {}", e.message);
            match &e.disk_full {
                Some(full) => full.store_id.clone(),
                None => panic!("{what}: region error without disk_full: {e:?}"),
            }
        }
        other => panic!("{what}: expected disk_full, got {other:?}"),
    }
}

async fn must_start() -> (TestCluster, Storage, Arc<MockTso>, Arc<DiskState>) {
    let c = TestCluster::new(1, &region_on(1, &[1]), raft_cfg());
    c.must_leader(1, &[1]).await;
    let tso = MockTso::starting_at(100);
    let s = storage_on(&c, 1, tso.clone());
    let state = Arc::new(DiskState::default());
    assert!(s.set_disk_state(state.clone()));
    (c, s, tso, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_adding_data_and_serves_the_rest() {
    let (c, s, tso, state) = must_start().await;
    let here = || ctx(&c, 1, 1);
    s.raw_put(put(here(), b"a")).await.unwrap();
    let start_ts = tso.next();
    let pw = s
        .kv_prewrite(prewrite(here(), b"t", start_ts))
        .await
        .unwrap();
    assert!(pw.errors.is_empty(), "{pw:?}");

    go(&state, DiskUsage::AlmostFull);
    let stores = must_disk_full("raw put", s.raw_put(put(here(), b"b")).await);
    assert_eq!(stores, vec![1]);
    let batch = kvrpcpb::RawBatchPutRequest {
        context: Some(here()),
        pairs: vec![kvrpcpb::KvPair {
            key: b"b".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    must_disk_full("raw batch put", s.raw_batch_put(batch).await);
    let cas = kvrpcpb::RawCasRequest {
        context: Some(here()),
        key: b"b".to_vec(),
        value: b"v".to_vec(),
        previous_not_exist: true,
        ..Default::default()
    };
    must_disk_full("raw cas", s.raw_compare_and_swap(cas).await);
    must_disk_full(
        "prewrite",
        s.kv_prewrite(prewrite(here(), b"u", tso.next())).await,
    );
    let lock = kvrpcpb::PessimisticLockRequest {
        context: Some(here()),
        mutations: vec![Mutation {
            op: Op::PessimisticLock as i32,
            key: b"p".to_vec(),
            ..Default::default()
        }],
        primary_lock: b"p".to_vec(),
        start_version: tso.next(),
        for_update_ts: tso.next(),
        lock_ttl: 3000,
        wait_timeout: -1,
        ..Default::default()
    };
    must_disk_full("pessimistic lock", s.kv_pessimistic_lock(lock).await);

    // Reads, deletes and the commit of a transaction under way go on.
    let get = kvrpcpb::RawGetRequest {
        context: Some(here()),
        key: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(s.raw_get(get.clone()).await.unwrap().value, b"v");
    let del = kvrpcpb::RawDeleteRequest {
        context: Some(here()),
        key: b"a".to_vec(),
        ..Default::default()
    };
    s.raw_delete(del).await.unwrap();
    assert!(s.raw_get(get).await.unwrap().not_found);
    let commit = kvrpcpb::CommitRequest {
        context: Some(here()),
        keys: vec![b"t".to_vec()],
        start_version: start_ts,
        commit_version: tso.next(),
        ..Default::default()
    };
    let done = s.kv_commit(commit).await.unwrap();
    assert!(done.error.is_none(), "{done:?}");

    // Back to normal: writes resume.
    go(&state, DiskUsage::Normal);
    s.raw_put(put(here(), b"b")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_opt_lets_a_request_through_as_far_as_it_says() {
    let (c, s, _tso, state) = must_start().await;
    let with = |opt: DiskFullOpt| Context {
        disk_full_opt: opt as i32,
        ..ctx(&c, 1, 1)
    };
    go(&state, DiskUsage::AlmostFull);
    s.raw_put(put(with(DiskFullOpt::AllowedOnAlmostFull), b"x"))
        .await
        .unwrap();
    go(&state, DiskUsage::AlreadyFull);
    must_disk_full(
        "almost-full pass on an already full disk",
        s.raw_put(put(with(DiskFullOpt::AllowedOnAlmostFull), b"y"))
            .await,
    );
    s.raw_put(put(with(DiskFullOpt::AllowedOnAlreadyFull), b"y"))
        .await
        .unwrap();
}
