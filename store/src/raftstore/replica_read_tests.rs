//! Replica reads on in-process clusters (`test_cluster`): a follower serves a read only once
//! it has applied what the leader had committed when it confirmed the read; a cut-off
//! follower refuses; the leader checks the read's start ts and ranges first. And stale reads'
//! safe ts: a follower takes its leader's resolved ts only once it has applied the index that
//! goes with it.

use std::time::Duration;

use raft::prelude::MessageType;

use super::test_cluster::{region_on, TestCluster};
use super::test_filters::{Direction, RegionPacketFilter};
use super::{ProposeError, RaftStoreConfig};
use crate::mvcc::{Lock, LockType};
use proto::kvrpcpb;
use testkit::wait;

fn cfg() -> RaftStoreConfig {
    RaftStoreConfig {
        base_tick: Duration::from_millis(20),
        ..Default::default()
    }
}

/// Three replicas of region 1, "a" = "1" written and applied everywhere: the cluster, the
/// leader's store and a follower's.
async fn cluster_with_a_follower() -> (TestCluster, u64, u64) {
    let c = TestCluster::new(3, &region_on(1, &[1, 2, 3]), cfg());
    let leader = c.must_leader(1, &[1, 2, 3]).await;
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    c.must_put(1, "a", "1").await;
    for s in 1..=3 {
        c.must_get_on(s, "a", "1").await;
    }
    (c, leader, follower)
}

/// A check of the point `key` at `start_ts`.
fn check(start_ts: u64, key: &[u8]) -> kvrpcpb::ReadIndexRequest {
    let mut end = key.to_vec();
    end.push(0);
    kvrpcpb::ReadIndexRequest {
        start_ts,
        ranges: vec![kvrpcpb::KeyRange {
            start_key: key.to_vec(),
            end_key: end,
        }],
        ..Default::default()
    }
}

/// A lagging follower (appends to it dropped) waits for what the leader committed before the
/// read; once appends flow again, it answers, and it then holds the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_waits_for_the_leaders_commit_before_it_reads() {
    let (c, _leader, follower) = cluster_with_a_follower().await;
    c.add_send_filter(
        &RegionPacketFilter::new(1, follower)
            .direction(Direction::Recv)
            .msg_type(MessageType::MsgAppend),
    );
    c.must_put(1, "b", "2").await;
    assert_eq!(c.get(follower, "b"), None, "the follower lags");
    let router = c.router(follower);
    let mut read = tokio::spawn(async move { router.replica_read_index(1, check(0, b"b")).await });
    let early = tokio::time::timeout(Duration::from_millis(400), &mut read).await;
    assert!(
        early.is_err(),
        "a follower that has not applied the leader's commit must wait: {early:?}"
    );
    c.heal();
    let done = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read completes once the follower catches up")
        .unwrap();
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(c.get(follower, "b").as_deref(), Some("2"));
}

/// A follower cut off from the leader never answers from what it has: the read fails (the
/// client tries elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_follower_refuses_a_replica_read() {
    let (c, _leader, follower) = cluster_with_a_follower().await;
    c.isolate(follower);
    let read = tokio::time::timeout(
        super::peer::READ_INDEX_TIMEOUT * 2,
        c.replica_read_index(follower, 1, check(0, b"a")),
    )
    .await
    .expect("a cut-off follower answers within the read index timeout");
    assert!(
        matches!(
            read,
            Err(ProposeError::ReadIndexNotReady { .. } | ProposeError::NotLeader { .. })
        ),
        "{read:?}"
    );
    c.heal();
}

/// The leader raises its max ts to a replica read's start ts, and answers a read that must
/// see an in-memory (async-commit) lock with the lock; a read below the lock goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_checks_a_replica_reads_start_ts_and_memory_locks() {
    let (c, leader, follower) = cluster_with_a_follower().await;
    let cm = c.cm(leader);
    assert!(cm.max_ts() < 100);
    c.replica_read_index(follower, 1, check(100, b"a"))
        .await
        .unwrap();
    assert!(cm.max_ts() >= 100, "max ts {}", cm.max_ts());

    let _guard = cm
        .lock_key(b"k", |_| {
            let mut lock = Lock::new(LockType::Put, b"k".to_vec(), 150, 3000);
            lock.use_async_commit = true;
            lock.min_commit_ts = 160;
            Some(lock)
        })
        .unwrap();
    let locked = c.replica_read_index(follower, 1, check(200, b"k")).await;
    match locked {
        Err(ProposeError::ReplicaReadLocked(lock)) => {
            assert_eq!((lock.key.as_slice(), lock.lock_version), (&b"k"[..], 150));
        }
        other => panic!("a read above the lock must meet it: {other:?}"),
    }
    // Below the lock's ts, or on another key, the read goes on.
    c.replica_read_index(follower, 1, check(140, b"k"))
        .await
        .unwrap();
    c.replica_read_index(follower, 1, check(200, b"other"))
        .await
        .unwrap();
    // A leader's own read with nothing to check is not disturbed by the lock.
    c.read_index(leader, 1).await.unwrap();
}

/// The leader's resolved ts reaches a follower (it asks about once a second), but only once
/// the follower has applied the index the ts was resolved at: a lagging follower keeps its
/// old safe ts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_the_resolved_ts_once_it_has_applied_its_index() {
    let (c, leader, follower) = cluster_with_a_follower().await;
    let (lead, follow) = (c.progress(leader, 1).await, c.progress(follower, 1).await);
    lead.resolved(100, lead.applied());
    assert_eq!(
        lead.safe_ts(),
        100,
        "the leader serves up to its resolved ts at once"
    );
    wait::for_("the follower's safe ts to reach the leader's resolved ts")
        .within(Duration::from_secs(10))
        .until(|| follow.safe_ts() == 100)
        .await;

    // The follower lags: a ts resolved with the leader's newer index must wait for it.
    c.add_send_filter(
        &RegionPacketFilter::new(1, follower)
            .direction(Direction::Recv)
            .msg_type(MessageType::MsgAppend),
    );
    c.must_put(1, "b", "2").await;
    lead.resolved(200, lead.applied());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        follow.safe_ts(),
        100,
        "a follower that has not applied index {} must not take ts 200",
        lead.applied()
    );
    c.heal();
    wait::for_("the follower's safe ts to move on once it caught up")
        .within(Duration::from_secs(10))
        .until(|| follow.safe_ts() == 200)
        .await;
    assert_eq!(c.get(follower, "b").as_deref(), Some("2"));
}
