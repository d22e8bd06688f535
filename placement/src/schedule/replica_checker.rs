//! The replica checker: keeps each region at `max-replicas` healthy voters, as well isolated
//! as the stores allow, after PD's `ReplicaChecker` and `LearnerChecker`. [`check`] is a pure
//! function of one region and the cluster [`Context`]; it returns at most one [`Operator`],
//! checking in this order:
//!
//! 1. a learner that must be replaced (store down, tombstone or offline, or stuck pending) is
//!    removed;
//! 2. a healthy learner that has caught up (not pending) is promoted (`promote-learner`);
//! 3. a voter that must be replaced (down first, then stuck pending, then offline): while the
//!    region has fewer than `max-replicas` healthy voters, it is moved ([`move_steps`]) to a
//!    new store (`replace-down-replica`, `replace-pending-replica`, `replace-offline-replica`);
//!    once it has enough, the voter is removed (`remove-down-replica`,
//!    `remove-pending-replica`, `remove-offline-replica`). Nothing else happens meanwhile;
//! 4. fewer voters and learners than `max-replicas`: a learner is added on the best store and
//!    promoted (`make-up-replica`);
//! 5. more voters than `max-replicas`: the worst-placed voter is removed
//!    (`remove-extra-replica`);
//! 6. all in place, but a voter could sit somewhere strictly better isolated from the
//!    others: it moves there (`move-to-better-location`).
//!
//! Before all of these, a region left in a joint state by an operator that did not finish (a
//! leader change, a timeout) gets a `leave-joint-state` operator, as PD's does.
//!
//! A new peer goes where [`pick_store`] says: never onto a store low on space
//! ([`Context::is_low_space`]; [`Blocked::LowSpace`] when that leaves none), never into an
//! `isolation-level` domain that already holds a replica of the region (the region stays
//! under-replicated instead, and [`check_region`] says so as [`Blocked::Isolation`]);
//! among the rest, to the stores best isolated from the region's other replicas
//! ([`Context::distinct_score`]), and of those to the Up one under its add-peer limit with
//! the lowest region score, then the lowest id.
//! The leader is only removed when nothing else can be, after a leader transfer in the same
//! operator.
//!
//! A move ([`move_steps`], PD's move-peer with joint consensus) adds a learner on the new
//! store, moves the leadership off the old voter if it leads, then promotes the learner and
//! demotes the old voter in one joint change, leaves the joint state and removes the demoted
//! learner: the region never has a single voter set holding both the old and the new replica,
//! so a move inside one failure domain cannot leave two of a majority's voters there.

use std::cmp::Reverse;

use proto::metapb::{self, PeerRole};

use super::context::{Context, PeerHealth};
use super::operator::{in_joint_state, OpKind, Operator, Step};
use super::operator_controller::Operators;
use crate::cluster::{Liveness, RegionInfo};

/// Where new peer ids come from (the id allocator in the server, a counter in tests).
pub trait PeerIds {
    /// A fresh peer id, or `None` when none can be had without waiting.
    fn next_peer_id(&mut self) -> Option<u64>;
}

const REPLICA: OpKind = OpKind {
    leader: false,
    replica: true,
};

fn is_voter(p: &metapb::Peer) -> bool {
    p.role() == PeerRole::Voter
}

fn is_learner(p: &metapb::Peer) -> bool {
    p.role() == PeerRole::Learner
}

fn is_pending(region: &RegionInfo, p: &metapb::Peer) -> bool {
    region.pending_peers.iter().any(|x| x.id == p.id)
}

/// Why the checker made no operator for a region that needs one, for the
/// `placement_schedule_checker_events_total` metric and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// No store can take the missing replica: every Up store holds one already.
    NoTargetStore,
    /// Stores could take it, but each shares an `isolation-level` domain with a replica of
    /// the region: it stays under-replicated rather than break isolation.
    Isolation,
    /// Every store that could take it is low on space ([`Context::is_low_space`]).
    LowSpace,
}

impl Blocked {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Blocked::NoTargetStore => "no-target-store",
            Blocked::Isolation => "isolation-level-blocked",
            Blocked::LowSpace => "low-space",
        }
    }
}

/// What the checker decided for one region.
#[derive(Debug, Default)]
pub struct Checked {
    pub op: Option<Operator>,
    /// Set when the region needs a replica and none can be placed.
    pub blocked: Option<Blocked>,
}

impl From<Option<Operator>> for Checked {
    fn from(op: Option<Operator>) -> Self {
        Checked { op, blocked: None }
    }
}

/// The operator `region` needs to reach `max-replicas` healthy voters, if any.
pub fn check(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
) -> Option<Operator> {
    check_region(region, ctx, ops, ids).op
}

/// [`check`], also saying why no replica could be added where one is missing.
pub fn check_region(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
) -> Checked {
    if region.leader.is_none() {
        return Checked::default();
    }
    if in_joint_state(region) {
        return Some(leave_joint(region, ctx)).into();
    }
    let health: Vec<(metapb::Peer, PeerHealth)> = region
        .meta
        .peers
        .iter()
        .map(|p| (*p, ctx.peer_health(region, p)))
        .collect();
    if let Some(checked) = check_learners(region, ctx, ops, &health) {
        return checked;
    }
    let max = ctx.max_replicas();
    if let Some(checked) = check_sick_voters(region, ctx, ops, ids, &health, max) {
        return checked;
    }
    check_replica_count(region, ctx, ops, ids, max)
}

/// The operator taking a region out of a joint state an unfinished operator left it in.
fn leave_joint(region: &RegionInfo, ctx: &Context<'_>) -> Operator {
    Operator::new(
        "leave-joint-state",
        REPLICA,
        region,
        vec![Step::LeaveJoint],
        ctx.now_ms,
    )
}

/// Whether a peer, paired with its health, is healthy.
fn is_healthy((_, h): &&(metapb::Peer, PeerHealth)) -> bool {
    *h == PeerHealth::Healthy
}

/// The operator descriptions for removing and for replacing a peer in health `h`.
fn removal_descs(h: PeerHealth) -> (&'static str, &'static str) {
    match h {
        PeerHealth::Offline => ("remove-offline-replica", "replace-offline-replica"),
        PeerHealth::Pending => ("remove-pending-replica", "replace-pending-replica"),
        _ => ("remove-down-replica", "replace-down-replica"),
    }
}

/// How urgently a voter in health `h` must be replaced: lower first.
fn urgency(h: PeerHealth) -> u8 {
    match h {
        PeerHealth::Down => 0,
        PeerHealth::Pending => 1,
        PeerHealth::Offline | PeerHealth::Healthy => 2,
    }
}

/// Steps 1 and 2: removes a learner that must go, or promotes one that has caught up.
fn check_learners(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    health: &[(metapb::Peer, PeerHealth)],
) -> Option<Checked> {
    // 1. A learner that must go.
    if let Some((p, h)) = health
        .iter()
        .find(|(p, h)| is_learner(p) && *h != PeerHealth::Healthy)
    {
        return Some(remove(region, ctx, ops, p, removal_descs(*h).0).into());
    }
    // 2. A learner that has caught up.
    let (p, _) = health
        .iter()
        .filter(is_healthy)
        .find(|(p, _)| is_learner(p) && !is_pending(region, p))?;
    let step = Step::PromoteLearner {
        store_id: p.store_id,
        peer_id: p.id,
    };
    let op = Operator::new("promote-learner", REPLICA, region, vec![step], ctx.now_ms);
    Some(Some(op).into())
}

/// Step 3: removes or replaces the voter that most urgently must be replaced, if any.
fn check_sick_voters(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
    health: &[(metapb::Peer, PeerHealth)],
    max: usize,
) -> Option<Checked> {
    let healthy_voters = health
        .iter()
        .filter(is_healthy)
        .filter(|(p, _)| is_voter(p))
        .count();
    // 3. A voter that must be replaced: down first, then stuck pending, then offline.
    let (p, h) = health
        .iter()
        .filter(|(p, h)| is_voter(p) && *h != PeerHealth::Healthy)
        .min_by_key(|(p, h)| (urgency(*h), p.store_id))?;
    let (remove_desc, replace_desc) = removal_descs(*h);
    if healthy_voters >= max {
        return Some(remove(region, ctx, ops, p, remove_desc).into());
    }
    if region.meta.peers.iter().any(is_learner) {
        return Some(Checked::default()); // A replacement is catching up.
    }
    Some(replace(region, ctx, ops, ids, p, replace_desc))
}

/// Steps 4 to 6: makes up missing replicas, removes extra voters, or improves isolation.
fn check_replica_count(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
    max: usize,
) -> Checked {
    let peers = &region.meta.peers;
    // 4. Too few replicas.
    if peers.len() < max {
        return add(region, ctx, ops, ids, "make-up-replica");
    }
    // 5. Too many voters.
    let voters: Vec<&metapb::Peer> = peers.iter().filter(|p| is_voter(p)).collect();
    if voters.len() > max {
        let victim = worst_placed(region, ctx, &voters);
        return victim
            .and_then(|v| remove(region, ctx, ops, v, "remove-extra-replica"))
            .into();
    }
    // 6. Every replica in place and healthy: can isolation be improved?
    if voters.len() == max && peers.len() == max && region.pending_peers.is_empty() {
        return better_location(region, ctx, ops, ids, &voters).into();
    }
    Checked::default()
}

/// The best store for one more replica next to the region's healthy ones, and a peer id for
/// it; `Err` says what to report (nothing when waiting).
fn new_place(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
) -> Result<(u64, u64), Checked> {
    let keep: Vec<u64> = region
        .meta
        .peers
        .iter()
        .filter(|p| ctx.peer_health(region, p) == PeerHealth::Healthy)
        .map(|p| p.store_id)
        .collect();
    let store_id = match pick_store(region, ctx, ops, &keep, &|_| true) {
        Pick::Store(id) => id,
        Pick::Wait => return Err(Checked::default()),
        Pick::Blocked(why) => {
            return Err(Checked {
                op: None,
                blocked: Some(why),
            })
        }
    };
    let peer_id = ids.next_peer_id().ok_or_else(Checked::default)?;
    Ok((store_id, peer_id))
}

/// An operator adding a learner on the best store, then promoting it: for a region short of
/// voters, where the new voter replaces none.
fn add(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
    desc: &'static str,
) -> Checked {
    let (store_id, peer_id) = match new_place(region, ctx, ops, ids) {
        Ok(place) => place,
        Err(checked) => return checked,
    };
    let steps = vec![
        Step::AddLearner { store_id, peer_id },
        Step::PromoteLearner { store_id, peer_id },
    ];
    Some(Operator::new(desc, REPLICA, region, steps, ctx.now_ms)).into()
}

/// An operator moving the sick voter `sick` to the best store ([`move_steps`]).
fn replace(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
    sick: &metapb::Peer,
    desc: &'static str,
) -> Checked {
    let (store_id, peer_id) = match new_place(region, ctx, ops, ids) {
        Ok(place) => place,
        Err(checked) => return checked,
    };
    let (steps, kind) = move_steps(region, ctx, ops, sick, store_id, peer_id);
    Some(Operator::new(desc, kind, region, steps, ctx.now_ms)).into()
}

/// The result of looking for a store for a new replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Store(u64),
    /// The best-isolated stores are busy (at their add-peer limit, or disconnected for
    /// now): wait for them rather than settle for a worse place.
    Wait,
    Blocked(Blocked),
}

/// The best store for a new peer of `region`, next to the replicas on `keep`, among those
/// `accept` lets through, in PD's two stages: first, of the stores that could hold the
/// region (Up or just disconnected, not holding it, not low on space, isolated under
/// `isolation-level`), keep those best isolated from `keep` ([`Context::distinct_score`]);
/// then, of those, take the
/// Up one under its add-peer limit with the lowest region score, then the lowest id. A
/// temporary state thus delays a replica instead of putting it somewhere worse.
pub fn pick_store(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    keep: &[u64],
    accept: &dyn Fn(u64) -> bool,
) -> Pick {
    let possible: Vec<u64> = ctx
        .stores()
        .map(|s| s.meta.id)
        .filter(|id| {
            matches!(
                ctx.liveness(*id),
                Some(Liveness::Up | Liveness::Disconnected)
            )
        })
        .filter(|id| !region.meta.peers.iter().any(|p| p.store_id == *id))
        .filter(|id| accept(*id))
        .collect();
    if possible.is_empty() {
        return Pick::Blocked(Blocked::NoTargetStore);
    }
    let possible: Vec<u64> = possible
        .into_iter()
        .filter(|id| !ctx.is_low_space(*id))
        .collect();
    if possible.is_empty() {
        return Pick::Blocked(Blocked::LowSpace);
    }
    let isolated: Vec<(u64, u64)> = possible
        .into_iter()
        .filter(|id| ctx.isolated(keep, *id))
        .map(|id| (id, ctx.distinct_score(keep, id)))
        .collect();
    let Some(best) = isolated.iter().map(|(_, score)| *score).max() else {
        return Pick::Blocked(Blocked::Isolation);
    };
    let limit = ctx.settings.store_add_peer_limit;
    isolated
        .into_iter()
        .filter(|(_, score)| *score == best)
        .map(|(id, _)| id)
        .filter(|id| ctx.liveness(*id) == Some(Liveness::Up))
        .filter(|id| ops.adding_to(*id) < limit)
        .min_by_key(|id| (ctx.region_score(ops, *id), *id))
        .map_or(Pick::Wait, Pick::Store)
}

/// The best store for a new peer of `region` next to the replicas on `keep`, if one can
/// take it now ([`pick_store`]).
pub fn select_target(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    keep: &[u64],
) -> Option<u64> {
    match pick_store(region, ctx, ops, keep, &|_| true) {
        Pick::Store(id) => Some(id),
        Pick::Wait | Pick::Blocked(_) => None,
    }
}

/// A `move-to-better-location` operator (PD's location replacement): the worst-placed voter
/// whose replacement makes the region strictly better isolated moves to the best store for
/// it. "Better" compares the sum of [`Context::distinct_score`] over every pair of the
/// region's stores: swapping `old` for `new` changes it by `score(new, rest) -
/// score(old, rest)`, which must be positive, so a move never leaves isolation worse or
/// equal and moves cannot cycle. The new store must also satisfy `isolation-level`.
fn better_location(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
    voters: &[&metapb::Peer],
) -> Option<Operator> {
    if ctx.settings.location_labels.is_empty() {
        return None;
    }
    let all_up = voters
        .iter()
        .all(|p| ctx.liveness(p.store_id) == Some(Liveness::Up));
    if !all_up {
        return None;
    }
    let stores: Vec<u64> = voters.iter().map(|p| p.store_id).collect();
    let is_leader = |p: &metapb::Peer| region.leader.is_some_and(|l| l.id == p.id);
    let mut order: Vec<&metapb::Peer> = voters.to_vec();
    order.sort_by_key(|p| {
        (
            ctx.distinct_score(&stores, p.store_id),
            is_leader(p),
            Reverse(ctx.counts(p.store_id).region_size),
            Reverse(p.store_id),
        )
    });
    for old in order {
        let rest: Vec<u64> = stores
            .iter()
            .copied()
            .filter(|s| *s != old.store_id)
            .collect();
        let old_score = ctx.distinct_score(&rest, old.store_id);
        let better = |id: u64| ctx.distinct_score(&rest, id) > old_score;
        match pick_store(region, ctx, ops, &rest, &better) {
            Pick::Store(target) => {
                let peer_id = ids.next_peer_id()?;
                let (steps, kind) = move_steps(region, ctx, ops, old, target, peer_id);
                let desc = "move-to-better-location";
                return Some(Operator::new(desc, kind, region, steps, ctx.now_ms));
            }
            // The best place is busy: wait for it.
            Pick::Wait => return None,
            Pick::Blocked(_) => {}
        }
    }
    None
}

/// The steps moving `source`'s replica to `target` (PD's move-peer operator with joint
/// consensus): add a learner with `peer_id` on `target`; if `source` leads, move the
/// leadership to the remaining voter with the fewest leaders (skipping evicted stores); then
/// promote the learner and demote `source` in one joint change, leave the joint state and
/// remove `source`'s peer, a learner by then.
///
/// A lone voter cannot hand its leadership to anyone before the learner is a voter: there
/// (one replica, no fault tolerance to keep) the learner is promoted first, leads, and the
/// old voter is removed.
pub fn move_steps(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    source: &metapb::Peer,
    target: u64,
    peer_id: u64,
) -> (Vec<Step>, OpKind) {
    let add = Step::AddLearner {
        store_id: target,
        peer_id,
    };
    let remove = Step::RemovePeer {
        store_id: source.store_id,
        peer_id: source.id,
    };
    let mut kind = REPLICA;
    if region.leader.is_none_or(|l| l.id != source.id) {
        let steps = vec![
            add,
            Step::EnterJoint {
                promote: (target, peer_id),
                demote: (source.store_id, source.id),
            },
            Step::LeaveJoint,
            remove,
        ];
        return (steps, kind);
    }
    kind.leader = true;
    let evicted = ctx.schedulers().evict_leader;
    let voters: Vec<u64> = (region.meta.peers.iter())
        .filter(|p| p.id != source.id && is_voter(p))
        .map(|p| p.store_id)
        .collect();
    let to_store = voters
        .iter()
        .copied()
        .filter(|s| !evicted.contains(s))
        .min_by_key(|s| (ctx.counts(*s).leaders as i64 + ops.leader_influence(*s), *s))
        .or_else(|| voters.iter().copied().min());
    let steps = match to_store {
        Some(to_store) => vec![
            add,
            Step::TransferLeader {
                from_store: source.store_id,
                to_store,
            },
            Step::EnterJoint {
                promote: (target, peer_id),
                demote: (source.store_id, source.id),
            },
            Step::LeaveJoint,
            remove,
        ],
        None => vec![
            add,
            Step::PromoteLearner {
                store_id: target,
                peer_id,
            },
            Step::TransferLeader {
                from_store: source.store_id,
                to_store: target,
            },
            remove,
        ],
    };
    (steps, kind)
}

/// The voter whose removal hurts isolation least: lowest distinct score among the others,
/// then the store with the most peers, then the highest store id. Not the leader while
/// another voter can go.
fn worst_placed<'r>(
    region: &RegionInfo,
    ctx: &Context<'_>,
    voters: &[&'r metapb::Peer],
) -> Option<&'r metapb::Peer> {
    let stores: Vec<u64> = voters.iter().map(|p| p.store_id).collect();
    let is_leader = |p: &metapb::Peer| region.leader.is_some_and(|l| l.id == p.id);
    let followers: Vec<&metapb::Peer> = voters.iter().copied().filter(|p| !is_leader(p)).collect();
    let pool = if followers.is_empty() {
        voters.to_vec()
    } else {
        followers
    };
    pool.into_iter().min_by_key(|p| {
        let score = ctx.distinct_score(&stores, p.store_id);
        (
            score,
            Reverse(ctx.counts(p.store_id).peers),
            Reverse(p.store_id),
        )
    })
}

/// An operator removing `victim`, moving the leadership away first when it leads.
fn remove(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    victim: &metapb::Peer,
    desc: &'static str,
) -> Option<Operator> {
    let remove = Step::RemovePeer {
        store_id: victim.store_id,
        peer_id: victim.id,
    };
    if region.leader.is_none_or(|l| l.id != victim.id) {
        return Some(Operator::new(
            desc,
            REPLICA,
            region,
            vec![remove],
            ctx.now_ms,
        ));
    }
    let to_store = transfer_target(region, ctx, ops, victim)?;
    let transfer = Step::TransferLeader {
        from_store: victim.store_id,
        to_store,
    };
    let kind = OpKind {
        leader: true,
        replica: true,
    };
    Some(Operator::new(
        desc,
        kind,
        region,
        vec![transfer, remove],
        ctx.now_ms,
    ))
}

/// The healthy, caught-up voter (other than `from`) on the store with the fewest leaders.
fn transfer_target(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    from: &metapb::Peer,
) -> Option<u64> {
    region
        .meta
        .peers
        .iter()
        .filter(|p| p.id != from.id && is_voter(p) && !is_pending(region, p))
        .filter(|p| ctx.peer_health(region, p) == PeerHealth::Healthy)
        .filter(|p| ctx.liveness(p.store_id) == Some(Liveness::Up))
        .min_by_key(|p| {
            let leaders = ctx.counts(p.store_id).leaders as i64;
            (leaders + ops.leader_influence(p.store_id), p.store_id)
        })
        .map(|p| p.store_id)
}
