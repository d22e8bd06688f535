//! Replica scheduling over real gRPC: a fake store sends region heartbeats on the stream,
//! applies every command placement answers with the way a TiKV leader does (a conf change
//! bumps `conf_ver`, a joint one once per change on entering and once per role changed on
//! leaving; a new learner is pending until it has caught up; a split keeps the left part and
//! bumps `version`), and heartbeats again.

mod common;

use std::time::Duration;

use common::*;
use proto::eraftpb::ConfChangeType;
use proto::metapb::{self, PeerRole};
use proto::pdpb::{self, RegionHeartbeatRequest, RegionHeartbeatResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The region as its leader's store sees it, and what it was asked to do.
struct FakeStore {
    cid: u64,
    region: metapb::Region,
    leader: metapb::Peer,
    pending: Vec<metapb::Peer>,
    commands: Vec<String>,
}

impl FakeStore {
    fn heartbeat(&self) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            header: header(self.cid),
            region: Some(self.region.clone()),
            leader: Some(self.leader),
            pending_peers: self.pending.clone(),
            term: 1,
            ..Default::default()
        }
    }

    /// Applies the command in `reply`; false if there was none.
    fn apply(&mut self, reply: &RegionHeartbeatResponse) -> bool {
        assert_ok_header(&reply.header, self.cid);
        assert_eq!(reply.region_id, self.region.id);
        let epoch = self
            .region
            .region_epoch
            .get_or_insert_with(Default::default);
        if let Some(change) = &reply.change_peer {
            let peer = change.peer.expect("change_peer names a peer");
            let peers = &mut self.region.peers;
            let kind = change.change_type();
            match kind {
                ConfChangeType::AddLearnerNode => {
                    assert_eq!(peer.role(), PeerRole::Learner);
                    assert!(!peers.iter().any(|p| p.store_id == peer.store_id));
                    peers.push(peer);
                    self.pending.push(peer);
                }
                ConfChangeType::AddNode => {
                    let p = peers
                        .iter_mut()
                        .find(|p| p.id == peer.id)
                        .expect("a learner");
                    assert_eq!(p.role(), PeerRole::Learner);
                    p.role = PeerRole::Voter as i32;
                }
                ConfChangeType::RemoveNode => {
                    assert_ne!(
                        peer.id, self.leader.id,
                        "placement asked to remove the leader"
                    );
                    peers.retain(|p| p.id != peer.id);
                }
            }
            epoch.conf_ver += 1;
            let name = kind.as_str_name();
            self.commands
                .push(format!("{name} on store {}", peer.store_id));
            return true;
        }
        if let Some(v2) = &reply.change_peer_v2 {
            let peers = &mut self.region.peers;
            if v2.changes.is_empty() {
                let changed = proto::membership::settle_joint_roles(peers);
                assert!(changed > 0, "asked to leave a joint state it is not in");
                epoch.conf_ver += changed;
                self.commands.push("LeaveJoint".to_owned());
                return true;
            }
            let mut names = Vec::new();
            for change in &v2.changes {
                let peer = change.peer.expect("a joint change names a peer");
                let p = peers
                    .iter_mut()
                    .find(|p| p.id == peer.id)
                    .expect("a joint change of a peer already in the region");
                let (from, to) = match change.change_type() {
                    ConfChangeType::AddNode => (PeerRole::Learner, PeerRole::IncomingVoter),
                    ConfChangeType::AddLearnerNode => (PeerRole::Voter, PeerRole::DemotingVoter),
                    ConfChangeType::RemoveNode => {
                        panic!("a voter is demoted, not removed, in a move")
                    }
                };
                assert_eq!(p.role(), from, "{change:?}");
                assert_ne!(p.id, self.leader.id, "placement demoted the leader");
                p.role = to as i32;
                let name = change.change_type().as_str_name();
                names.push(format!("{name} on store {}", peer.store_id));
            }
            epoch.conf_ver += v2.changes.len() as u64;
            self.commands
                .push(format!("EnterJoint: {}", names.join(", ")));
            return true;
        }
        if let Some(split) = &reply.split_region {
            // Keep the left part only: enough for placement to see the split happen.
            self.region.end_key = split.keys[0].clone();
            epoch.version += 1;
            self.commands.push("Split".to_owned());
            return true;
        }
        if let Some(transfer) = &reply.transfer_leader {
            self.leader = transfer.peer.expect("transfer_leader names a peer");
            self.commands
                .push(format!("TransferLeader to store {}", self.leader.store_id));
            return true;
        }
        false
    }

    fn voter_stores(&self) -> Vec<u64> {
        let mut v: Vec<u64> = (self.region.peers.iter())
            .filter(|p| p.role() == PeerRole::Voter)
            .map(|p| p.store_id)
            .collect();
        v.sort_unstable();
        v
    }
}

/// A heartbeat of store `id` with empty statistics; `cid` is `pd`'s cluster id.
async fn must_store_heartbeat(pd: &mut TestPd, cid: u64, id: u64) {
    assert_eq!(cid, pd.cluster_id());
    pd.must_store_heartbeat(pdpb::StoreStats {
        store_id: id,
        ..Default::default()
    })
    .await;
}

/// Heartbeats `live` stores and the region until `done` holds, then reports the final state
/// once more; a learner catches up when placement has nothing to say.
async fn drive(
    pd: &mut TestPd,
    fake: &mut FakeStore,
    live: &[u64],
    what: &str,
    done: impl Fn(&FakeStore) -> bool,
) {
    let (tx, rx) = mpsc::channel(4);
    let mut replies = pd
        .raw()
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(fake) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; commands so far: {:?}",
            fake.commands
        );
        for id in live {
            must_store_heartbeat(pd, fake.cid, *id).await;
        }
        tx.send(fake.heartbeat()).await.unwrap();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("a reply per heartbeat");
        if !fake.apply(&reply) {
            fake.pending.clear();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Report the final state, as the store would after applying.
    tx.send(fake.heartbeat()).await.unwrap();
    let reply = replies
        .message()
        .await
        .unwrap()
        .expect("a reply per heartbeat");
    assert_ok_header(&reply.header, fake.cid);
}

#[tokio::test]
async fn fake_store_reaches_three_voters_then_replaces_a_down_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_store_down_time = "2s".parse().unwrap();
    init_logging();
    let server = placement::start(config).await.unwrap();
    let cid = server.cluster_id();
    let base = server.url();
    let mut pd = TestPd::connect(&server).await;
    let (s1, region_id, p1) = pd.must_bootstrap_cluster().await;
    let (s2, s3) = (pd.must_alloc_id().await, pd.must_alloc_id().await);
    pd.must_put_store(store(s2)).await;
    pd.must_put_store(store(s3)).await;
    let mut fake = FakeStore {
        cid,
        region: region(region_id, b"", b"", 1, &[peer(p1, s1)]),
        leader: peer(p1, s1),
        pending: Vec::new(),
        commands: Vec::new(),
    };

    // The bootstrap region first splits at the default keyspace's boundaries; then a learner
    // goes to store 2, visible as a running operator.
    drive(&mut pd, &mut fake, &[s1, s2, s3], "the first add", |f| {
        f.commands.len() == 2
    })
    .await;
    assert_eq!(
        fake.commands,
        ["Split".to_owned(), format!("AddLearnerNode on store {s2}")]
    );
    let ops: serde_json::Value = reqwest::get(format!("{base}/pd/api/v1/operators"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ops[0]["region_id"], region_id);
    assert_eq!(ops[0]["desc"], "make-up-replica");
    assert_eq!(ops[0]["status"], "STARTED");
    assert_eq!(ops[0]["steps"].as_array().map(Vec::len), Some(2));
    assert_eq!(ops[0]["kind"], "region,replica");
    let leader_ops: serde_json::Value =
        reqwest::get(format!("{base}/pd/api/v1/operators?kind=leader"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(leader_ops, serde_json::json!([]));
    let one: serde_json::Value = reqwest::get(format!("{base}/pd/api/v1/operators/{region_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["desc"], "make-up-replica");
    let missing = reqwest::get(format!("{base}/pd/api/v1/operators/424242"))
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let running = pd.must_get_operator(region_id).await;
    assert_eq!(running.status(), pdpb::OperatorStatus::Running);
    assert_eq!(running.desc, b"make-up-replica");

    drive(&mut pd, &mut fake, &[s1, s2, s3], "three voters", |f| {
        f.voter_stores() == [s1, s2, s3] && f.pending.is_empty()
    })
    .await;
    assert_eq!(
        fake.commands[1..],
        [
            format!("AddLearnerNode on store {s2}"),
            format!("AddNode on store {s2}"),
            format!("AddLearnerNode on store {s3}"),
            format!("AddNode on store {s3}"),
        ]
    );
    let epoch = fake.region.region_epoch.unwrap();
    assert_eq!((epoch.conf_ver, epoch.version), (5, 2));

    // Store 3 stops heartbeating; store 4 joins. After max-store-down-time the peer on store
    // 3 is replaced by one on store 4 by joint consensus (a learner on store 4, promoted while
    // store 3's voter is demoted), then removed.
    let s4 = pd.must_alloc_id().await;
    pd.must_put_store(store(s4)).await;
    fake.commands.clear();
    drive(&mut pd, &mut fake, &[s1, s2, s4], "store 3 replaced", |f| {
        f.voter_stores() == [s1, s2, s4] && f.region.peers.len() == 3
    })
    .await;
    assert_eq!(
        fake.commands,
        [
            format!("AddLearnerNode on store {s4}"),
            format!("EnterJoint: AddNode on store {s4}, AddLearnerNode on store {s3}"),
            "LeaveJoint".to_owned(),
            format!("RemoveNode on store {s3}"),
        ]
    );

    // Placement's own view agrees, and the operators were counted.
    let r: serde_json::Value = reqwest::get(format!("{base}/pd/api/v1/region/id/{region_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["peers"].as_array().map(Vec::len), Some(3));
    let done = pd.must_get_operator(region_id).await;
    assert_eq!(
        done.desc, b"replace-down-replica",
        "the move removes the replaced peer itself"
    );
    assert_eq!(done.status(), pdpb::OperatorStatus::Success);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"placement_schedule_operators_total{event="create",type="make-up-replica"} 2"#,
        r#"placement_schedule_operators_total{event="finish",type="make-up-replica"} 2"#,
        r#"placement_schedule_operators_total{event="finish",type="replace-down-replica"} 1"#,
    ] {
        assert!(metrics.contains(line), "metrics lack {line}");
    }
    let schedule: serde_json::Value = reqwest::get(format!("{base}/pd/api/v1/config/schedule"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(schedule["max-store-down-time"], "2s");
    assert_eq!(schedule["leader-schedule-limit"], 4);
    server.stop().await.unwrap();
}
