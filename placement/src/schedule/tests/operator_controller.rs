//! The operator table: one operator per region, limits, expiry and history.

use super::*;
use crate::schedule::operator::{OpStatus, ADD_LEARNER_TIMEOUT};
use crate::schedule::{Dispatch, OpKind, Operator, Operators, Rejected, Step};

fn add_op(region_id: u64, store_id: u64, now_ms: u64) -> Operator {
    let mut r = region(&[voter(1, 1)], 1, 1);
    r.meta.id = region_id;
    let steps = vec![
        Step::AddLearner {
            store_id,
            peer_id: region_id * 100,
        },
        Step::PromoteLearner {
            store_id,
            peer_id: region_id * 100,
        },
    ];
    let kind = OpKind {
        leader: false,
        replica: true,
    };
    Operator::new("make-up-replica", kind, &r, steps, now_ms)
}

fn transfer_op(region_id: u64) -> Operator {
    let mut r = region(&[voter(1, 1), voter(2, 2)], 1, 1);
    r.meta.id = region_id;
    let step = Step::TransferLeader {
        from_store: 1,
        to_store: 2,
    };
    let kind = OpKind {
        leader: true,
        replica: false,
    };
    Operator::new("balance-leader", kind, &r, vec![step], 0)
}

#[test]
fn admission_limits() {
    let settings = Settings {
        replica_schedule_limit: 3,
        store_add_peer_limit: 2,
        leader_schedule_limit: 1,
        ..Settings::default()
    };
    let mut ops = Operators::default();
    // (operator, expected admission) in order; each admitted one stays running.
    let cases: Vec<(Operator, Result<(), Rejected>)> = vec![
        (add_op(1, 4, 0), Ok(())),
        (add_op(1, 5, 0), Err(Rejected::RegionBusy)),
        (add_op(2, 4, 0), Ok(())),
        (add_op(3, 4, 0), Err(Rejected::StoreLimit(4))),
        (add_op(3, 5, 0), Ok(())),
        (add_op(4, 6, 0), Err(Rejected::ReplicaLimit)),
        (transfer_op(5), Ok(())),
        (transfer_op(6), Err(Rejected::LeaderLimit)),
    ];
    for (i, (op, want)) in cases.into_iter().enumerate() {
        let got = ops
            .add(op, &settings)
            .map(|e| assert_eq!(e.name(), "create"));
        assert_eq!(got, want, "case {i}");
    }
    assert_eq!(
        (ops.len(), ops.replica_count(), ops.leader_count()),
        (4, 3, 1)
    );
    assert_eq!(
        (ops.adding_to(4), ops.adding_to(5), ops.adding_to(6)),
        (2, 1, 0)
    );
    assert_eq!((ops.leader_influence(1), ops.leader_influence(2)), (-1, 1));
}

#[test]
fn expiry_frees_the_region_and_keeps_history() {
    let settings = Settings::default();
    let mut ops = Operators::default();
    ops.add(add_op(1, 4, 0), &settings).unwrap();
    ops.add(add_op(2, 4, 5_000), &settings).unwrap();
    let timeout = (ADD_LEARNER_TIMEOUT.as_millis() + 10_000) as u64;
    assert!(ops.expire(timeout - 1).is_empty());
    let expired = ops.expire(timeout);
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].region_id, expired[0].name()), (1, "timeout"));
    assert!(ops.get(1).is_none());
    assert_eq!(ops.latest(1).unwrap().status, OpStatus::Timeout);
    assert_eq!(
        ops.adding_to(4),
        1,
        "the timed-out operator no longer counts"
    );
    // The region can get a new operator.
    ops.add(add_op(1, 5, timeout), &settings).unwrap();
    assert_eq!(ops.latest(1).unwrap().status, OpStatus::Running);
    let canceled = ops.cancel(2, "test").unwrap();
    assert_eq!(
        (canceled.name(), canceled.reason.as_deref()),
        ("cancel", Some("test"))
    );
    assert!(ops.cancel(2, "again").is_none());
}

#[test]
fn dispatch_follows_the_region() {
    let settings = Settings::default();
    let mut ops = Operators::default();
    let mut r = FakeRegion {
        info: region(&[voter(1, 1)], 1, 1),
    };
    assert_eq!(ops.dispatch(&r.info, 0), Dispatch::Idle);
    ops.add(add_op(1, 2, 0), &settings).unwrap();
    let Dispatch::Send(add) = ops.dispatch(&r.info, 0) else {
        panic!("expected a command");
    };
    r.apply(&add);
    assert_eq!(ops.dispatch(&r.info, 0), Dispatch::Wait);
    r.catch_up();
    let Dispatch::Send(promote) = ops.dispatch(&r.info, 0) else {
        panic!("expected the promotion");
    };
    r.apply(&promote);
    let Dispatch::Ended(event) = ops.dispatch(&r.info, 0) else {
        panic!("expected the end");
    };
    assert_eq!((event.desc, event.name()), ("make-up-replica", "finish"));
    assert!(ops.is_empty());
    assert_eq!(ops.latest(1).unwrap().status, OpStatus::Success);
}

#[test]
fn a_held_joint_state_is_not_left_until_released() {
    use crate::schedule::operator::Command;
    let kind = OpKind {
        leader: false,
        replica: true,
    };
    let f = Fixture::new(4);
    let role = |id: u64, store: u64, r: PeerRole| peer(id, store, r);
    let joint = region(
        &[
            voter(1, 1),
            voter(2, 2),
            role(3, 3, PeerRole::DemotingVoter),
            role(9, 4, PeerRole::IncomingVoter),
        ],
        1,
        5,
    );
    let mut ops = Operators::default();
    let op = Operator::new("move", kind, &joint, joint_move(3, 3, 4, 9, None), f.now_ms);
    ops.add(op, &f.settings).unwrap();
    ops.hold_joint = true;
    assert_eq!(ops.dispatch(&joint, f.now_ms), Dispatch::Wait);
    ops.hold_joint = false;
    assert_eq!(
        ops.dispatch(&joint, f.now_ms),
        Dispatch::Send(Command::LeaveJoint)
    );
}
