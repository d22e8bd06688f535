//! `isolation-level` and the replica checker's moves to better locations, one situation per
//! row.

use super::*;
use crate::schedule::replica_checker::{self, Blocked};
use crate::schedule::{Operator, Operators, Scheduler, Step};

fn add(store_id: u64) -> Vec<Step> {
    vec![
        Step::AddLearner {
            store_id,
            peer_id: FIRST_NEW_PEER,
        },
        Step::PromoteLearner {
            store_id,
            peer_id: FIRST_NEW_PEER,
        },
    ]
}

/// A move of the peer `old` (peer id = store id) to `new`, with a leader transfer first when
/// `transfer_to` is set.
fn moved(old: u64, new: u64, transfer_to: Option<u64>) -> Vec<Step> {
    joint_move(old, old, new, FIRST_NEW_PEER, transfer_to)
}

/// Voters with peer id = store id, led by the first.
fn on(stores: &[u64]) -> RegionInfo {
    on_led(stores, stores[0])
}

fn on_led(stores: &[u64], leader: u64) -> RegionInfo {
    let peers: Vec<metapb::Peer> = stores.iter().map(|s| voter(*s, *s)).collect();
    region(&peers, leader, 5)
}

type Summary = (Option<(&'static str, Vec<Step>)>, Option<Blocked>);

/// Runs the replica checker on a fixture with these stores, `region` reported, after `setup`.
fn run(
    stores: &[metapb::Store],
    level: &str,
    r: &RegionInfo,
    setup: &dyn Fn(&mut Fixture),
) -> Summary {
    let mut f = Fixture::with_stores(stores);
    f.settings.isolation_level = level.to_owned();
    f.report(r);
    setup(&mut f);
    let checked =
        replica_checker::check_region(r, &f.ctx(), &Operators::default(), &mut TestIds::default());
    (checked.op.map(|op| (op.desc, op.steps)), checked.blocked)
}

#[test]
fn isolation_level_table() {
    // Two zones, two hosts each.
    let two_zones = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
        zoned(4, "z2", "h4"),
    ];
    // Three zones; zone z3 has one store.
    let three_zones = [
        zoned(1, "z1", "h1"),
        zoned(2, "z2", "h2"),
        zoned(3, "z3", "h3"),
        zoned(4, "z1", "h4"),
    ];
    let nothing: &dyn Fn(&mut Fixture) = &|_| {};
    let kill3: &dyn Fn(&mut Fixture) = &|f| f.kill(3);
    // (name, stores, isolation-level, region, setup, expected)
    type Row<'a> = (
        &'a str,
        &'a [metapb::Store],
        &'a str,
        RegionInfo,
        &'a dyn Fn(&mut Fixture),
        Summary,
    );
    let rows: Vec<Row> = vec![
        (
            "zone level, 2 zones, 3 replicas: no third replica",
            &two_zones[..],
            "zone",
            on(&[1, 3]),
            nothing,
            (None, Some(Blocked::Isolation)),
        ),
        (
            "no level: the third replica shares a zone",
            &two_zones[..],
            "",
            on(&[1, 3]),
            nothing,
            (Some(("make-up-replica", add(2))), None),
        ),
        (
            "host level: another host in a used zone will do",
            &two_zones[..],
            "host",
            on(&[1, 3]),
            nothing,
            (Some(("make-up-replica", add(2))), None),
        ),
        (
            "zone level: the second replica goes to the other zone",
            &two_zones[..],
            "zone",
            on(&[1]),
            nothing,
            (Some(("make-up-replica", add(3))), None),
        ),
        (
            "zone z3 down, zone level: its replica is not replaced in z1",
            &three_zones[..],
            "zone",
            on(&[1, 2, 3]),
            kill3,
            (None, Some(Blocked::Isolation)),
        ),
        (
            "zone z3 down, no level: replaced in z1",
            &three_zones[..],
            "",
            on(&[1, 2, 3]),
            kill3,
            (
                Some((
                    "replace-down-replica",
                    joint_move(3, 3, 4, FIRST_NEW_PEER, None),
                )),
                None,
            ),
        ),
        (
            "every store holds a replica: nowhere to go",
            &three_zones[..2],
            "",
            on(&[1, 2]),
            nothing,
            (None, Some(Blocked::NoTargetStore)),
        ),
    ];
    for (name, stores, level, r, setup, want) in rows {
        assert_eq!(run(stores, level, &r, setup), want, "{name}");
    }
}

#[test]
fn no_target_store_is_reported() {
    // Three stores, one down: a replacement has nowhere to go.
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z2", "h2"),
        zoned(3, "z3", "h3"),
    ];
    let got = run(&stores, "", &on(&[1, 2, 3]), &|f| f.kill(3));
    assert_eq!(got, (None, Some(Blocked::NoTargetStore)));
}

#[test]
fn blocked_region_shows_in_the_outcome() {
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
    ];
    let mut f = Fixture::with_stores(&stores);
    f.settings.isolation_level = "zone".into();
    let r = on(&[1, 3]);
    f.report(&r);
    let mut s = Scheduler::default();
    let out = s.on_heartbeat(&r, &f.ctx(), &mut TestIds::default());
    assert_eq!((out.command, out.blocked), (None, Some(Blocked::Isolation)));
    assert!(s.operators.is_empty());
    // Lifting the level lets the replica in.
    f.settings.isolation_level.clear();
    let out = s.on_heartbeat(&r, &f.ctx(), &mut TestIds::default());
    assert!(out.command.is_some() && out.blocked.is_none());
}

#[test]
fn better_location_table() {
    // Zone z1 has three hosts, z2 two, z3 one.
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
        zoned(4, "z3", "h4"),
        zoned(5, "z2", "h5"),
        zoned(6, "z1", "h1"),
    ];
    let nothing: &dyn Fn(&mut Fixture) = &|_| {};
    let down4: &dyn Fn(&mut Fixture) = &|f| f.kill(4);
    // (name, isolation-level, region, setup, expected)
    type Row<'a> = (
        &'a str,
        &'a str,
        RegionInfo,
        &'a dyn Fn(&mut Fixture),
        Summary,
    );
    let mv = |old, new, transfer| Some(("move-to-better-location", moved(old, new, transfer)));
    let rows: Vec<Row> = vec![
        (
            "two in z1, none in z3: a z1 follower moves to z3",
            "",
            on(&[1, 2, 3]),
            nothing,
            (mv(2, 4, None), None),
        ),
        (
            "the z1 replicas tie: the follower goes, not the leader",
            "",
            on_led(&[1, 2, 3], 2),
            nothing,
            (mv(1, 4, None), None),
        ),
        (
            "already one per zone: nothing",
            "",
            on(&[1, 3, 4]),
            nothing,
            (None, None),
        ),
        (
            "z3 down: another z2 host is no better, so nothing",
            "",
            on(&[1, 2, 3]),
            down4,
            (None, None),
        ),
        (
            "two on host h1 of z1: the one not leading moves to zone z3",
            "",
            on(&[1, 6, 3]),
            nothing,
            (mv(6, 4, None), None),
        ),
        (
            "zone level, z3 down: a move to host h2 would still share z1",
            "zone",
            on(&[1, 6, 3]),
            down4,
            (None, None),
        ),
        (
            "no level, z3 down: host h2 of z1 is better than a shared host",
            "",
            on(&[1, 6, 3]),
            down4,
            (mv(6, 2, None), None),
        ),
        (
            "zone level: the misplaced replica moves to fix isolation",
            "zone",
            on(&[1, 2, 3]),
            nothing,
            (mv(2, 4, None), None),
        ),
    ];
    for (name, level, r, setup, want) in rows {
        assert_eq!(run(&stores, level, &r, setup), want, "{name}");
    }
}

#[test]
fn a_moved_leader_hands_over_first() {
    // Labels are hierarchical, so the two worst-placed voters always tie and the follower
    // goes; the leader only moves through the shared move steps, checked here directly.
    let mut f = Fixture::new(4);
    let r = on(&[1, 2, 3]);
    f.report(&r);
    f.load(2, 1, 1000); // store 2 leads one region, store 3 none
    let leader = r.leader.unwrap();
    let ops = Operators::default();
    let (steps, kind) = replica_checker::move_steps(&r, &f.ctx(), &ops, &leader, 4, FIRST_NEW_PEER);
    assert_eq!(steps, moved(1, 4, Some(3)));
    assert!(kind.leader && kind.replica);
    // Store 3 evicted: the leadership goes to store 2.
    f.evict(&[3]);
    let (steps, _) = replica_checker::move_steps(&r, &f.ctx(), &ops, &leader, 4, FIRST_NEW_PEER);
    assert_eq!(steps, moved(1, 4, Some(2)));
    // A follower moves without a transfer.
    let follower = r.meta.peers[1];
    let (steps, kind) = replica_checker::move_steps(&r, &f.ctx(), &ops, &follower, 4, 100);
    assert_eq!(steps, moved(2, 4, None));
    assert!(!kind.leader);
}

#[test]
fn better_location_respects_limits() {
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
        zoned(4, "z3", "h4"),
        zoned(5, "z3", "h5"),
    ];
    let mut f = Fixture::with_stores(&stores);
    f.settings.store_add_peer_limit = 1;
    let r = on(&[1, 2, 3]);
    f.report(&r);
    // Another region is adding a peer to store 4.
    let mut ops = Operators::default();
    let busy = |store_id: u64, region_id: u64| {
        let mut other = on(&[1]);
        other.meta.id = region_id;
        let steps = vec![Step::AddLearner {
            store_id,
            peer_id: 900 + region_id,
        }];
        let kind = crate::schedule::OpKind {
            leader: false,
            replica: true,
        };
        Operator::new("make-up-replica", kind, &other, steps, 0)
    };
    ops.add(busy(4, 8), &f.settings).unwrap();
    let check = |ops: &Operators| {
        replica_checker::check(&r, &f.ctx(), ops, &mut TestIds::default()).map(|op| op.steps)
    };
    // Store 5 is as good a place as store 4.
    assert_eq!(check(&ops), Some(moved(2, 5, None)));
    // Both z3 stores busy: wait rather than settle for a store no better.
    ops.add(busy(5, 9), &f.settings).unwrap();
    assert_eq!(check(&ops), None);
    // The cluster-wide replica limit holds the move back in the scheduler.
    let mut s = Scheduler::default();
    f.settings.store_add_peer_limit = 4;
    f.settings.leader_schedule_limit = 0;
    f.settings.replica_schedule_limit = 0;
    let out = s.on_heartbeat(&r, &f.ctx(), &mut TestIds::default());
    assert!(out.command.is_none() && s.operators.is_empty());
    f.settings.replica_schedule_limit = 1;
    let out = s.on_heartbeat(&r, &f.ctx(), &mut TestIds::default());
    assert!(out.command.is_some());
    assert_eq!(
        s.operators.get(1).map(|op| op.desc),
        Some("move-to-better-location")
    );
}
