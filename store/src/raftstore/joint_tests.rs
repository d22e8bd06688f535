//! Joint-consensus membership changes (PD's `ChangePeerV2`) on in-process clusters: entering
//! and leaving the joint state, the roles and raft configuration of every replica at each
//! step, leader changes, restarts and snapshots while joint, and the changes refused.

use std::time::{Duration, Instant};

use proto::metapb::PeerRole;
use raft::prelude::{ConfChangeType, ConfState, MessageType};
use testkit::wait;

use super::membership::{self, test_peer as peer, PeerChange};
use super::peer_storage::conf_state_of;
use super::test_cluster::{region_on, TestCluster};
use super::test_filters::RegionPacketFilter;
use super::{ProposeError, RaftStoreConfig};
use PeerRole::{DemotingVoter as D, IncomingVoter as I, Learner as L, Voter as V};

fn cfg() -> RaftStoreConfig {
    RaftStoreConfig {
        base_tick: Duration::from_millis(20),
        log_gc_threshold: 8,
        ..Default::default()
    }
}

fn conf(voters: &[u64], learners: &[u64], outgoing: &[u64], next: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        learners: learners.to_vec(),
        voters_outgoing: outgoing.to_vec(),
        learners_next: next.to_vec(),
        auto_leave: false,
        ..Default::default()
    }
}

fn sorted(mut cs: ConfState) -> ConfState {
    cs.voters.sort_unstable();
    cs.learners.sort_unstable();
    cs.voters_outgoing.sort_unstable();
    cs.learners_next.sort_unstable();
    cs
}

/// Placement's move of the replica on store 3 to store 4: promote learner 104, demote 103.
fn move_3_to_4() -> Vec<PeerChange> {
    vec![
        (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
        (
            ConfChangeType::AddLearnerNode,
            peer(103, 3, PeerRole::Learner),
        ),
    ]
}

const BEFORE: [(u64, PeerRole); 4] = [(101, V), (102, V), (103, V), (104, L)];
const JOINT: [(u64, PeerRole); 4] = [(101, V), (102, V), (103, D), (104, I)];
const LEFT: [(u64, PeerRole); 4] = [(101, V), (102, V), (103, L), (104, V)];

fn before_conf() -> ConfState {
    conf(&[101, 102, 103], &[104], &[], &[])
}

fn joint_conf() -> ConfState {
    conf(&[101, 102, 104], &[], &[101, 102, 103], &[103])
}

fn left_conf() -> ConfState {
    conf(&[101, 102, 104], &[103], &[], &[])
}

/// Waits until `store`'s replica of region 1 has these peer roles in its metadata (what its
/// region heartbeats report) and runs raft configuration `expected`, which is also what the
/// roles stand for (what a restart or a snapshot rebuilds).
async fn must_config(c: &TestCluster, store: u64, roles: &[(u64, PeerRole)], expected: &ConfState) {
    wait::for_(format!(
        "store {store}'s replica to have roles {roles:?} and run {expected:?}"
    ))
    .until_ok(|| async {
        let region = c.region(store, 1);
        let meta_roles = region.as_ref().map(|r| {
            let mut v: Vec<(u64, PeerRole)> = r.peers.iter().map(|p| (p.id, p.role())).collect();
            v.sort_unstable_by_key(|(id, _)| *id);
            v
        });
        let derived = region.as_ref().map(|r| sorted(conf_state_of(r)));
        let running = c.conf_state(store, 1).await;
        if meta_roles.as_deref() == Some(roles)
            && running.as_ref() == Some(expected)
            && derived.as_ref() == Some(expected)
        {
            return Ok(());
        }
        Err(format!(
            "roles {meta_roles:?}, running {running:?}, derived {derived:?}"
        ))
    })
    .await
    .unwrap_or_else(|timeout| panic!("{timeout}"));
}

fn conf_ver(c: &TestCluster, store: u64) -> u64 {
    c.region(store, 1)
        .and_then(|r| r.region_epoch)
        .map(|e| e.conf_ver)
        .unwrap_or(0)
}

fn reason(res: Result<(), ProposeError>) -> String {
    match res {
        Err(ProposeError::Rejected { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Region 1 with voters on stores 1-3 (store 1 leading) and learner 104 on store 4, caught
/// up, among `stores` stores.
async fn three_voters_and_a_learner(stores: u64) -> TestCluster {
    let c = TestCluster::new(stores, &region_on(1, &[1, 2, 3]), cfg());
    c.must_transfer_leader(1, 1).await;
    c.router(1)
        .change_peer(1, ConfChangeType::AddLearnerNode, peer(104, 4, L))
        .await
        .unwrap();
    c.must_put(1, "before", "v").await;
    c.must_get_on(4, "before", "v").await;
    for s in 1..=4 {
        must_config(&c, s, &BEFORE, &before_conf()).await;
    }
    c
}

/// Asks whichever store leads region 1 to leave the joint state until one has left it.
async fn must_leave_joint(c: &TestCluster) {
    wait::for_("region 1 to leave its joint state")
        .every(Duration::from_millis(100))
        .until_async(|| async {
            for s in c.leaders(1) {
                let left = c.region(s, 1).is_some_and(|r| !membership::in_joint(&r));
                if left {
                    return true;
                }
                if let Some(r) = c.try_router(s) {
                    let leave = r.change_peer_v2(1, vec![]);
                    let _ = tokio::time::timeout(Duration::from_secs(2), leave).await;
                }
            }
            false
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_change_moves_a_voter_then_is_left_and_the_demoted_learner_removed() {
    let c = three_voters_and_a_learner(4).await;
    let r1 = c.router(1);
    assert_eq!(conf_ver(&c, 1), 2);

    r1.change_peer_v2(1, move_3_to_4()).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &JOINT, &joint_conf()).await;
        assert_eq!(conf_ver(&c, s), 4, "one per change on entering");
    }
    // The region serves writes and reads while joint; the demoting voter still replicates.
    c.must_put(1, "joint", "v").await;
    for s in 1..=4 {
        c.must_get_on(s, "joint", "v").await;
    }
    assert!(c.read_index(1, 1).await.is_ok());

    r1.change_peer_v2(1, vec![]).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &LEFT, &left_conf()).await;
        assert_eq!(
            conf_ver(&c, s),
            6,
            "one per peer whose role changed on leaving"
        );
    }
    c.must_put(1, "left", "v").await;
    c.must_get_on(4, "left", "v").await;

    r1.change_peer(1, ConfChangeType::RemoveNode, peer(103, 3, L))
        .await
        .unwrap();
    wait::for_("store 3 to drop its replica")
        .until(|| c.region(3, 1).is_none())
        .await;
    let rest = [(101, V), (102, V), (104, V)];
    for s in [1, 2, 4] {
        must_config(&c, s, &rest, &conf(&[101, 102, 104], &[], &[], &[])).await;
        assert_eq!(conf_ver(&c, s), 7);
    }
    c.must_put(1, "after", "v").await;
    c.must_get_on(4, "after", "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_changes_that_cannot_be_made_are_refused_with_their_reason() {
    let c = three_voters_and_a_learner(4).await;
    let r1 = c.router(1);

    let demote_leader = reason(
        r1.change_peer_v2(
            1,
            vec![
                (ConfChangeType::AddNode, peer(104, 4, V)),
                (ConfChangeType::AddLearnerNode, peer(101, 1, L)),
            ],
        )
        .await,
    );
    assert!(demote_leader.contains("is the leader"), "{demote_leader}");
    let remove_voter = reason(
        r1.change_peer_v2(
            1,
            vec![
                (ConfChangeType::AddNode, peer(104, 4, V)),
                (ConfChangeType::RemoveNode, peer(103, 3, V)),
            ],
        )
        .await,
    );
    assert!(
        remove_voter.contains("removes only learners"),
        "{remove_voter}"
    );
    let leave = reason(r1.change_peer_v2(1, vec![]).await);
    assert!(leave.contains("not in a joint state"), "{leave}");
    let follower = c.router(2).change_peer_v2(1, move_3_to_4()).await;
    assert!(
        matches!(follower, Err(ProposeError::NotLeader { .. })),
        "{follower:?}"
    );
    // Nothing of it was applied anywhere.
    for s in 1..=4 {
        must_config(&c, s, &BEFORE, &before_conf()).await;
    }

    r1.change_peer_v2(1, move_3_to_4()).await.unwrap();
    let again = reason(
        r1.change_peer_v2(
            1,
            vec![
                (ConfChangeType::AddNode, peer(103, 3, V)),
                (ConfChangeType::AddLearnerNode, peer(104, 4, L)),
            ],
        )
        .await,
    );
    assert!(again.contains("already in a joint state"), "{again}");
    let single = reason(
        r1.change_peer(1, ConfChangeType::AddNode, peer(103, 3, V))
            .await,
    );
    assert!(single.contains("joint state"), "{single}");
    // Leadership never goes to the demoting voter (it would have to leave the voters).
    r1.transfer_leader(1, 103).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.leaders(1), vec![1]);
    for s in 1..=4 {
        must_config(&c, s, &JOINT, &joint_conf()).await;
    }

    r1.change_peer_v2(1, vec![]).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &LEFT, &left_conf()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_joint_state_is_left_on_a_new_leader_after_a_transfer() {
    let c = three_voters_and_a_learner(4).await;
    c.router(1).change_peer_v2(1, move_3_to_4()).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &JOINT, &joint_conf()).await;
    }
    // The incoming voter may lead.
    c.must_transfer_leader(1, 4).await;
    c.must_put(1, "k", "v").await;
    c.router(4).change_peer_v2(1, vec![]).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &LEFT, &left_conf()).await;
    }
    c.must_put(1, "after", "v").await;
    c.must_get_on(3, "after", "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoting_voter_elected_after_the_leader_stops_hands_over_before_leaving() {
    let mut c = three_voters_and_a_learner(4).await;
    c.router(1).change_peer_v2(1, move_3_to_4()).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &JOINT, &joint_conf()).await;
    }
    // Once store 1 stops, only store 3 (the demoting voter) gets its vote requests out.
    for s in [2, 4] {
        let votes = RegionPacketFilter::new(1, s)
            .msg_type(MessageType::MsgRequestPreVote)
            .msg_type(MessageType::MsgRequestVote);
        c.add_send_filter(&votes);
    }
    c.stop(1);
    c.must_leader(1, &[3]).await;
    c.heal();
    c.must_put(1, "under-3", "v").await;

    // It refuses to leave (it would lead as a learner) and hands leadership to a voter of the
    // new configuration; asked again, that one leaves.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = false;
    loop {
        if c.leaders(1).iter().any(|s| [2, 4].contains(s)) {
            break;
        }
        match c.router(3).change_peer_v2(1, vec![]).await {
            Err(ProposeError::Rejected { reason, .. }) => {
                assert!(reason.contains("demoting voter"), "{reason}");
                refused = true;
            }
            Err(ProposeError::NotLeader { .. }) => {}
            other => panic!("the demoting leader left the joint state: {other:?}"),
        }
        assert!(Instant::now() < deadline, "leadership never left store 3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "store 3 was never asked while it led");
    must_leave_joint(&c).await;
    for s in 2..=4 {
        must_config(&c, s, &LEFT, &left_conf()).await;
    }
    c.must_put(1, "after", "v").await;
    c.start(1);
    must_config(&c, 1, &LEFT, &left_conf()).await;
    c.must_get_on(1, "after", "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_restarted_in_a_joint_state_come_back_joint_and_leave_it() {
    let mut c = three_voters_and_a_learner(4).await;
    c.router(1).change_peer_v2(1, move_3_to_4()).await.unwrap();
    for s in 1..=4 {
        must_config(&c, s, &JOINT, &joint_conf()).await;
    }
    // A follower restarts.
    c.stop(2);
    c.start(2);
    must_config(&c, 2, &JOINT, &joint_conf()).await;
    c.must_put(1, "k", "v").await;
    c.must_get_on(2, "k", "v").await;
    // Every store restarts; a leader is elected by the joint quorum.
    for s in 1..=4 {
        c.stop(s);
    }
    for s in 1..=4 {
        c.start(s);
    }
    for s in 1..=4 {
        must_config(&c, s, &JOINT, &joint_conf()).await;
    }
    c.must_leader(1, &[1, 2, 3, 4]).await;
    c.must_put(1, "k2", "v").await;
    must_leave_joint(&c).await;
    for s in 1..=4 {
        must_config(&c, s, &LEFT, &left_conf()).await;
    }
    c.must_put(1, "after", "v").await;
    c.must_get_on(4, "after", "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_added_by_a_joint_change_starts_from_a_joint_snapshot() {
    let c = three_voters_and_a_learner(5).await;
    let mut changes = move_3_to_4();
    changes.push((ConfChangeType::AddLearnerNode, peer(105, 5, L)));
    c.router(1).change_peer_v2(1, changes).await.unwrap();
    let roles = [(101, V), (102, V), (103, D), (104, I), (105, L)];
    let joint = conf(&[101, 102, 104], &[105], &[101, 102, 103], &[103]);
    for s in 1..=5 {
        must_config(&c, s, &roles, &joint).await;
    }
    assert!(
        c.snaps(5).received() >= 1,
        "store 5 caught up without a snapshot"
    );
    c.must_get_on(5, "before", "v").await;
    c.must_put(1, "k", "v").await;
    c.must_get_on(5, "k", "v").await;

    c.router(1).change_peer_v2(1, vec![]).await.unwrap();
    let roles = [(101, V), (102, V), (103, L), (104, V), (105, L)];
    for s in 1..=5 {
        must_config(
            &c,
            s,
            &roles,
            &conf(&[101, 102, 104], &[103, 105], &[], &[]),
        )
        .await;
    }
}
