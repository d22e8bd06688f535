//! Leader balance: spreads region leaders over the stores holding the regions' voters, after
//! PD's `balance-leader` scheduler, one region at a time as its heartbeats arrive.
//!
//! [`check`] looks at the Up stores holding a caught-up, healthy voter of the region. When the
//! region's leader sits on the one with the most leaders, and that store leads at least
//! [`MIN_GAP`] more regions than the one with the fewest, it returns a `balance-leader`
//! operator transferring the leadership to the voter on the fewest-leaders store (lowest store
//! id on ties). Leader counts include the transfers already running, and
//! `leader-schedule-limit` caps how many run at once ([`super::Operators::admit`]).

use std::cmp::Reverse;

use proto::metapb::PeerRole;

use super::context::{Context, PeerHealth};
use super::operator::{OpKind, Operator, Step};
use super::operators::Operators;
use crate::cluster::{Liveness, RegionInfo};

/// Leader count difference worth a transfer: with 1 a transfer would only swap the roles.
pub const MIN_GAP: i64 = 2;

/// A `balance-leader` operator for `region`, if its leader's store leads too many regions.
pub fn check(region: &RegionInfo, ctx: &Context<'_>, ops: &Operators) -> Option<Operator> {
    if ctx.settings.leader_schedule_limit == 0 {
        return None;
    }
    let leader = region.leader?;
    let leaders =
        |store_id: u64| ctx.counts(store_id).leaders as i64 + ops.leader_influence(store_id);
    let candidates: Vec<(u64, i64)> = region
        .meta
        .peers
        .iter()
        .filter(|p| p.role() == PeerRole::Voter)
        .filter(|p| !region.pending_peers.iter().any(|x| x.id == p.id))
        .filter(|p| ctx.peer_health(region, p) == PeerHealth::Healthy)
        .filter(|p| ctx.liveness(p.store_id) == Some(Liveness::Up))
        .map(|p| (p.store_id, leaders(p.store_id)))
        .collect();
    let (_, own) = candidates
        .iter()
        .copied()
        .find(|(s, _)| *s == leader.store_id)?;
    let most = candidates.iter().map(|(_, n)| *n).max()?;
    let (to_store, fewest) = candidates
        .iter()
        .copied()
        .filter(|(s, _)| *s != leader.store_id)
        .max_by_key(|(s, n)| (Reverse(*n), Reverse(*s)))?;
    if own < most || own - fewest < MIN_GAP {
        return None;
    }
    let step = Step::TransferLeader {
        from_store: leader.store_id,
        to_store,
    };
    let kind = OpKind {
        leader: true,
        replica: false,
    };
    Some(Operator::new(
        "balance-leader",
        kind,
        region,
        vec![step],
        ctx.now_ms,
    ))
}
