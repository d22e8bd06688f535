//! Step states and operator progress, read off region reports.

use proto::eraftpb::ConfChangeType;

use super::*;
use crate::schedule::operator::{OpStatus, Progress, StepState, ADD_LEARNER_TIMEOUT};
use crate::schedule::{OpKind, Operator, Step};

const KIND: OpKind = OpKind {
    leader: false,
    replica: true,
};

fn send_change(p: metapb::Peer, t: ConfChangeType) -> StepState {
    StepState::Send(Command::ChangePeer {
        peer: p,
        change_type: t,
    })
}

/// Each step's state against its region; a `Failed` row only needs a reason.
fn assert_states(cases: Vec<(&str, Step, &RegionInfo, StepState)>) {
    for (name, step, r, want) in cases {
        let got = step.state(r);
        match (&got, &want) {
            (StepState::Failed(reason), StepState::Failed(_)) => {
                assert!(!reason.is_empty(), "{name}")
            }
            _ => assert_eq!(got, want, "{name}"),
        }
    }
}

#[test]
fn step_states_from_region_reports() {
    let add = Step::AddLearner {
        store_id: 2,
        peer_id: 5,
    };
    let promote = Step::PromoteLearner {
        store_id: 2,
        peer_id: 5,
    };
    let remove = Step::RemovePeer {
        store_id: 2,
        peer_id: 5,
    };
    let transfer = Step::TransferLeader {
        from_store: 1,
        to_store: 2,
    };
    let alone = region(&[voter(1, 1)], 1, 1);
    let with_learner = region(&[voter(1, 1), learner(5, 2)], 1, 2);
    let mut pending = with_learner.clone();
    pending.pending_peers = vec![learner(5, 2)];
    let with_voter = region(&[voter(1, 1), voter(5, 2)], 1, 3);
    let led_by_2 = region(&[voter(1, 1), voter(5, 2)], 5, 3);
    let other_peer = region(&[voter(1, 1), learner(9, 2)], 1, 2);
    let cases: Vec<(&str, Step, &RegionInfo, StepState)> = vec![
        (
            "add: not there",
            add,
            &alone,
            send_change(learner(5, 2), ConfChangeType::AddLearnerNode),
        ),
        ("add: catching up", add, &pending, StepState::Wait),
        ("add: caught up", add, &with_learner, StepState::Done),
        ("add: already voter", add, &with_voter, StepState::Done),
        (
            "add: other peer on store",
            add,
            &other_peer,
            StepState::Failed(String::new()),
        ),
        (
            "promote: learner",
            promote,
            &with_learner,
            send_change(voter(5, 2), ConfChangeType::AddNode),
        ),
        ("promote: voter", promote, &with_voter, StepState::Done),
        (
            "promote: gone",
            promote,
            &alone,
            StepState::Failed(String::new()),
        ),
        (
            "remove: present",
            remove,
            &with_voter,
            send_change(voter(5, 2), ConfChangeType::RemoveNode),
        ),
        ("remove: gone", remove, &alone, StepState::Done),
        (
            "remove: is leader",
            remove,
            &led_by_2,
            StepState::Failed(String::new()),
        ),
        (
            "transfer: to voter",
            transfer,
            &with_voter,
            StepState::Send(Command::TransferLeader { peer: voter(5, 2) }),
        ),
        ("transfer: done", transfer, &led_by_2, StepState::Done),
        (
            "transfer: to learner",
            transfer,
            &with_learner,
            StepState::Failed(String::new()),
        ),
        (
            "transfer: no peer",
            transfer,
            &alone,
            StepState::Failed(String::new()),
        ),
    ];
    assert_states(cases);
}

#[test]
fn joint_step_states_from_region_reports() {
    // Moving peer 3 (store 3) to learner 5 on store 4; peer 1 on store 1 leads.
    let enter = Step::EnterJoint {
        promote: (4, 5),
        demote: (3, 3),
    };
    let leave = Step::LeaveJoint;
    let role = |id: u64, store: u64, r: PeerRole| peer(id, store, r);
    let with = |peers: &[metapb::Peer], leader: u64| region(peers, leader, 4);
    let before = with(&[voter(1, 1), voter(3, 3), learner(5, 4)], 1);
    let joint = with(
        &[
            voter(1, 1),
            role(3, 3, PeerRole::DemotingVoter),
            role(5, 4, PeerRole::IncomingVoter),
        ],
        1,
    );
    let left = with(&[voter(1, 1), learner(3, 3), voter(5, 4)], 1);
    let led_by_3 = with(&[voter(1, 1), voter(3, 3), learner(5, 4)], 3);
    let learner_gone = with(&[voter(1, 1), voter(3, 3)], 1);
    let other_joint = with(
        &[
            voter(1, 1),
            voter(3, 3),
            learner(5, 4),
            role(7, 2, PeerRole::IncomingVoter),
        ],
        1,
    );
    let both_voters = with(&[voter(1, 1), voter(3, 3), voter(5, 4)], 1);
    let cases: Vec<(&str, Step, &RegionInfo, StepState)> = vec![
        (
            "enter: learner and voter",
            enter,
            &before,
            StepState::Send(Command::EnterJoint {
                promote: learner(5, 4),
                demote: voter(3, 3),
            }),
        ),
        ("enter: joint", enter, &joint, StepState::Done),
        ("enter: already left", enter, &left, StepState::Done),
        (
            "enter: would demote the leader",
            enter,
            &led_by_3,
            StepState::Failed(String::new()),
        ),
        (
            "enter: learner gone",
            enter,
            &learner_gone,
            StepState::Failed(String::new()),
        ),
        (
            "enter: another joint change under way",
            enter,
            &other_joint,
            StepState::Wait,
        ),
        (
            "enter: both voters (changed under it)",
            enter,
            &both_voters,
            StepState::Failed(String::new()),
        ),
        (
            "leave: joint",
            leave,
            &joint,
            StepState::Send(Command::LeaveJoint),
        ),
        ("leave: left", leave, &left, StepState::Done),
        ("leave: never joint", leave, &before, StepState::Done),
    ];
    assert_states(cases);
}

/// A move run against a region that applies each command as a store would: at no step does
/// either voter set hold both the old and the new replica, and the region ends with the new
/// voter in place of the old one.
#[test]
fn a_joint_move_runs_step_by_step() {
    let mut r = FakeRegion {
        info: region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3),
    };
    let mut op = Operator::new(
        "move-to-better-location",
        KIND,
        &r.info,
        joint_move(3, 3, 4, 9, None),
        0,
    );
    let mut sent = Vec::new();
    for now in 0..20 {
        match op.check(&r.info, now) {
            Progress::Send(c) => {
                sent.push(super::drive::describe(&c));
                r.apply(&c);
            }
            Progress::Wait => r.catch_up(),
            Progress::Ended(status, reason) => {
                assert_eq!((status, reason), (OpStatus::Success, None));
                break;
            }
        }
        let roles: Vec<(u64, PeerRole)> =
            r.info.meta.peers.iter().map(|p| (p.id, p.role())).collect();
        let in_one_set = |set: &[PeerRole]| {
            roles.iter().any(|(id, r)| *id == 3 && set.contains(r))
                && roles.iter().any(|(id, r)| *id == 9 && set.contains(r))
        };
        assert!(
            !in_one_set(&[PeerRole::Voter, PeerRole::IncomingVoter]),
            "{roles:?}"
        );
        assert!(
            !in_one_set(&[PeerRole::Voter, PeerRole::DemotingVoter]),
            "{roles:?}"
        );
    }
    assert_eq!(
        sent,
        [
            "AddLearnerNode 9@4",
            "EnterJoint +9@4 -3@3",
            "LeaveJoint",
            "RemoveNode 3@3"
        ]
    );
    assert_eq!(r.voters(), vec![1, 2, 4], "voter stores");
    assert_eq!(op.status, OpStatus::Success);
}

#[test]
fn add_replica_operator_runs_step_by_step() {
    let mut r = FakeRegion {
        info: region(&[voter(1, 1)], 1, 1),
    };
    let steps = vec![
        Step::AddLearner {
            store_id: 2,
            peer_id: 5,
        },
        Step::PromoteLearner {
            store_id: 2,
            peer_id: 5,
        },
    ];
    let mut op = Operator::new("make-up-replica", KIND, &r.info, steps.clone(), 0);
    assert_eq!(op.timeout, ADD_LEARNER_TIMEOUT + steps[1].timeout());
    assert_eq!(op.next_step(&r.info), Some(steps[0]));
    // The leader has not acted yet: the same command again.
    let Progress::Send(add) = op.check(&r.info, 10) else {
        panic!("expected a command");
    };
    assert_eq!(op.check(&r.info, 20), Progress::Send(add));
    r.apply(&add);
    assert_eq!(
        op.check(&r.info, 30),
        Progress::Wait,
        "learner is catching up"
    );
    assert_eq!(op.next_step(&r.info), None);
    r.catch_up();
    assert_eq!(op.next_step(&r.info), Some(steps[1]));
    let Progress::Send(promote) = op.check(&r.info, 40) else {
        panic!("expected the promotion");
    };
    assert_eq!(op.current, 1);
    r.apply(&promote);
    assert_eq!(
        op.check(&r.info, 50),
        Progress::Ended(OpStatus::Success, None)
    );
    assert_eq!(r.voters(), vec![1, 2]);
}

#[test]
fn operator_times_out_cancels_and_prefers_success() {
    let r = region(&[voter(1, 1)], 1, 1);
    let step = Step::AddLearner {
        store_id: 2,
        peer_id: 5,
    };
    let late = ADD_LEARNER_TIMEOUT.as_millis() as u64;
    let mut op = Operator::new("make-up-replica", KIND, &r, vec![step], 0);
    assert!(matches!(op.check(&r, late - 1), Progress::Send(_)));
    assert_eq!(op.check(&r, late), Progress::Ended(OpStatus::Timeout, None));
    assert_eq!(
        op.check(&r, late),
        Progress::Ended(OpStatus::Timeout, None),
        "stays ended"
    );

    // Done steps win over a timeout.
    let done = region(&[voter(1, 1), learner(5, 2)], 1, 2);
    let mut op = Operator::new("make-up-replica", KIND, &r, vec![step], 0);
    assert_eq!(
        op.check(&done, late * 2),
        Progress::Ended(OpStatus::Success, None)
    );

    // A split (version bump) cancels.
    let mut split = r.clone();
    split.meta.region_epoch.as_mut().unwrap().version += 1;
    let mut op = Operator::new("make-up-replica", KIND, &r, vec![step], 0);
    assert!(matches!(
        op.check(&split, 1),
        Progress::Ended(OpStatus::Canceled, Some(_))
    ));

    // Another peer on the target store cancels.
    let other = region(&[voter(1, 1), learner(9, 2)], 1, 2);
    let mut op = Operator::new("make-up-replica", KIND, &r, vec![step], 0);
    assert!(matches!(
        op.check(&other, 1),
        Progress::Ended(OpStatus::Canceled, Some(_))
    ));
}

#[test]
fn steps_and_kinds_read_like_pd() {
    let texts = [
        (
            Step::AddLearner {
                store_id: 4,
                peer_id: 10,
            },
            "add learner peer 10 on store 4",
        ),
        (
            Step::PromoteLearner {
                store_id: 4,
                peer_id: 10,
            },
            "promote learner peer 10 on store 4 to voter",
        ),
        (
            Step::RemovePeer {
                store_id: 3,
                peer_id: 7,
            },
            "remove peer on store 3",
        ),
        (
            Step::TransferLeader {
                from_store: 1,
                to_store: 2,
            },
            "transfer leader from store 1 to store 2",
        ),
    ];
    for (step, text) in texts {
        assert_eq!(step.to_string(), text);
    }
    assert_eq!(KIND.to_string(), "region,replica");
    let both = OpKind {
        leader: true,
        replica: true,
    };
    assert_eq!(both.to_string(), "leader,region,replica");
}
