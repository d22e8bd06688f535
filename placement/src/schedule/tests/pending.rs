//! Peers stuck pending (their region's leader reports them needing a snapshot or far behind,
//! heartbeat after heartbeat) are replaced like down ones once `max-pending-peer-time` has
//! passed: a new replica goes where the usual placement rules say, then the stuck one goes.

use super::drive::describe;
use super::*;
use crate::schedule::{replica_checker, Operator, Operators, Scheduler, Step};

const MINUTE: u64 = 60_000;

/// `r` with these peers reported pending since `since_ms` without a break.
fn pending_since(r: RegionInfo, peer_ids: &[u64], since_ms: u64) -> RegionInfo {
    let mut r = pending(r, peer_ids);
    r.pending_since = peer_ids.iter().map(|id| (*id, since_ms)).collect();
    r
}

fn remove(store_id: u64, peer_id: u64) -> Vec<Step> {
    vec![Step::RemovePeer { store_id, peer_id }]
}

/// An operator as the tables compare it: its description and steps.
type Summary = Option<(&'static str, Vec<Step>)>;

fn summary(op: Option<Operator>) -> Summary {
    op.map(|op| (op.desc, op.steps))
}

#[test]
fn pending_peer_checker_table() {
    let three = [voter(1, 1), voter(2, 2), voter(3, 3)];
    let four = [voter(1, 1), voter(2, 2), voter(3, 3), voter(4, 4)];
    let with_learner = [voter(1, 1), voter(2, 2), voter(3, 3), learner(4, 4)];
    let f = Fixture::new(4);
    let long_ago = f.now_ms - 11 * MINUTE;
    let lately = f.now_ms - MINUTE;
    let rows: Vec<(&str, RegionInfo, Summary)> = vec![
        (
            "voter pending for a minute: it is catching up",
            pending_since(region(&three, 1, 3), &[3], lately),
            None,
        ),
        (
            "voter pending past the bound: replace it",
            pending_since(region(&three, 1, 3), &[3], long_ago),
            Some((
                "replace-pending-replica",
                joint_move(3, 3, 4, FIRST_NEW_PEER, None),
            )),
        ),
        (
            "replacement catching up: wait",
            {
                let mut r = pending_since(region(&with_learner, 1, 4), &[3, 4], long_ago);
                r.pending_since.insert(4, f.now_ms);
                r
            },
            None,
        ),
        (
            "replacement promoted: remove the stuck voter",
            pending_since(region(&four, 1, 5), &[3], long_ago),
            Some(("remove-pending-replica", remove(3, 3))),
        ),
        (
            "learner pending past the bound: remove it",
            pending_since(region(&with_learner, 1, 4), &[4], long_ago),
            Some(("remove-pending-replica", remove(4, 4))),
        ),
    ];
    for (name, r, want) in rows {
        let mut f = Fixture::new(4);
        f.report(&r);
        let op =
            replica_checker::check(&r, &f.ctx(), &Operators::default(), &mut TestIds::default());
        assert_eq!(summary(op), want, "{name}");
    }
}

#[test]
fn the_bound_is_a_setting() {
    let mut f = Fixture::new(4);
    f.settings.max_pending_peer_time = std::time::Duration::from_secs(30);
    let r = pending_since(
        region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3),
        &[3],
        f.now_ms - MINUTE,
    );
    f.report(&r);
    let op = replica_checker::check(&r, &f.ctx(), &Operators::default(), &mut TestIds::default());
    assert_eq!(
        summary(op),
        Some((
            "replace-pending-replica",
            joint_move(3, 3, 4, FIRST_NEW_PEER, None)
        ))
    );
}

#[test]
fn a_stuck_peer_is_replaced_within_isolation_level() {
    // Zones z1 and z2 hold healthy replicas: the replacement must go to z3 (store 4),
    // not to store 5, which would share z1 with store 1.
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z2", "h2"),
        zoned(3, "z3", "h3"),
        zoned(4, "z3", "h4"),
        zoned(5, "z1", "h5"),
    ];
    let mut f = Fixture::with_stores(&stores);
    f.settings.isolation_level = "zone".into();
    let r = pending_since(
        region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3),
        &[3],
        f.now_ms - 11 * MINUTE,
    );
    f.report(&r);
    let op = replica_checker::check(&r, &f.ctx(), &Operators::default(), &mut TestIds::default());
    assert_eq!(
        summary(op),
        Some((
            "replace-pending-replica",
            joint_move(3, 3, 4, FIRST_NEW_PEER, None)
        ))
    );
}

#[test]
fn a_peer_reported_pending_in_every_heartbeat_is_replaced_once_the_bound_passes() {
    let mut f = Fixture::new(4);
    let mut s = Scheduler::default();
    let mut r = FakeRegion {
        info: region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3),
    };
    let mut ids = TestIds::default();
    let mut sent = Vec::new();
    for minute in 1..=20 {
        f.advance(MINUTE);
        // The leader names peer 3 pending in every heartbeat (its snapshot never arrives),
        // stamped with the time of that heartbeat; new learners catch up at once.
        r.info.pending_peers = (r.info.meta.peers.iter())
            .filter(|p| p.id == 3)
            .copied()
            .collect();
        r.info.pending_since = r
            .info
            .pending_peers
            .iter()
            .map(|p| (p.id, f.now_ms))
            .collect();
        f.report(&r.info);
        // The scheduler sees the region as placement keeps it.
        let known = f.view.regions().get(1).unwrap().clone();
        let out = s.on_heartbeat(&known, &f.ctx(), &mut ids);
        if let Some(command) = &out.command {
            sent.push((minute, describe(command)));
            r.apply(command);
        }
    }
    let sent: Vec<(u64, &str)> = sent.iter().map(|(m, c)| (*m, c.as_str())).collect();
    assert_eq!(
        sent,
        [
            (11, "AddLearnerNode 100@4"),
            (12, "EnterJoint +100@4 -3@3"),
            (13, "LeaveJoint"),
            (14, "RemoveNode 3@3"),
        ],
        "first reported pending at minute 1"
    );
    assert_eq!(r.voters(), vec![1, 2, 4]);
}
