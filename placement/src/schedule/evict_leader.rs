//! Named schedulers as PD's `/schedulers` API lists them ([`SchedulerSet`]), and the
//! evict-leader scheduler ([`check`]), after PD's `evict-leader-scheduler`: on demand, before
//! a rolling restart, every leader is moved off the chosen stores.
//!
//! The set is persisted as names (`balance-leader-scheduler`, `balance-region-scheduler`,
//! `evict-leader-scheduler-{store_id}`); the cluster view keeps them and the checkers read
//! them through [`SchedulerSet::from_names`]. Leader balance never picks an evicted store.

use std::collections::BTreeSet;

use proto::metapb::PeerRole;

use super::context::{Context, PeerHealth};
use super::operator::{OpKind, Operator, Step};
use super::operator_controller::Operators;
use crate::cluster::{Liveness, RegionInfo};
use crate::error::{Error, Result};

pub const BALANCE_LEADER: &str = "balance-leader-scheduler";
pub const BALANCE_REGION: &str = "balance-region-scheduler";
pub const EVICT_LEADER: &str = "evict-leader-scheduler";

/// The enabled schedulers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSet {
    pub balance_leader: bool,
    pub balance_region: bool,
    /// Stores to keep free of leaders.
    pub evict_leader: BTreeSet<u64>,
}

impl Default for SchedulerSet {
    fn default() -> Self {
        SchedulerSet {
            balance_leader: true,
            balance_region: true,
            evict_leader: BTreeSet::new(),
        }
    }
}

impl SchedulerSet {
    /// From persisted names; `None` is the default set. Unknown names are ignored.
    pub fn from_names(names: Option<&[String]>) -> Self {
        let Some(names) = names else {
            return SchedulerSet::default();
        };
        let mut set = SchedulerSet {
            balance_leader: false,
            balance_region: false,
            evict_leader: BTreeSet::new(),
        };
        for n in names {
            match n.as_str() {
                BALANCE_LEADER => set.balance_leader = true,
                BALANCE_REGION => set.balance_region = true,
                other => {
                    let id = other
                        .strip_prefix(EVICT_LEADER)
                        .and_then(|s| s.strip_prefix('-'));
                    if let Some(id) = id.and_then(|s| s.parse().ok()) {
                        set.evict_leader.insert(id);
                    }
                }
            }
        }
        set
    }

    /// PD's names, in a stable order.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.balance_leader {
            out.push(BALANCE_LEADER.to_owned());
        }
        if self.balance_region {
            out.push(BALANCE_REGION.to_owned());
        }
        out.extend(
            self.evict_leader
                .iter()
                .map(|id| format!("{EVICT_LEADER}-{id}")),
        );
        out
    }

    /// Adds a scheduler as `POST /schedulers` names it (`store_id` for evict-leader).
    pub fn add(&mut self, name: &str, store_id: Option<u64>) -> Result<()> {
        match name {
            BALANCE_LEADER => self.balance_leader = true,
            BALANCE_REGION => self.balance_region = true,
            EVICT_LEADER => {
                let id = store_id
                    .filter(|id| *id > 0)
                    .ok_or_else(|| Error::invalid("evict-leader-scheduler needs a store_id"))?;
                self.evict_leader.insert(id);
            }
            other => return Err(Error::invalid(format!("unknown scheduler {other}"))),
        }
        Ok(())
    }

    /// Removes a scheduler by its listed name.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        let before = self.clone();
        let rest = name
            .strip_prefix(EVICT_LEADER)
            .and_then(|s| s.strip_prefix('-'));
        match (name, rest.and_then(|s| s.parse::<u64>().ok())) {
            (BALANCE_LEADER, _) => self.balance_leader = false,
            (BALANCE_REGION, _) => self.balance_region = false,
            (_, Some(id)) => {
                self.evict_leader.remove(&id);
            }
            _ => {}
        }
        if *self == before {
            return Err(Error::invalid(format!("scheduler not found: {name}")));
        }
        Ok(())
    }
}

/// An `evict-leader` operator for `region` if its leader sits on an evicted store: the
/// leadership goes to the healthy, caught-up voter on an Up, non-evicted store with the
/// fewest leaders (lowest store id on ties).
pub fn check(
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    evicted: &BTreeSet<u64>,
) -> Option<Operator> {
    let leader = region.leader?;
    if !evicted.contains(&leader.store_id) {
        return None;
    }
    let to_store = region
        .meta
        .peers
        .iter()
        .filter(|p| p.role() == PeerRole::Voter && !evicted.contains(&p.store_id))
        .filter(|p| !region.pending_peers.iter().any(|x| x.id == p.id))
        .filter(|p| ctx.peer_health(region, p) == PeerHealth::Healthy)
        .filter(|p| ctx.liveness(p.store_id) == Some(Liveness::Up))
        .min_by_key(|p| {
            let leaders = ctx.counts(p.store_id).leaders as i64;
            (leaders + ops.leader_influence(p.store_id), p.store_id)
        })?
        .store_id;
    let step = Step::TransferLeader {
        from_store: leader.store_id,
        to_store,
    };
    let kind = OpKind {
        leader: true,
        replica: false,
    };
    Some(Operator::new(
        "evict-leader",
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

    #[test]
    fn names_round_trip() {
        let mut set = SchedulerSet::default();
        assert_eq!(set.names(), [BALANCE_LEADER, BALANCE_REGION]);
        set.add(EVICT_LEADER, Some(4)).unwrap();
        assert!(set.add(EVICT_LEADER, None).is_err());
        assert!(set.add("shuffle-leader-scheduler", None).is_err());
        set.remove(BALANCE_REGION).unwrap();
        let names = set.names();
        assert_eq!(names, [BALANCE_LEADER, "evict-leader-scheduler-4"]);
        assert_eq!(SchedulerSet::from_names(Some(&names)), set);
        set.remove("evict-leader-scheduler-4").unwrap();
        assert!(set.remove("evict-leader-scheduler-4").is_err());
        assert_eq!(SchedulerSet::from_names(None), SchedulerSet::default());
    }

    #[test]
    fn evict_table() {
        let three = region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 3);
        let to = |to_store| {
            Some(vec![Step::TransferLeader {
                from_store: 1,
                to_store,
            }])
        };
        // (name, evicted stores, region, extra leaders on store 2, expected steps)
        type Row = (&'static str, Vec<u64>, RegionInfo, u64, Option<Vec<Step>>);
        let rows: Vec<Row> = vec![
            ("not evicted", vec![2], three.clone(), 0, None),
            ("to the lowest id", vec![1], three.clone(), 0, to(2)),
            ("to the fewest leaders", vec![1], three.clone(), 2, to(3)),
            (
                "evicted targets skipped",
                vec![1, 2],
                three.clone(),
                0,
                to(3),
            ),
            (
                "pending skipped",
                vec![1],
                pending(three.clone(), &[2]),
                0,
                to(3),
            ),
            (
                "learner is no target",
                vec![1],
                region(&[voter(1, 1), learner(2, 2)], 1, 2),
                0,
                None,
            ),
            ("nowhere to go", vec![1, 2, 3], three.clone(), 0, None),
        ];
        for (name, evicted, r, load, want) in rows {
            let mut f = Fixture::new(3);
            f.report(&r);
            f.load(2, load, 1000);
            let evicted: BTreeSet<u64> = evicted.into_iter().collect();
            let got = check(&r, &f.ctx(), &Operators::default(), &evicted);
            assert_eq!(got.map(|op| op.steps), want, "{name}");
        }
    }
}
