//! The replica checker: keeps each region at `max-replicas` healthy voters, after PD's
//! `ReplicaChecker` and `LearnerChecker`. [`check`] is a pure function of one region and the
//! cluster [`Context`]; it returns at most one [`Operator`], checking in this order:
//!
//! 1. a learner that must be replaced (store down, tombstone or offline) is removed;
//! 2. a healthy learner that has caught up (not pending) is promoted (`promote-learner`);
//! 3. a voter that must be replaced: while the region has fewer than `max-replicas` healthy
//!    voters, a replacement learner is added and promoted (`replace-down-replica`,
//!    `replace-offline-replica`); once it has enough, the voter is removed
//!    (`remove-down-replica`, `remove-offline-replica`). Nothing else happens meanwhile;
//! 4. fewer voters and learners than `max-replicas`: a learner is added on the best store and
//!    promoted (`make-up-replica`);
//! 5. more voters than `max-replicas`: the worst-placed voter is removed
//!    (`remove-extra-replica`).
//!
//! A new peer goes to the Up store, not holding the region and under its add-peer limit, that
//! is best isolated from the region's other replicas ([`Context::distinct_score`]), then holds
//! the fewest peers, then has the lowest id. The leader is only removed when nothing else can
//! be, after a leader transfer in the same operator. A region in a joint state is left alone.

use std::cmp::Reverse;

use proto::metapb::{self, PeerRole};

use super::context::{Context, PeerHealth};
use super::operator::{OpKind, Operator, Step};
use super::operators::Operators;
use crate::cluster::RegionInfo;

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

/// The operator `region` needs to reach `max-replicas` healthy voters, if any.
pub fn check(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
) -> Option<Operator> {
    region.leader?;
    let peers = &region.meta.peers;
    if peers.iter().any(|p| !is_voter(p) && !is_learner(p)) {
        return None;
    }
    let health: Vec<(metapb::Peer, PeerHealth)> = peers
        .iter()
        .map(|p| (*p, ctx.peer_health(region, p)))
        .collect();
    let healthy = |(_, h): &&(metapb::Peer, PeerHealth)| *h == PeerHealth::Healthy;
    let descs = |h: PeerHealth| match h {
        PeerHealth::Offline => ("remove-offline-replica", "replace-offline-replica"),
        _ => ("remove-down-replica", "replace-down-replica"),
    };

    // 1. A learner that must go.
    if let Some((p, h)) = health
        .iter()
        .find(|(p, h)| is_learner(p) && *h != PeerHealth::Healthy)
    {
        return remove(region, ctx, ops, p, descs(*h).0);
    }
    // 2. A learner that has caught up.
    if let Some((p, _)) = health
        .iter()
        .filter(healthy)
        .find(|(p, _)| is_learner(p) && !is_pending(region, p))
    {
        let step = Step::PromoteLearner {
            store_id: p.store_id,
            peer_id: p.id,
        };
        return Some(Operator::new(
            "promote-learner",
            REPLICA,
            region,
            vec![step],
            ctx.now_ms,
        ));
    }
    let max = ctx.max_replicas();
    let healthy_voters = health
        .iter()
        .filter(healthy)
        .filter(|(p, _)| is_voter(p))
        .count();
    // 3. A voter that must be replaced: down first, then offline.
    let sick = health
        .iter()
        .filter(|(p, h)| is_voter(p) && *h != PeerHealth::Healthy)
        .min_by_key(|(p, h)| (*h != PeerHealth::Down, p.store_id));
    if let Some((p, h)) = sick {
        let (remove_desc, replace_desc) = descs(*h);
        if healthy_voters >= max {
            return remove(region, ctx, ops, p, remove_desc);
        }
        if peers.iter().any(is_learner) {
            return None; // A replacement is catching up.
        }
        return add(region, ctx, ops, ids, replace_desc);
    }
    // 4. Too few replicas.
    if peers.len() < max {
        return add(region, ctx, ops, ids, "make-up-replica");
    }
    // 5. Too many voters.
    let voters: Vec<&metapb::Peer> = peers.iter().filter(|p| is_voter(p)).collect();
    if voters.len() > max {
        let victim = worst_placed(region, ctx, &voters)?;
        return remove(region, ctx, ops, victim, "remove-extra-replica");
    }
    None
}

/// An operator adding a learner on the best store, then promoting it.
fn add(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
    desc: &'static str,
) -> Option<Operator> {
    let keep: Vec<u64> = region
        .meta
        .peers
        .iter()
        .filter(|p| ctx.peer_health(region, p) == PeerHealth::Healthy)
        .map(|p| p.store_id)
        .collect();
    let store_id = select_target(region, ctx, ops, &keep)?;
    let peer_id = ids.next_peer_id()?;
    let steps = vec![
        Step::AddLearner { store_id, peer_id },
        Step::PromoteLearner { store_id, peer_id },
    ];
    Some(Operator::new(desc, REPLICA, region, steps, ctx.now_ms))
}

/// The best store for a new peer of `region`, next to the replicas on `keep`.
pub fn select_target(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    keep: &[u64],
) -> Option<u64> {
    let limit = ctx.settings.store_add_peer_limit;
    ctx.stores()
        .map(|s| s.meta.id)
        .filter(|id| ctx.liveness(*id) == Some(crate::cluster::Liveness::Up))
        .filter(|id| !region.meta.peers.iter().any(|p| p.store_id == *id))
        .filter(|id| ops.adding_to(*id) < limit)
        .max_by_key(|id| {
            let load = ctx.counts(*id).peers + ops.adding_to(*id) as u64;
            (ctx.distinct_score(keep, *id), Reverse(load), Reverse(*id))
        })
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
        .filter(|p| ctx.liveness(p.store_id) == Some(crate::cluster::Liveness::Up))
        .min_by_key(|p| {
            let leaders = ctx.counts(p.store_id).leaders as i64;
            (leaders + ops.leader_influence(p.store_id), p.store_id)
        })
        .map(|p| p.store_id)
}
