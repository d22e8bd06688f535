//! Store failover, decided by a pure planner: a store placement reports `Down`, or
//! `Disconnected` for longer than `spec.failoverPeriod`, gets a replacement pod. Each failure is
//! recorded in `status.store.failureStores` and the store StatefulSet runs one extra pod per
//! record, never more than `spec.maxFailoverCount`. Placement re-replicates the failed store's
//! regions onto the new store as it would onto any other.
//!
//! When a failed store is Up again its record is cleared; the StatefulSet then runs more pods
//! than it should, and the scale-in path ([`crate::scale`]) drains the highest-ordinal store and
//! removes its pod, exactly as for a smaller spec. Records of stores that are gone for good
//! (tombstoned or purged) stay, and so do their replacements, until the user clears them.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{FailureStore, StoreInfo, TikvCluster};
use crate::placement::{assign_pods, PlacementView};
use crate::upgrade::parse_duration;

/// Failover period used when the spec's does not parse (the CRD pattern refuses such values).
const DEFAULT_FAILOVER_PERIOD: Duration = Duration::from_secs(300);

/// What failover decided this pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailoverPlan {
    /// The failure records to keep, oldest first; one extra store pod each.
    pub failures: Vec<FailureStore>,
    /// Records added this pass.
    pub added: Vec<FailureStore>,
    /// Records cleared this pass because their store is Up again.
    pub recovered: Vec<FailureStore>,
    /// Failed stores (`id`, pod) left without a replacement: `maxFailoverCount` is reached.
    pub capped: Vec<(u64, String)>,
}

impl FailoverPlan {
    /// Extra store pods the StatefulSet runs beyond `spec.store.replicas`.
    pub fn extra(&self) -> i32 {
        i32::try_from(self.failures.len()).unwrap_or(i32::MAX)
    }
}

/// Keeps the recorded failures as they are (placement silent, or the cluster paused).
pub fn keep(tc: &TikvCluster) -> FailoverPlan {
    let max = usize::try_from(tc.spec.max_failover_count).unwrap_or(0);
    let mut failures = recorded(tc);
    failures.truncate(max);
    FailoverPlan {
        failures,
        ..FailoverPlan::default()
    }
}

fn recorded(tc: &TikvCluster) -> Vec<FailureStore> {
    tc.status
        .as_ref()
        .map(|s| s.store.failure_stores.clone())
        .unwrap_or_default()
}

/// Whether `store` counts as failed at `now`.
fn failed(store: &StoreInfo, period: Duration, now: Timestamp) -> bool {
    match store.state.as_str() {
        "Down" => true,
        "Disconnected" => store.last_heartbeat.as_ref().is_some_and(|t| {
            let silent = now.as_second().saturating_sub(t.0.as_second());
            silent >= i64::try_from(period.as_secs()).unwrap_or(i64::MAX)
        }),
        _ => false,
    }
}

/// The failure records after this pass, given what placement reports at `now`.
pub fn plan_failover(
    tc: &TikvCluster,
    view: Option<&PlacementView>,
    now: Timestamp,
) -> FailoverPlan {
    let Some(view) = view else {
        return keep(tc);
    };
    let max = usize::try_from(tc.spec.max_failover_count).unwrap_or(0);
    let period = parse_duration(&tc.spec.failover_period).unwrap_or(DEFAULT_FAILOVER_PERIOD);
    let mut stores = view.stores.clone();
    assign_pods(tc, &mut stores);
    let mut plan = FailoverPlan::default();
    for f in recorded(tc) {
        let up = stores.iter().any(|s| s.id == f.store_id && s.state == "Up");
        if up {
            plan.recovered.push(f);
        } else if plan.failures.len() < max {
            plan.failures.push(f);
        }
    }
    for s in &stores {
        let Some(pod) = &s.pod else { continue };
        if !failed(s, period, now) || plan.failures.iter().any(|f| f.store_id == s.id) {
            continue;
        }
        if plan.failures.len() >= max {
            plan.capped.push((s.id, pod.clone()));
            continue;
        }
        let record = FailureStore {
            store_id: s.id,
            pod: pod.clone(),
            since: Time(now),
        };
        plan.failures.push(record.clone());
        plan.added.push(record);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::fixtures::cluster;
    use crate::crd::{TikvClusterSpec, TikvClusterStatus};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    /// Stores 1..=n on pods 0..n, all Up and heard from at t=1000, except `states`.
    fn view(n: u64, states: &[(u64, &str)]) -> PlacementView {
        let stores = (1..=n)
            .map(|id| StoreInfo {
                id,
                address: format!("basic-store-{}.basic-store-peer.db.svc:20160", id - 1),
                state: states
                    .iter()
                    .find(|(s, _)| *s == id)
                    .map_or("Up", |(_, st)| st)
                    .into(),
                last_heartbeat: Some(Time(at(1000))),
                ..StoreInfo::default()
            })
            .collect();
        PlacementView {
            stores,
            ..PlacementView::default()
        }
    }

    fn with_failures(mut tc: TikvCluster, ids: &[u64]) -> TikvCluster {
        let mut status = TikvClusterStatus::default();
        status.store.failure_stores = ids
            .iter()
            .map(|&id| FailureStore {
                store_id: id,
                pod: format!("basic-store-{}", id - 1),
                since: Time(at(500)),
            })
            .collect();
        tc.status = Some(status);
        tc
    }

    #[test]
    fn a_down_store_is_recorded_once() {
        let tc = cluster(TikvClusterSpec::default());
        let plan = plan_failover(&tc, Some(&view(3, &[(2, "Down")])), at(1010));
        assert_eq!(plan.extra(), 1);
        assert_eq!(plan.added.len(), 1);
        assert_eq!(
            (plan.failures[0].store_id, plan.failures[0].pod.as_str()),
            (2, "basic-store-1")
        );
        assert_eq!(plan.failures[0].since, Time(at(1010)));
        let tc = with_failures(tc, &[2]);
        let again = plan_failover(&tc, Some(&view(3, &[(2, "Down")])), at(2000));
        assert_eq!(again.extra(), 1);
        assert!(again.added.is_empty());
        assert_eq!(again.failures[0].since, Time(at(500)));
    }

    #[test]
    fn disconnected_fails_over_only_after_the_period() {
        let tc = cluster(TikvClusterSpec::default());
        let v = view(3, &[(3, "Disconnected")]);
        // Last heartbeat at 1000; the default period is 5m.
        assert_eq!(plan_failover(&tc, Some(&v), at(1299)).extra(), 0);
        assert_eq!(plan_failover(&tc, Some(&v), at(1300)).extra(), 1);
        let mut tc = tc;
        tc.spec.failover_period = "1h".into();
        assert_eq!(plan_failover(&tc, Some(&v), at(1300)).extra(), 0);
        // Offline (draining) and Tombstone stores are not failures.
        let v = view(3, &[(1, "Offline"), (2, "Tombstone")]);
        assert_eq!(plan_failover(&tc, Some(&v), at(99_999)).extra(), 0);
    }

    #[test]
    fn capped_at_max_failover_count() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.max_failover_count = 1;
        let v = view(4, &[(2, "Down"), (3, "Down")]);
        let plan = plan_failover(&tc, Some(&v), at(1010));
        assert_eq!(plan.extra(), 1);
        assert_eq!(plan.capped, [(3, "basic-store-2".to_owned())]);
        tc.spec.max_failover_count = 0;
        let plan = plan_failover(&tc, Some(&v), at(1010));
        assert_eq!((plan.extra(), plan.capped.len()), (0, 2));
    }

    #[test]
    fn an_up_store_clears_its_record_and_a_gone_one_keeps_it() {
        let tc = with_failures(cluster(TikvClusterSpec::default()), &[2, 3]);
        let mut v = view(3, &[]);
        v.stores.retain(|s| s.id != 3);
        let plan = plan_failover(&tc, Some(&v), at(1010));
        assert_eq!(plan.recovered.len(), 1);
        assert_eq!(plan.recovered[0].store_id, 2);
        assert_eq!(plan.failures.len(), 1);
        assert_eq!(plan.failures[0].store_id, 3);
    }

    #[test]
    fn placement_silent_keeps_the_records() {
        let tc = with_failures(cluster(TikvClusterSpec::default()), &[2]);
        let plan = plan_failover(&tc, None, at(1010));
        assert_eq!(plan.extra(), 1);
        assert!(plan.added.is_empty() && plan.recovered.is_empty());
    }
}
