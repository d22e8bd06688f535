//! Raftstore behaviour on in-process clusters (`test_cluster`): replication,
//! leader loss, partitions, membership changes, snapshots, restarts.

use std::time::Duration;

use raft::prelude::ConfChangeType;

use super::keys::{self, ApplyState};
use super::peer_storage::INIT_INDEX;
use super::test_cluster::{must_until, put_cmd, region_on, TestCluster};
use super::{ProposeError, RaftStoreConfig};
use crate::engine::CF_RAFT;
use proto::metapb;

fn cfg() -> RaftStoreConfig {
    RaftStoreConfig {
        base_tick: Duration::from_millis(20),
        log_gc_threshold: 8,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_replica_writes_survive_restart_and_log_is_truncated() {
    let mut c = TestCluster::new(1, &region_on(1, &[1]), cfg());
    c.must_leader(1, &[1]).await;
    let router = c.router(1);
    let writes: Vec<_> = (0..100)
        .map(|i| router.propose(1, put_cmd(&format!("k{i:03}"), "v")))
        .collect();
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    assert!(matches!(
        c.router(1).propose(9, put_cmd("x", "y")).await,
        Err(ProposeError::RegionNotFound(9))
    ));
    c.stop(1);
    let apply = c
        .engine(1)
        .get_cf(CF_RAFT, &keys::apply_state_key(1))
        .unwrap()
        .and_then(|v| ApplyState::decode(&v))
        .unwrap();
    assert!(apply.applied_index > 100, "{apply:?}");
    assert!(
        apply.truncated_index > INIT_INDEX,
        "log never truncated: {apply:?}"
    );
    c.start(1);
    c.must_leader(1, &[1]).await;
    c.must_put(1, "after-restart", "v").await;
    assert_eq!(c.get(1, "k099").as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_and_survive_leader_isolation() {
    let c = TestCluster::new(3, &region_on(1, &[1, 2, 3]), cfg());
    let old = c.must_leader(1, &[1, 2, 3]).await;
    c.must_put(1, "a", "1").await;
    for s in 1..=3 {
        c.must_get_on(s, "a", "1").await;
    }
    c.isolate(old);
    let rest: Vec<u64> = (1..=3).filter(|s| *s != old).collect();
    let new = c.must_leader(1, &rest).await;
    assert_ne!(new, old);
    c.must_put(1, "b", "2").await;
    // The isolated old leader steps down and refuses reads; nothing new reached it.
    must_until("the isolated leader to step down", || {
        (!c.leaders(1).contains(&old)).then_some(())
    })
    .await;
    assert!(c.read_index(old, 1).await.is_err());
    assert_eq!(c.get(old, "b"), None);
    assert!(c.read_index(new, 1).await.is_ok());
    c.heal();
    c.must_get_on(old, "b", "2").await;
    c.must_leader(1, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_by_snapshot_promoted_and_old_replica_removed() {
    let c = TestCluster::new(2, &region_on(1, &[1]), cfg());
    c.must_leader(1, &[1]).await;
    for i in 0..40 {
        c.must_put(1, &format!("k{i:02}"), "v").await;
    }
    let learner = metapb::Peer {
        id: 202,
        store_id: 2,
        role: metapb::PeerRole::Learner as i32,
        ..Default::default()
    };
    let r1 = c.router(1);
    r1.change_peer(1, ConfChangeType::AddLearnerNode, learner)
        .await
        .unwrap();
    // The log was truncated long ago, so store 2 can only catch up by snapshot.
    c.must_get_on(2, "k39", "v").await;
    r1.change_peer(1, ConfChangeType::AddNode, learner)
        .await
        .unwrap();
    c.must_put(1, "after-promote", "v").await;
    c.must_get_on(2, "after-promote", "v").await;
    let region = c.region(1, 1).unwrap();
    assert_eq!(region.peers.len(), 2);
    assert_eq!(region.region_epoch.unwrap().conf_ver, 3);
    // Hand over and remove the original replica.
    r1.transfer_leader(1, 202);
    c.must_leader(1, &[2]).await;
    let first = region
        .peers
        .iter()
        .find(|p| p.store_id == 1)
        .copied()
        .unwrap();
    c.router(2)
        .change_peer(1, ConfChangeType::RemoveNode, first)
        .await
        .unwrap();
    must_until("store 1 to drop its replica", || {
        c.region(1, 1).is_none().then_some(())
    })
    .await;
    must_until("store 1 data to be cleared", || {
        c.get(1, "k00").is_none().then_some(())
    })
    .await;
    c.must_put(1, "after-remove", "v").await;
    c.must_get_on(2, "after-remove", "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_replica_catches_up_after_log_compaction() {
    let mut c = TestCluster::new(3, &region_on(1, &[1, 2, 3]), cfg());
    c.must_leader(1, &[1, 2, 3]).await;
    c.must_put(1, "before", "v").await;
    let down = c.leaders(1)[0] % 3 + 1;
    c.stop(down);
    for i in 0..60 {
        c.must_put(1, &format!("k{i:02}"), "v").await;
    }
    c.start(down);
    c.must_get_on(down, "k59", "v").await;
    c.must_get_on(down, "before", "v").await;
}
