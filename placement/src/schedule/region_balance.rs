//! Region balance: evens out how much region data each store holds, after PD's
//! `balance-region` scheduler, one region at a time as its heartbeats arrive.
//!
//! A store's region score ([`Context::region_score`]) is the size in MiB of the regions it
//! holds ([`crate::cluster::RegionInfo::size_mib`]: each region at least 1 MiB, so a cluster
//! whose regions report no size balances by count), plus what running operators will add to
//! it and minus what they will take away.
//!
//! [`check`] only looks at a settled region (a leader, exactly `max-replicas` healthy,
//! caught-up voters on Up stores, no learner). It tries the region's stores as the source,
//! highest score first. The target is the Up store, not holding the region and under its
//! add-peer limit and not low on space ([`Context::is_low_space`]), with the lowest score,
//! among those at least as well isolated from the region's other replicas as the source
//! ([`Context::distinct_score`]) and allowed by `isolation-level` ([`Context::isolated`]),
//! so isolation never gets worse. The move is
//! worth it when the source's score exceeds the target's by more than twice the tolerance
//! ([`tolerance`], PD's tolerant resource): after the move the source still scores higher
//! than the target, so the reverse move is never worth it and replicas do not ping-pong;
//! stores within that tolerance of each other are balanced. The operator
//! (`balance-region`) adds a learner on the target, promotes it, moves the leadership away
//! if the source leads, and removes the source's peer. `region-schedule-limit` caps how
//! many run at once.

use proto::metapb::PeerRole;

use super::context::{Context, PeerHealth};
use super::operator::Operator;
use super::operator_controller::Operators;
use super::replica_checker::{move_steps, PeerIds};
use crate::cluster::{Liveness, RegionInfo};

/// The operator description, also used to count running ones.
pub const DESC: &str = "balance-region";

/// Per store holding this many regions, the tolerance grows by one region size (PD's
/// adaptive `tolerant-size-ratio`: `0.005` per region of the fullest store).
const REGIONS_PER_TOLERANCE_STEP: u64 = 200;

/// The score difference, in MiB, within which two stores count as balanced for a move of
/// `region`: the larger of the region's size and the cluster's average region size, times
/// PD's adaptive ratio (1, or the fullest store's region count / 200 when larger). A move
/// needs the source to score more than twice this above the target.
pub fn tolerance(region: &RegionInfo, ctx: &Context<'_>) -> i64 {
    let (mut size, mut peers, mut most) = (0u64, 0u64, 0u64);
    for s in ctx.stores() {
        let c = ctx.counts(s.meta.id);
        size = size.saturating_add(c.region_size);
        peers = peers.saturating_add(c.peers);
        most = most.max(c.peers);
    }
    let average = size.checked_div(peers).unwrap_or(1);
    let ratio = (most / REGIONS_PER_TOLERANCE_STEP).max(1);
    let base = region.size_mib().max(average);
    i64::try_from(base.saturating_mul(ratio)).unwrap_or(i64::MAX)
}

/// A `balance-region` operator moving one of `region`'s replicas, if worthwhile.
pub fn check(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    ids: &mut dyn PeerIds,
) -> Option<Operator> {
    let limit = ctx.settings.region_schedule_limit;
    if limit == 0 || ops.running().filter(|op| op.desc == DESC).count() >= limit {
        return None;
    }
    region.leader?;
    let peers = &region.meta.peers;
    let settled = peers.len() == ctx.max_replicas()
        && region.pending_peers.is_empty()
        && peers.iter().all(|p| {
            p.role() == PeerRole::Voter
                && ctx.peer_health(region, p) == PeerHealth::Healthy
                && ctx.liveness(p.store_id) == Some(Liveness::Up)
        });
    if !settled {
        return None;
    }
    let score = |id: u64| ctx.region_score(ops, id);
    let margin = tolerance(region, ctx);
    let mut sources: Vec<_> = peers.iter().collect();
    sources.sort_by_key(|p| std::cmp::Reverse((score(p.store_id), p.store_id)));
    let add_limit = ctx.settings.store_add_peer_limit;
    for source in sources {
        let others: Vec<u64> = (peers.iter())
            .filter(|p| p.id != source.id)
            .map(|p| p.store_id)
            .collect();
        let floor = ctx.distinct_score(&others, source.store_id);
        let target = ctx
            .stores()
            .map(|s| s.meta.id)
            .filter(|id| ctx.liveness(*id) == Some(Liveness::Up))
            .filter(|id| !peers.iter().any(|p| p.store_id == *id))
            .filter(|id| ops.adding_to(*id) < add_limit)
            .filter(|id| !ctx.is_low_space(*id))
            .filter(|id| ctx.distinct_score(&others, *id) >= floor)
            .filter(|id| ctx.isolated(&others, *id))
            .min_by_key(|id| (score(*id), *id));
        let Some(target) = target else {
            continue;
        };
        if score(source.store_id) - margin <= score(target) + margin {
            continue;
        }
        let peer_id = ids.next_peer_id()?;
        let (steps, kind) = move_steps(region, ctx, ops, source, target, peer_id);
        return Some(Operator::new(DESC, kind, region, steps, ctx.now_ms));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::tests::{joint_move, pending, region, store_meta, voter, Fixture, TestIds};
    use super::*;
    use crate::schedule::Step;

    fn moves(from: u64, to: u64, transfer_to: Option<u64>) -> Option<Vec<Step>> {
        Some(joint_move(from, from, to, 100, transfer_to))
    }

    #[test]
    fn balance_table() {
        let three = region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3);
        // Stores 1-3 in zones z1-z3, store 4 in z1.
        let stores: Vec<_> = [(1, "z1"), (2, "z2"), (3, "z3"), (4, "z1")]
            .iter()
            .map(|(id, z)| store_meta(*id, &[("zone", z), ("host", &format!("h{id}"))]))
            .collect();
        // (name, extra replicas on stores 1-4, region, evicted, expected steps)
        type Row = (
            &'static str,
            [u64; 4],
            RegionInfo,
            Vec<u64>,
            Option<Vec<Step>>,
        );
        let rows: Vec<Row> = vec![
            ("gap of 1", [0, 0, 0, 0], three.clone(), vec![], None),
            ("gap of 2", [1, 0, 0, 0], three.clone(), vec![], None),
            (
                "leader's store is fullest: transfer first",
                [3, 0, 0, 0],
                three.clone(),
                vec![],
                moves(1, 4, Some(2)),
            ),
            (
                "transfer skips evicted stores",
                [3, 0, 0, 0],
                three.clone(),
                vec![2],
                moves(1, 4, Some(3)),
            ),
            (
                "isolation would get worse: z2 to z1",
                [0, 3, 0, 0],
                three.clone(),
                vec![],
                None,
            ),
            (
                "pending peer",
                [3, 0, 0, 0],
                pending(three.clone(), &[2]),
                vec![],
                None,
            ),
            (
                "under-replicated is the replica checker's",
                [3, 0, 0, 0],
                region(&[voter(1, 1), voter(2, 2)], 1, 2),
                vec![],
                None,
            ),
        ];
        for (name, load, r, evicted, want) in rows {
            let mut f = Fixture::with_stores(&stores);
            f.report(&r);
            for (i, n) in load.iter().enumerate() {
                f.load(i as u64 + 1, *n, 1000 * (i as u64 + 1));
            }
            f.evict(&evicted);
            let got = check(&r, &f.ctx(), &Operators::default(), &mut TestIds::default());
            assert_eq!(got.map(|op| op.steps), want, "{name}");
        }
    }

    #[test]
    fn limits() {
        let three = region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3);
        let mut f = Fixture::new(4);
        f.report(&three);
        f.load(2, 3, 1000);
        let ctx = f.ctx();
        let op = check(&three, &ctx, &Operators::default(), &mut TestIds::default());
        assert_eq!(op.as_ref().map(|op| op.desc), Some(DESC));
        let mut ops = Operators::default();
        let mut other = three.clone();
        other.meta.id = 9;
        let mut running = op.unwrap();
        running.region_id = 9;
        ops.add(running, &f.settings).unwrap();
        // The running move already takes one replica off store 2: gap 4 - 1 vs 0 + 1.
        assert!(check(&three, &ctx, &ops, &mut TestIds::default()).is_none());
        f.settings.region_schedule_limit = 0;
        assert!(check(
            &three,
            &f.ctx(),
            &Operators::default(),
            &mut TestIds::default()
        )
        .is_none());
    }
}
