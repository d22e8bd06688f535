//! Region balance: evens out how many replicas each store holds, after PD's `balance-region`
//! scheduler, one region at a time as its heartbeats arrive.
//!
//! [`check`] only looks at a settled region (a leader, exactly `max-replicas` healthy,
//! caught-up voters, no learner). Its source is the region's store holding the most replicas;
//! its target the Up store, not holding the region and under its add-peer limit, holding the
//! fewest, among those at least as well isolated from the region's other replicas as the
//! source ([`Context::distinct_score`]), so isolation never gets worse. When the source holds
//! at least [`MIN_GAP`] more replicas than the target, it returns a `balance-region` operator:
//! add a learner on the target, promote it, move the leadership away if the source leads,
//! remove the source's peer. Replica counts include running operators' adds and removes;
//! `region-schedule-limit` caps how many balance-region operators run at once.

use proto::metapb::PeerRole;

use super::context::{Context, PeerHealth};
use super::operator::{OpKind, Operator, Step};
use super::operators::Operators;
use super::replica_checker::PeerIds;
use crate::cluster::{Liveness, RegionInfo};

/// Replica count difference worth a move: after it, the two stores differ by at most one.
pub const MIN_GAP: i64 = 3;

/// The operator description, also used to count running ones.
pub const DESC: &str = "balance-region";

fn removing_from(ops: &Operators, store_id: u64) -> i64 {
    ops.running()
        .flat_map(|op| op.steps.iter())
        .filter(|s| matches!(s, Step::RemovePeer { store_id: id, .. } if *id == store_id))
        .count() as i64
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
    let leader = region.leader?;
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
    let load =
        |id: u64| ctx.counts(id).peers as i64 + ops.adding_to(id) as i64 - removing_from(ops, id);
    let source = peers
        .iter()
        .max_by_key(|p| (load(p.store_id), p.store_id))?;
    let others: Vec<u64> = (peers.iter())
        .filter(|p| p.id != source.id)
        .map(|p| p.store_id)
        .collect();
    let floor = ctx.distinct_score(&others, source.store_id);
    let add_limit = ctx.settings.store_add_peer_limit;
    let target = ctx
        .stores()
        .map(|s| s.meta.id)
        .filter(|id| ctx.liveness(*id) == Some(Liveness::Up))
        .filter(|id| !peers.iter().any(|p| p.store_id == *id))
        .filter(|id| ops.adding_to(*id) < add_limit)
        .filter(|id| ctx.distinct_score(&others, *id) >= floor)
        .min_by_key(|id| (load(*id), *id))?;
    if load(source.store_id) - load(target) < MIN_GAP {
        return None;
    }
    let peer_id = ids.next_peer_id()?;
    let mut steps = vec![
        Step::AddLearner {
            store_id: target,
            peer_id,
        },
        Step::PromoteLearner {
            store_id: target,
            peer_id,
        },
    ];
    let mut kind = OpKind {
        leader: false,
        replica: true,
    };
    if leader.id == source.id {
        let evicted = ctx.schedulers().evict_leader;
        let to_store = others
            .iter()
            .copied()
            .filter(|s| !evicted.contains(s))
            .min_by_key(|s| (ctx.counts(*s).leaders as i64 + ops.leader_influence(*s), *s))
            .unwrap_or(target);
        steps.push(Step::TransferLeader {
            from_store: source.store_id,
            to_store,
        });
        kind.leader = true;
    }
    steps.push(Step::RemovePeer {
        store_id: source.store_id,
        peer_id: source.id,
    });
    Some(Operator::new(DESC, kind, region, steps, ctx.now_ms))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pending, region, store_meta, voter, Fixture, TestIds};
    use super::*;

    fn moves(from: u64, to: u64, transfer_to: Option<u64>) -> Option<Vec<Step>> {
        let mut steps = vec![
            Step::AddLearner {
                store_id: to,
                peer_id: 100,
            },
            Step::PromoteLearner {
                store_id: to,
                peer_id: 100,
            },
        ];
        if let Some(to_store) = transfer_to {
            steps.push(Step::TransferLeader {
                from_store: from,
                to_store,
            });
        }
        steps.push(Step::RemovePeer {
            store_id: from,
            peer_id: from,
        });
        Some(steps)
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
