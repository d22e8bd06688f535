//! Rolling upgrade of the stores, one pod at a time by StatefulSet partition, leaders first:
//! before pod `k` restarts, placement moves its leaders away (an evict-leader scheduler on its
//! store), bounded by `spec.evictLeaderTimeout`; the next pod waits until every updated pod is
//! ready again. [`plan_upgrade`] is the pure rule; the controller carries out its steps and
//! keeps [`UpgradeStatus`] in the cluster's status between passes.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::builders::{name, Component, TEMPLATE_HASH_ANNOTATION};
use crate::crd::{TikvCluster, UpgradeStatus};
use crate::placement::{assign_pods, PlacementView};

/// What the applied store StatefulSet looks like, as far as an upgrade cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// Pods.
    pub replicas: i32,
    /// The partition it was last applied with.
    pub partition: i32,
    /// The pod template differs from the one applied.
    pub template_changed: bool,
    /// Pods on the new revision, and ready pods, as the StatefulSet reports.
    pub updated: i32,
    pub ready: i32,
}

/// The partition to apply and what to do with placement first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// Nothing to roll: partition 0.
    Steady,
    /// Hold at `partition` (a new template is held back, or restarted pods are not ready yet).
    Hold {
        partition: i32,
        reason: &'static str,
    },
    /// Ask placement to move `store_id`'s leaders away; pod `ordinal` restarts later.
    EvictLeaders {
        partition: i32,
        ordinal: i32,
        store_id: u64,
    },
    /// Leaders are gone (or the timeout passed): let pod `ordinal` restart.
    Restart { ordinal: i32 },
    /// Pod `ordinal` is back on the new revision: stop evicting from `store_id`.
    Finish { partition: i32, store_id: u64 },
    /// Placement only: member `from` leads and restarts next; hand leadership to `to` first.
    TransferLeader {
        partition: i32,
        from: String,
        to: String,
    },
}

impl UpgradeStep {
    /// The partition to apply.
    pub fn partition(&self) -> i32 {
        match self {
            UpgradeStep::Steady => 0,
            UpgradeStep::Restart { ordinal } => *ordinal,
            UpgradeStep::Hold { partition, .. }
            | UpgradeStep::EvictLeaders { partition, .. }
            | UpgradeStep::Finish { partition, .. }
            | UpgradeStep::TransferLeader { partition, .. } => *partition,
        }
    }
}

/// What `current` (as the API server holds it) says about a rollout toward `desired`.
pub fn rollout(current: &StatefulSet, desired: &StatefulSet) -> Rollout {
    let hash = |s: &StatefulSet| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION).cloned())
    };
    let status = current.status.clone().unwrap_or_default();
    let partition = current
        .spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    Rollout {
        replicas: desired.spec.replicas.unwrap_or(0),
        partition,
        template_changed: hash(current) != hash(desired),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
    }
}

/// `"3m"`, `"1h30m"`, `"500ms"` as the CRD's pattern admits them; `None` otherwise.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest {
            r if r.starts_with("ms") => (Duration::from_millis(1), 2),
            r if r.starts_with('s') => (Duration::from_secs(1), 1),
            r if r.starts_with('m') => (Duration::from_secs(60), 1),
            r if r.starts_with('h') => (Duration::from_secs(3600), 1),
            _ => return None,
        };
        total += unit * u32::try_from(n).ok()?;
        rest = &rest[len..];
    }
    (!text.is_empty()).then_some(total)
}

/// The next upgrade step for the stores.
pub fn plan_upgrade(
    tc: &TikvCluster,
    r: &Rollout,
    view: Option<&PlacementView>,
    state: Option<&UpgradeStatus>,
    now: Timestamp,
) -> UpgradeStep {
    if r.template_changed {
        return UpgradeStep::Hold {
            partition: r.replicas,
            reason: "UpgradeStarting",
        };
    }
    let p = r.partition.min(r.replicas);
    if p == 0 && state.is_none() {
        return UpgradeStep::Steady;
    }
    // Pods >= p run the new revision; they must all be back before the next one goes.
    let settled = r.updated >= r.replicas - p && r.ready == r.replicas;
    if !settled {
        return UpgradeStep::Hold {
            partition: p,
            reason: "UpgradeWaitingForReady",
        };
    }
    if let Some(s) = state.filter(|s| s.ordinal >= p) {
        return UpgradeStep::Finish {
            partition: p,
            store_id: s.store_id,
        };
    }
    if p == 0 {
        return UpgradeStep::Steady;
    }
    let ordinal = p - 1;
    let pod = format!("{}-{ordinal}", name(tc, Component::Store));
    let Some(view) = view else {
        return UpgradeStep::Hold {
            partition: p,
            reason: "UpgradeWaitingForPlacement",
        };
    };
    let mut stores = view.stores.clone();
    assign_pods(tc, &mut stores);
    let Some(store) = stores
        .iter()
        .find(|s| s.pod.as_deref() == Some(pod.as_str()) && s.state != "Tombstone")
    else {
        // No store behind the pod (never registered): nothing to evict.
        return UpgradeStep::Restart { ordinal };
    };
    match state.filter(|s| s.ordinal == ordinal) {
        None => UpgradeStep::EvictLeaders {
            partition: p,
            ordinal,
            store_id: store.id,
        },
        Some(s) => {
            let timeout =
                parse_duration(&tc.spec.evict_leader_timeout).unwrap_or(Duration::from_secs(180));
            let waited = now.as_second() - s.evict_started_at.0.as_second();
            if store.leader_count == 0 || waited >= timeout.as_secs() as i64 {
                UpgradeStep::Restart { ordinal }
            } else {
                UpgradeStep::Hold {
                    partition: p,
                    reason: "UpgradeEvictingLeaders",
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::builders::fixtures::cluster;
    use crate::crd::{StoreInfo, TikvClusterSpec};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn view(leaders: &[i64]) -> PlacementView {
        let stores = leaders
            .iter()
            .enumerate()
            .map(|(i, &l)| StoreInfo {
                id: i as u64 + 1,
                address: format!("basic-store-{i}.basic-store-peer.db.svc:20160"),
                state: "Up".into(),
                leader_count: l,
                ..StoreInfo::default()
            })
            .collect();
        PlacementView {
            stores,
            ..PlacementView::default()
        }
    }

    fn rollout(partition: i32, updated: i32, ready: i32) -> Rollout {
        Rollout {
            replicas: 3,
            partition,
            template_changed: false,
            updated,
            ready,
        }
    }

    fn evicting(ordinal: i32, store_id: u64, since: i64) -> UpgradeStatus {
        UpgradeStatus {
            ordinal,
            store_id,
            evict_started_at: Time(at(since)),
        }
    }

    #[test]
    fn durations_parse_like_the_crd_pattern() {
        assert_eq!(parse_duration("3m"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn a_new_template_is_held_back_at_full_partition() {
        let tc = cluster(TikvClusterSpec::default());
        let r = Rollout {
            template_changed: true,
            ..rollout(0, 3, 3)
        };
        let step = plan_upgrade(&tc, &r, None, None, at(0));
        assert_eq!(step.partition(), 3);
    }

    #[test]
    fn upgrade_walks_down_evicting_leaders_before_each_restart() {
        let tc = cluster(TikvClusterSpec::default());
        let v = view(&[4, 4, 4]);
        // Highest ordinal first: evict store 3's leaders, partition stays 3.
        let step = plan_upgrade(&tc, &rollout(3, 0, 3), Some(&v), None, at(0));
        assert_eq!(
            step,
            UpgradeStep::EvictLeaders {
                partition: 3,
                ordinal: 2,
                store_id: 3
            }
        );
        // Leaders still there, timeout (3m) not reached: hold.
        let state = evicting(2, 3, 0);
        let step = plan_upgrade(&tc, &rollout(3, 0, 3), Some(&v), Some(&state), at(60));
        assert_eq!(step.partition(), 3);
        // Leaders gone: pod 2 may restart.
        let v = view(&[4, 4, 0]);
        let step = plan_upgrade(&tc, &rollout(3, 0, 3), Some(&v), Some(&state), at(61));
        assert_eq!(step, UpgradeStep::Restart { ordinal: 2 });
        // Pod 2 restarting, not ready: nothing else moves.
        let step = plan_upgrade(&tc, &rollout(2, 1, 2), Some(&v), Some(&state), at(70));
        assert_eq!(
            step,
            UpgradeStep::Hold {
                partition: 2,
                reason: "UpgradeWaitingForReady"
            }
        );
        // Pod 2 back and ready: stop evicting from store 3.
        let step = plan_upgrade(&tc, &rollout(2, 1, 3), Some(&v), Some(&state), at(80));
        assert_eq!(
            step,
            UpgradeStep::Finish {
                partition: 2,
                store_id: 3
            }
        );
        // Then pod 1's store is next.
        let step = plan_upgrade(
            &tc,
            &rollout(2, 1, 3),
            Some(&view(&[4, 4, 4])),
            None,
            at(90),
        );
        assert_eq!(
            step,
            UpgradeStep::EvictLeaders {
                partition: 2,
                ordinal: 1,
                store_id: 2
            }
        );
    }

    #[test]
    fn eviction_is_bounded_by_the_timeout() {
        let tc = cluster(TikvClusterSpec::default());
        let v = view(&[4, 4, 4]);
        let state = evicting(2, 3, 0);
        let step = plan_upgrade(&tc, &rollout(3, 0, 3), Some(&v), Some(&state), at(180));
        assert_eq!(step, UpgradeStep::Restart { ordinal: 2 });
    }

    #[test]
    fn all_updated_is_steady() {
        let tc = cluster(TikvClusterSpec::default());
        let step = plan_upgrade(&tc, &rollout(0, 3, 3), None, None, at(0));
        assert_eq!(step, UpgradeStep::Steady);
    }
}
