//! The placement client and the heartbeat task across placement leader
//! changes, against the scripted members of [`super::fake_placement`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use proto::metapb;
use proto::pdpb::StoreStats;
use testkit::wait;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::fake_placement::{base, Event, FakeGroup, CLUSTER_ID};
use super::heartbeat::{Heartbeat, HeartbeatConfig};
use super::placement_client::{PlacementClient, PlacementError};
use crate::engine::Engine;
use crate::raftstore::split_check::SplitLimits;
use crate::raftstore::{RegionMeta, Router, StoreMeta, StoreMsg};

/// Bound on the heartbeat task's exit (condition waits use [`wait`]'s default, also 20 s).
const WAIT: Duration = Duration::from_secs(20);

async fn must_connect(endpoints: &[String], call_deadline: Duration) -> PlacementClient {
    PlacementClient::connect_with_deadline(endpoints, Duration::from_secs(10), call_deadline)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_follower_endpoint_leads_the_client_to_the_leader() {
    let group = FakeGroup::start(3, Some(1)).await;
    let placement = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    assert_eq!(placement.cluster_id(), CLUSTER_ID);
    assert_eq!(placement.leader_url(), group.urls[1]);
    let id = placement.alloc_id().await.unwrap();
    assert_eq!(id, base(1), "the id comes from the leader");
    assert!(group.saw(&Event::Served(1, "alloc_id")));
    assert!(!group.saw(&Event::Refused(0, "alloc_id")));
    let known = placement.endpoints();
    for url in &group.urls {
        assert!(
            known.contains(url),
            "{url} learned from GetMembers: {known:?}"
        );
    }
}

#[tokio::test]
async fn calls_in_flight_on_a_dead_leader_finish_on_the_new_one() {
    let group = FakeGroup::start(3, Some(1)).await;
    let placement = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    group.members[1].stall.store(true, Ordering::SeqCst);
    let mut allocs = Vec::new();
    for _ in 0..4 {
        let placement = placement.clone();
        allocs.push(tokio::spawn(async move { placement.alloc_id().await }));
    }
    let ts = tokio::spawn({
        let placement = placement.clone();
        async move { placement.get_ts().await }
    });
    let store_hb = tokio::spawn({
        let placement = placement.clone();
        async move { placement.store_heartbeat(StoreStats::default()).await }
    });
    wait::for_("six calls hanging on the old leader")
        .until(|| group.count(|e| matches!(e, Event::Stalled(1, _))) == 6)
        .await;
    // GetMembers answered by the survivors (the dying member may still
    // finish a request it accepted before stopping).
    let survivors_asked = || group.count(|e| matches!(e, Event::Members(i) if *i != 1));
    let members_before = survivors_asked();

    // The new leader is elected as the old one dies; the hanging calls
    // fail only with the old leader's death.
    group.set_leader(Some(2));
    group.kill(1);

    let mut ids = Vec::new();
    for a in allocs {
        ids.push(a.await.unwrap().unwrap());
    }
    ids.sort();
    assert_eq!(ids, (base(2)..base(2) + 4).collect::<Vec<_>>());
    let ts = ts.await.unwrap().unwrap();
    assert_eq!(ts >> 18, base(2) + 1, "timestamp from the new leader");
    store_hb.await.unwrap().unwrap();
    assert!(group.saw(&Event::Served(2, "store_heartbeat")));
    assert_eq!(placement.leader_url(), group.urls[2]);
    // Six callers failed on one connection: it was replaced once, by one
    // round of GetMembers over the members still alive.
    assert_eq!(placement.leader_generation(), 1);
    let asked = survivors_asked() - members_before;
    assert!(
        (1..=2).contains(&asked),
        "one leader resolution expected, saw {asked} GetMembers"
    );
}

#[tokio::test]
async fn a_not_leader_answer_moves_the_client() {
    let group = FakeGroup::start(3, Some(1)).await;
    let placement = must_connect(&group.urls, Duration::from_secs(10)).await;
    group.set_leader(Some(2));
    assert_eq!(placement.alloc_id().await.unwrap(), base(2));
    assert!(group.saw(&Event::Refused(1, "alloc_id")));
    assert_eq!(placement.leader_generation(), 1);
    let ts = placement.get_ts().await.unwrap();
    assert_eq!(ts >> 18, base(2) + 1);
}

#[tokio::test]
async fn without_a_leader_calls_fail_after_the_deadline() {
    let group = FakeGroup::start(3, Some(1)).await;
    let deadline = Duration::from_millis(600);
    let placement = must_connect(&group.urls, deadline).await;
    group.set_leader(None);
    let started = Instant::now();
    let err = placement.alloc_id().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            PlacementError::GaveUp {
                call: "alloc_id",
                ..
            }
        ),
        "unexpected error {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("no placement leader yet"), "{msg}");
    assert!(
        took >= deadline,
        "gave up after {took:?}, before the deadline"
    );
    assert!(
        took < super::placement_client::CALL_DEADLINE,
        "the client's own deadline applies, took {took:?}"
    );

    // Connecting while nobody leads fails too, saying why.
    let err = PlacementClient::connect(&group.urls, Duration::from_millis(300))
        .await
        .err()
        .expect("no leader, no client");
    assert!(matches!(err, PlacementError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("no placement leader yet"), "{err}");
}

#[tokio::test]
async fn answers_that_retrying_cannot_fix_are_returned_at_once() {
    let group = FakeGroup::start(1, Some(0)).await;
    let placement = must_connect(&group.urls, Duration::from_secs(10)).await;
    // The fake does not implement GetStore.
    match placement.get_store(1).await {
        Err(PlacementError::Rpc(s)) => assert_eq!(s.code(), tonic::Code::Unimplemented),
        other => panic!("expected Unimplemented, got {other:?}"),
    }
    assert_eq!(placement.leader_generation(), 0, "no leader change for it");
}

#[tokio::test]
async fn bad_endpoints_are_an_error_not_a_panic() {
    let err = PlacementClient::connect(&["http://bad host:1".into()], Duration::from_millis(100))
        .await
        .err()
        .expect("no client from a bad url");
    assert!(err.to_string().contains("bad placement url"), "{err}");
}

fn led_region(id: u64) -> RegionMeta {
    RegionMeta {
        region: metapb::Region {
            id,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: vec![metapb::Peer {
                id: id + 1,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        },
        leader_id: id + 1,
        is_leader: true,
        term: 1,
        pending_peers: vec![],
        down_peers: vec![],
        written: Default::default(),
        lease: Default::default(),
        progress: Default::default(),
    }
}

/// Whether a transfer-leader operator naming `peer_id` for `region_id`
/// reached the router; other messages are drained and dropped.
fn drain_for_transfer(
    inbox: &crossbeam_channel::Receiver<StoreMsg>,
    region_id: u64,
    peer_id: u64,
) -> bool {
    let mut found = false;
    while let Ok(msg) = inbox.try_recv() {
        if let StoreMsg::TransferLeader {
            region_id: r,
            peer_id: p,
        } = msg
        {
            found |= r == region_id && p == peer_id;
        }
    }
    found
}

#[tokio::test]
async fn region_heartbeats_follow_the_leader_and_its_operators_still_run() {
    let group = FakeGroup::start(3, Some(1)).await;
    let placement = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = must_open_engine(&dir).await;
    let (router, inbox) = Router::detached(1024);
    let meta = Arc::new(RwLock::new(StoreMeta::default()));
    meta.write().regions.insert(5, led_region(5));
    meta.write().regions.insert(8, led_region(8));
    // Intervals far beyond the test: after the first round, only the
    // stream's reopening can send region heartbeats.
    let hour = Duration::from_secs(3600);
    let hb = Heartbeat {
        placement,
        store: metapb::Store {
            id: 1,
            ..Default::default()
        },
        engine,
        router,
        meta,
        changed: Arc::new(Notify::new()),
        cfg: HeartbeatConfig {
            region_interval: hour,
            store_interval: hour,
            split_check_interval: hour,
            split_limits: SplitLimits {
                max_size: u64::MAX,
                max_keys: u64::MAX,
            },
        },
        reporting_splits: Default::default(),
        disk: Default::default(),
    };
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(hb.run(stop_rx));

    wait::for_("both regions reported to the first leader")
        .until(|| group.saw(&Event::Heartbeat(1, 5)) && group.saw(&Event::Heartbeat(1, 8)))
        .await;
    wait::for_("the first leader's operator run")
        .until(|| drain_for_transfer(&inbox, 5, base(1)))
        .await;

    group.kill(1);
    group.set_leader(Some(2));

    wait::for_("both regions reported to the new leader")
        .until(|| group.saw(&Event::Heartbeat(2, 5)) && group.saw(&Event::Heartbeat(2, 8)))
        .await;
    wait::for_("the new leader's operator run")
        .until(|| drain_for_transfer(&inbox, 8, base(2)))
        .await;
    assert!(!task.is_finished(), "the heartbeat task survived");

    // And once more, this time by a "not leader" answer from a live member.
    group.set_leader(Some(0));
    wait::for_("both regions reported to the third leader")
        .until(|| group.saw(&Event::Heartbeat(0, 5)) && group.saw(&Event::Heartbeat(0, 8)))
        .await;
    assert!(!task.is_finished(), "the heartbeat task survived");

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

async fn must_open_engine(dir: &tempfile::TempDir) -> Engine {
    let path = dir.path().join("db");
    tokio::task::spawn_blocking(move || Engine::open(&path))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_bootstrap_retried_after_a_lost_answer_keeps_its_region() {
    let group = FakeGroup::start(3, Some(1)).await;
    group.members[1]
        .lose_bootstrap_answer
        .store(true, Ordering::SeqCst);
    let placement = must_connect(&group.urls[..1], Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = must_open_engine(&dir).await;
    let join = tokio::spawn({
        let engine = engine.clone();
        async move {
            let store = metapb::Store {
                address: "127.0.0.1:1".into(),
                ..Default::default()
            };
            super::bootstrap::join_cluster(&engine, &placement, store).await
        }
    });
    wait::for_("the bootstrap applied on the old leader, answer lost")
        .until(|| group.saw(&Event::Stalled(1, "bootstrap")))
        .await;
    group.set_leader(Some(2));
    group.kill(1);
    join.await.unwrap().unwrap();

    // The retry met its own success on the new leader, and the region the
    // cluster was bootstrapped with is still on this store.
    assert!(group.saw(&Event::Served(2, "bootstrap")));
    let bootstrapped = group.members[0].bootstrapped.lock().clone().unwrap();
    let local =
        tokio::task::spawn_blocking(move || crate::raftstore::peer_storage::load_regions(&engine))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        local.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![bootstrapped.id]
    );
}
