//! Leader balance: spreads region leaders over the stores holding the regions' voters, after
//! PD's `balance-leader` scheduler, one region at a time as its heartbeats arrive.
//!
//! [`check`] looks at the Up stores holding a caught-up, healthy voter of the region. When the
//! region's leader sits on the one with the most leaders, and that store leads at least
//! [`MIN_GAP`] more regions than the one with the fewest, it returns a `balance-leader`
//! operator transferring the leadership to the voter on the fewest-leaders store (lowest store
//! id on ties). Leader counts include the transfers already running, and
//! `leader-schedule-limit` caps how many run at once ([`super::Operators::admit`]). A store
//! named by an evict-leader scheduler is never a target.

use std::cmp::Reverse;

use proto::metapb::PeerRole;

use super::context::{Context, PeerHealth};
use super::operator::{OpKind, Operator, Step};
use super::operator_controller::Operators;
use crate::cluster::{Liveness, RegionInfo};

/// Leader count difference worth a transfer: with 1 a transfer would only swap the roles.
pub const MIN_GAP: i64 = 2;

/// A `balance-leader` operator for `region`, if its leader's store leads too many regions.
pub fn check(region: &RegionInfo, ctx: &Context<'_>, ops: &Operators) -> Option<Operator> {
    if ctx.settings.leader_schedule_limit == 0 {
        return None;
    }
    let leader = region.leader?;
    let evicted = ctx.schedulers().evict_leader;
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
        .filter(|(s, _)| *s != leader.store_id && !evicted.contains(s))
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

#[cfg(test)]
mod tests {
    use super::super::tests::{learner, pending, region, voter, Fixture};
    use super::*;
    use crate::cluster::RegionInfo;
    use crate::schedule::Operators;

    fn summary(op: Option<Operator>) -> Option<(&'static str, Vec<Step>)> {
        op.map(|op| (op.desc, op.steps))
    }

    const LEADER: OpKind = OpKind {
        leader: true,
        replica: false,
    };

    #[test]
    fn balance_table() {
        let transfer = |to_store| {
            Some((
                "balance-leader",
                vec![Step::TransferLeader {
                    from_store: 1,
                    to_store,
                }],
            ))
        };
        let three = region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3);
        // (name, extra leaders on stores 1/2/3, region, running transfer 1->2, expected)
        type Row = (
            &'static str,
            [u64; 3],
            RegionInfo,
            bool,
            Option<(&'static str, Vec<Step>)>,
        );
        let rows: Vec<Row> = vec![
            (
                "balanced enough: 1 vs 0",
                [0, 0, 0],
                three.clone(),
                false,
                None,
            ),
            (
                "gap of 2: move to the lowest id",
                [1, 0, 0],
                three.clone(),
                false,
                transfer(2),
            ),
            (
                "gap of 3: move to the fewest",
                [2, 0, 1],
                three.clone(),
                false,
                transfer(2),
            ),
            (
                "leader store is not the busiest",
                [0, 3, 0],
                three.clone(),
                false,
                None,
            ),
            (
                "running transfers count",
                [2, 0, 0],
                three.clone(),
                true,
                transfer(3),
            ),
            (
                "pending voter is no target",
                [2, 0, 0],
                pending(three.clone(), &[2]),
                false,
                transfer(3),
            ),
            (
                "learner is no target",
                [2, 0, 0],
                region(&[voter(1, 1), learner(2, 2)], 1, 2),
                false,
                None,
            ),
        ];
        for (name, load, r, running, want) in rows {
            let mut f = Fixture::new(3);
            f.report(&r);
            for (i, n) in load.iter().enumerate() {
                f.load(i as u64 + 1, *n, 1000 * (i as u64 + 1));
            }
            let mut ops = Operators::default();
            if running {
                let mut other = region(&[voter(91, 1), voter(92, 2)], 91, 1);
                other.meta.id = 9;
                let step = Step::TransferLeader {
                    from_store: 1,
                    to_store: 2,
                };
                ops.add(
                    Operator::new("balance-leader", LEADER, &other, vec![step], 0),
                    &f.settings,
                )
                .unwrap();
            }
            let got = summary(check(&r, &f.ctx(), &ops));
            assert_eq!(got, want, "{name}");
        }
        let mut f = Fixture::new(3);
        f.report(&three);
        f.load(1, 2, 1000);
        f.evict(&[2]);
        let got = summary(check(&three, &f.ctx(), &Operators::default()));
        assert_eq!(got, transfer(3), "evicted store is no target");
        let mut f = Fixture::new(3);
        f.settings.leader_schedule_limit = 0;
        f.load(1, 3, 1000);
        assert!(
            check(&three, &f.ctx(), &Operators::default()).is_none(),
            "disabled"
        );
    }
}
