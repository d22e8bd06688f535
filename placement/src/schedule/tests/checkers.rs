//! The replica checker and leader balance, one situation per row.

use proto::metapb::PeerRole;

use super::*;
use crate::schedule::{replica_checker, Operator, Operators, Step};

fn add(store_id: u64, peer_id: u64) -> Vec<Step> {
    vec![
        Step::AddLearner { store_id, peer_id },
        Step::PromoteLearner { store_id, peer_id },
    ]
}

fn remove(store_id: u64, peer_id: u64) -> Vec<Step> {
    vec![Step::RemovePeer { store_id, peer_id }]
}

fn down_peer(mut r: RegionInfo, peer_id: u64, down_seconds: u64) -> RegionInfo {
    let peer = r.meta.peers.iter().find(|p| p.id == peer_id).copied();
    r.down_peers = vec![pdpb::PeerStats { peer, down_seconds }];
    r
}

/// Runs the replica checker on a fresh 4-store fixture prepared by `setup`.
fn replica_case(
    setup: &dyn Fn(&mut Fixture),
    r: &RegionInfo,
    ids: &mut TestIds,
) -> Option<Operator> {
    let mut f = Fixture::new(4);
    f.report(r);
    setup(&mut f);
    replica_checker::check(r, &f.ctx(), &Operators::default(), ids)
}

fn summary(op: Option<Operator>) -> Option<(&'static str, Vec<Step>)> {
    op.map(|op| (op.desc, op.steps))
}

#[test]
fn replica_checker_table() {
    let three = [voter(1, 1), voter(2, 2), voter(3, 3)];
    let four = [voter(1, 1), voter(2, 2), voter(3, 3), voter(4, 4)];
    let nothing: &dyn Fn(&mut Fixture) = &|_| {};
    let kill3: &dyn Fn(&mut Fixture) = &|f| f.kill(3);
    let kill4: &dyn Fn(&mut Fixture) = &|f| f.kill(4);
    let drain1: &dyn Fn(&mut Fixture) = &|f| f.set_offline(1);
    let drain2: &dyn Fn(&mut Fixture) = &|f| f.set_offline(2);
    let joint = {
        let mut r = region(&three, 1, 2);
        r.meta.peers[2].role = PeerRole::IncomingVoter as i32;
        r
    };
    type Row<'a> = (
        &'a str,
        &'a dyn Fn(&mut Fixture),
        RegionInfo,
        Option<(&'static str, Vec<Step>)>,
    );
    let rows: Vec<Row> = vec![
        (
            "one voter: add the second",
            nothing,
            region(&[voter(1, 1)], 1, 1),
            Some(("make-up-replica", add(2, FIRST_NEW_PEER))),
        ),
        (
            "learner catching up: add the third",
            nothing,
            pending(region(&[voter(1, 1), learner(5, 2)], 1, 2), &[5]),
            Some(("make-up-replica", add(3, FIRST_NEW_PEER))),
        ),
        (
            "learner caught up: promote",
            nothing,
            region(&[voter(1, 1), learner(5, 2)], 1, 2),
            Some((
                "promote-learner",
                vec![Step::PromoteLearner {
                    store_id: 2,
                    peer_id: 5,
                }],
            )),
        ),
        ("three voters: nothing", nothing, region(&three, 1, 3), None),
        (
            "four voters: remove one (not the leader)",
            nothing,
            region(&four, 1, 4),
            Some(("remove-extra-replica", remove(4, 4))),
        ),
        (
            "store 3 down: move it",
            kill3,
            region(&three, 1, 3),
            Some((
                "replace-down-replica",
                joint_move(3, 3, 4, FIRST_NEW_PEER, None),
            )),
        ),
        (
            "store 3 down, replacement catching up: wait",
            kill3,
            pending(
                region(
                    &[voter(1, 1), voter(2, 2), voter(3, 3), learner(4, 4)],
                    1,
                    4,
                ),
                &[4],
            ),
            None,
        ),
        (
            "store 3 down, replacement promoted: remove it",
            kill3,
            region(&four, 1, 5),
            Some(("remove-down-replica", remove(3, 3))),
        ),
        (
            "learner on a down store: remove it",
            kill4,
            region(
                &[voter(1, 1), voter(2, 2), voter(3, 3), learner(4, 4)],
                1,
                4,
            ),
            Some(("remove-down-replica", remove(4, 4))),
        ),
        (
            "peer reported down too long: replace it",
            nothing,
            down_peer(region(&three, 1, 3), 3, 2000),
            Some((
                "replace-down-replica",
                joint_move(3, 3, 4, FIRST_NEW_PEER, None),
            )),
        ),
        (
            "peer reported down briefly: nothing",
            nothing,
            down_peer(region(&three, 1, 3), 3, 10),
            None,
        ),
        (
            "store 2 offline: replace it",
            drain2,
            region(&three, 1, 3),
            Some((
                "replace-offline-replica",
                joint_move(2, 2, 4, FIRST_NEW_PEER, None),
            )),
        ),
        (
            "leader's store offline: transfer, then remove",
            drain1,
            region(&four, 1, 5),
            Some((
                "remove-offline-replica",
                vec![
                    Step::TransferLeader {
                        from_store: 1,
                        to_store: 2,
                    },
                    Step::RemovePeer {
                        store_id: 1,
                        peer_id: 1,
                    },
                ],
            )),
        ),
        (
            "joint state left behind: leave it",
            nothing,
            joint,
            Some(("leave-joint-state", vec![Step::LeaveJoint])),
        ),
    ];
    for (name, setup, r, want) in rows {
        let got = summary(replica_case(setup, &r, &mut TestIds::default()));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn replica_checker_waits_without_a_store_or_an_id() {
    // Only three stores and one is down: nowhere to put a replacement.
    let mut f = Fixture::new(3);
    let r = region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3);
    f.report(&r);
    f.kill(3);
    let ops = Operators::default();
    assert!(replica_checker::check(&r, &f.ctx(), &ops, &mut TestIds::default()).is_none());
    // No id at hand.
    let one = region(&[voter(1, 1)], 1, 1);
    let mut dry = TestIds {
        dry: true,
        ..TestIds::default()
    };
    assert!(replica_checker::check(&one, &f.ctx(), &ops, &mut dry).is_none());
}

#[test]
fn replica_checker_follows_max_peer_count() {
    let mut f = Fixture::new(3);
    let mut meta = f.view.meta().unwrap();
    meta.max_peer_count = 1;
    f.view.apply(&MetaWrite::Cluster(meta));
    // Voter 1 leads but is also the lowest id: the follower goes.
    let r = region(&[voter(1, 1), voter(2, 2)], 1, 2);
    f.report(&r);
    let op = replica_checker::check(&r, &f.ctx(), &Operators::default(), &mut TestIds::default());
    assert_eq!(summary(op), Some(("remove-extra-replica", remove(2, 2))));
}

#[test]
fn replica_checker_spreads_over_zones_then_hosts() {
    let stores = [
        store_meta(1, &[("zone", "z1"), ("host", "h1")]),
        store_meta(2, &[("zone", "z1"), ("host", "h2")]),
        store_meta(3, &[("zone", "z2"), ("host", "h3")]),
        store_meta(4, &[("zone", "z3"), ("host", "h4")]),
        store_meta(5, &[("zone", "z2"), ("host", "h5")]),
    ];
    let mut f = Fixture::with_stores(&stores);
    let ops = Operators::default();
    let target = |f: &Fixture, r: &RegionInfo| {
        let op = replica_checker::check(r, &f.ctx(), &ops, &mut TestIds::default()).unwrap();
        match op.steps[0] {
            Step::AddLearner { store_id, .. } => store_id,
            other => panic!("expected an add, got {other}"),
        }
    };
    // Another zone first (3, 4, 5 tie; lowest id), then the zone not yet used.
    let r = region(&[voter(1, 1)], 1, 1);
    f.report(&r);
    assert_eq!(target(&f, &r), 3);
    let r = region(&[voter(1, 1), voter(3, 3)], 1, 2);
    f.report(&r);
    assert_eq!(target(&f, &r), 4);
    // A voter in zone z1 must go; stores 1 and 2 tie and 1 leads, so 2 goes.
    let r = region(&[voter(1, 1), voter(2, 2), voter(3, 3), voter(4, 4)], 1, 4);
    f.report(&r);
    let op = replica_checker::check(&r, &f.ctx(), &ops, &mut TestIds::default());
    assert_eq!(summary(op), Some(("remove-extra-replica", remove(2, 2))));
    // Zone z3 down: no zone is left unused, so another host in a used zone; stores 2 and 5
    // are equally isolated and 2 has the lower id.
    let r = region(&[voter(1, 1), voter(3, 3), voter(4, 4)], 1, 5);
    f.report(&r);
    f.kill(4);
    assert_eq!(target(&f, &r), 2);
}

#[test]
fn replica_checker_respects_the_store_limit() {
    let mut f = Fixture::new(4);
    f.settings.store_add_peer_limit = 1;
    let mut ops = Operators::default();
    // Another region is already adding a peer to store 2.
    let other = {
        let mut r = region(&[voter(90, 1)], 90, 1);
        r.meta.id = 9;
        r
    };
    let busy = replica_checker::check(&other, &f.ctx(), &ops, &mut TestIds::default()).unwrap();
    assert_eq!(busy.steps, add(2, FIRST_NEW_PEER));
    ops.add(busy, &f.settings).unwrap();
    let r = region(&[voter(1, 1)], 1, 1);
    let op = replica_checker::check(&r, &f.ctx(), &ops, &mut TestIds::default()).unwrap();
    assert_eq!(op.steps, add(3, FIRST_NEW_PEER), "store 2 is at its limit");
}
