//! The scheduler driven heartbeat by heartbeat against fake regions, as the store will run it:
//! report, get a command, apply it, report again.

use super::*;
use crate::schedule::{Outcome, Scheduler};

/// Region `id` (1 is the test region over `["", "k")`, others get their own range).
fn region_n(id: u64, peers: &[metapb::Peer], leader: u64) -> FakeRegion {
    let mut info = region(peers, leader, 1);
    if id != 1 {
        info.meta.id = id;
        info.meta.start_key = format!("r{id:03}").into_bytes();
        info.meta.end_key = format!("r{id:03}~").into_bytes();
    }
    FakeRegion { info }
}

/// One heartbeat: report, run the scheduler, apply the command. Returns what happened.
fn beat(f: &mut Fixture, s: &mut Scheduler, r: &mut FakeRegion, ids: &mut TestIds) -> Outcome {
    f.report(&r.info);
    let out = s.on_heartbeat(&r.info, &f.ctx(), ids);
    if let Some(command) = &out.command {
        r.apply(command);
    }
    out
}

pub(super) fn describe(c: &Command) -> String {
    match c {
        Command::ChangePeer { peer, change_type } => {
            format!(
                "{} {}@{}",
                change_type.as_str_name(),
                peer.id,
                peer.store_id
            )
        }
        Command::TransferLeader { peer } => format!("TransferLeader {}@{}", peer.id, peer.store_id),
        Command::EnterJoint { promote, demote } => format!(
            "EnterJoint +{}@{} -{}@{}",
            promote.id, promote.store_id, demote.id, demote.store_id
        ),
        Command::LeaveJoint => "LeaveJoint".to_owned(),
    }
}

/// Heartbeats until the scheduler has had nothing to say for two rounds; learners catch up
/// after one round of waiting. Returns every command sent. Neither voter set of the region
/// (incoming, outgoing) ever grows past `max-replicas` or the voters it started with.
fn drive(f: &mut Fixture, s: &mut Scheduler, r: &mut FakeRegion) -> Vec<String> {
    let mut ids = TestIds::default();
    let mut sent = Vec::new();
    let mut idle = 0;
    let widest = |r: &FakeRegion| {
        let count = |set: &[PeerRole]| {
            let peers = &r.info.meta.peers;
            peers.iter().filter(|p| set.contains(&p.role())).count()
        };
        count(&[PeerRole::Voter, PeerRole::IncomingVoter])
            .max(count(&[PeerRole::Voter, PeerRole::DemotingVoter]))
    };
    let bound = widest(r).max(f.settings.max_replicas);
    for _ in 0..50 {
        f.advance(1000);
        let out = beat(f, s, r, &mut ids);
        assert!(
            widest(r) <= bound,
            "a voter set grew past {bound}: {:?} after {sent:?}",
            r.info.meta.peers
        );
        match &out.command {
            Some(c) => {
                sent.push(describe(c));
                idle = 0;
            }
            None if !r.info.pending_peers.is_empty() => r.catch_up(),
            None => idle += 1,
        }
        if idle == 2 {
            return sent;
        }
    }
    panic!("scheduling did not settle; sent {sent:?}");
}

#[test]
fn one_voter_grows_to_three() {
    let mut f = Fixture::new(3);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1)], 1);
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(
        sent,
        [
            "AddLearnerNode 100@2",
            "AddNode 100@2",
            "AddLearnerNode 101@3",
            "AddNode 101@3",
        ]
    );
    assert_eq!(r.voters(), vec![1, 2, 3]);
    assert_eq!(r.info.epoch().conf_ver, 5, "one conf_ver per conf change");
    assert!(s.operators.is_empty());
}

#[test]
fn down_store_is_replaced_then_removed() {
    let mut f = Fixture::new(4);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1), voter(2, 2), voter(3, 3)], 1);
    f.report(&r.info);
    f.kill(3);
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(
        sent,
        [
            "AddLearnerNode 100@4",
            "EnterJoint +100@4 -3@3",
            "LeaveJoint",
            "RemoveNode 3@3"
        ]
    );
    assert_eq!(r.voters(), vec![1, 2, 4]);
}

#[test]
fn draining_the_leaders_store_moves_the_leader_first() {
    let mut f = Fixture::new(4);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1), voter(2, 2), voter(3, 3)], 1);
    f.report(&r.info);
    f.set_offline(1);
    // FakeRegion::apply panics if the leader is ever removed.
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(
        sent,
        [
            "AddLearnerNode 100@4",
            "TransferLeader 2@2",
            "EnterJoint +100@4 -1@1",
            "LeaveJoint",
            "RemoveNode 1@1",
        ]
    );
    assert_eq!(r.voters(), vec![2, 3, 4]);
    assert_eq!(r.info.leader.map(|l| l.store_id), Some(2));
}

#[test]
fn timed_out_operator_is_replaced() {
    let mut f = Fixture::new(3);
    let mut s = Scheduler::default();
    let r = region_n(1, &[voter(1, 1)], 1);
    let mut ids = TestIds::default();
    f.report(&r.info);
    let first = s.on_heartbeat(&r.info, &f.ctx(), &mut ids);
    assert_eq!(
        first.events.iter().map(|e| e.name()).collect::<Vec<_>>(),
        ["create"]
    );
    // The store never acts; the same command is re-sent until the operator times out.
    f.advance(30_000);
    let again = s.on_heartbeat(&r.info, &f.ctx(), &mut ids);
    assert_eq!((again.command, again.events.len()), (first.command, 0));
    f.advance(41_000);
    let retry = s.on_heartbeat(&r.info, &f.ctx(), &mut ids);
    let events: Vec<_> = retry.events.iter().map(|e| (e.desc, e.name())).collect();
    assert_eq!(
        events,
        [
            ("make-up-replica", "timeout"),
            ("make-up-replica", "create")
        ]
    );
    let Some(Command::ChangePeer { peer, .. }) = retry.command else {
        panic!("expected a new add");
    };
    assert_eq!(peer.id, FIRST_NEW_PEER + 1, "a fresh peer id");
}

#[test]
fn starved_id_source_is_reported() {
    let mut f = Fixture::new(3);
    let mut s = Scheduler::default();
    let r = region_n(1, &[voter(1, 1)], 1);
    f.report(&r.info);
    let mut dry = TestIds {
        dry: true,
        ..TestIds::default()
    };
    let out = s.on_heartbeat(&r.info, &f.ctx(), &mut dry);
    assert!(out.starved && out.command.is_none() && out.events.is_empty());
    dry.dry = false;
    let out = s.on_heartbeat(&r.info, &f.ctx(), &mut dry);
    assert!(!out.starved && out.command.is_some());
}

#[test]
fn leaders_spread_over_three_stores() {
    let mut f = Fixture::new(3);
    let mut s = Scheduler::default();
    let three = [voter(1, 1), voter(2, 2), voter(3, 3)];
    let mut regions: Vec<FakeRegion> = (1..=6)
        .map(|id| {
            let peers: Vec<metapb::Peer> = (three.iter())
                .map(|p| voter(id * 10 + p.store_id, p.store_id))
                .collect();
            region_n(id, &peers, id * 10 + 1)
        })
        .collect();
    for r in &regions {
        f.report(&r.info);
    }
    let mut ids = TestIds::default();
    for _ in 0..5 {
        for r in &mut regions {
            beat(&mut f, &mut s, r, &mut ids);
        }
    }
    let leaders = |store| {
        (regions.iter())
            .filter(|r| r.info.leader.is_some_and(|l| l.store_id == store))
            .count()
    };
    assert_eq!([leaders(1), leaders(2), leaders(3)], [2, 2, 2]);
    assert!(s.operators.is_empty());
}

#[test]
fn advance_only_moves_running_operators() {
    // The heartbeat handler uses `advance` while a keyspace split is due: a running operator
    // keeps going (and holds the split back), but no new one starts.
    let mut f = Fixture::new(3);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1)], 1);
    f.report(&r.info);
    let idle = s.advance(&r.info, &f.ctx());
    assert_eq!(idle, Outcome::default(), "no operator is made");
    let started = s.on_heartbeat(&r.info, &f.ctx(), &mut TestIds::default());
    assert!(started.running && started.command.is_some());
    r.apply(&started.command.unwrap());
    f.report(&r.info);
    let waiting = s.advance(&r.info, &f.ctx());
    assert!(
        waiting.running && waiting.command.is_none(),
        "learner catching up"
    );
    r.catch_up();
    f.report(&r.info);
    let promote = s.advance(&r.info, &f.ctx());
    assert!(promote.running && promote.command.is_some());
    r.apply(&promote.command.unwrap());
    f.report(&r.info);
    let done = s.advance(&r.info, &f.ctx());
    assert!(!done.running && done.command.is_none());
    assert_eq!(done.events.len(), 1, "the finish");
}

#[test]
fn region_balance_moves_a_replica_off_the_fullest_store() {
    let mut f = Fixture::new(4);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1), voter(2, 2), voter(3, 3)], 1);
    f.report(&r.info);
    f.load(1, 3, 1000);
    // Store 1 also leads the most: leader balance moves the leadership first.
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(
        sent,
        [
            "TransferLeader 2@2",
            "AddLearnerNode 100@4",
            "EnterJoint +100@4 -1@1",
            "LeaveJoint",
            "RemoveNode 1@1",
        ]
    );
    assert_eq!(r.voters(), vec![2, 3, 4]);
}

#[test]
fn evict_leader_moves_the_leader_and_balance_keeps_it_away() {
    let mut f = Fixture::new(3);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1), voter(2, 2), voter(3, 3)], 1);
    f.report(&r.info);
    f.load(2, 3, 1000);
    f.evict(&[1]);
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(sent, ["TransferLeader 3@3"]);
}

#[test]
fn misplaced_replica_moves_to_the_empty_zone() {
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
        zoned(4, "z3", "h4"),
    ];
    let mut f = Fixture::with_stores(&stores);
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1), voter(2, 2), voter(3, 3)], 1);
    f.report(&r.info);
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(
        sent,
        [
            "AddLearnerNode 100@4",
            "EnterJoint +100@4 -2@2",
            "LeaveJoint",
            "RemoveNode 2@2"
        ]
    );
    assert_eq!(r.voters(), vec![1, 3, 4]);
    assert!(
        s.operators.is_empty(),
        "nothing more once every zone holds one"
    );
}

#[test]
fn isolation_level_keeps_a_region_under_replicated() {
    let stores = [
        zoned(1, "z1", "h1"),
        zoned(2, "z1", "h2"),
        zoned(3, "z2", "h3"),
    ];
    let mut f = Fixture::with_stores(&stores);
    f.settings.isolation_level = "zone".into();
    let mut s = Scheduler::default();
    let mut r = region_n(1, &[voter(1, 1)], 1);
    let sent = drive(&mut f, &mut s, &mut r);
    assert_eq!(sent, ["AddLearnerNode 100@3", "AddNode 100@3"]);
    assert_eq!(r.voters(), vec![1, 3]);
    let out = beat(&mut f, &mut s, &mut r, &mut TestIds::default());
    assert_eq!(out.blocked, Some(crate::schedule::Blocked::Isolation));
}
