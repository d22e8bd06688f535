//! Safe scale-in, decided by a pure planner: a StatefulSet only shrinks by its highest-ordinal
//! pod, and only once placement reports that pod's store as `Tombstone` (its regions moved
//! away). Until then the pod stays and placement is asked to drain the store
//! (`DELETE /pd/api/v1/store/{id}`, which marks it Offline).
//!
//! [`plan_store_replicas`] reads the running replica count and placement's view and returns
//! one [`ScaleStep`]; the controller carries it out and the status reports it. The target is
//! `spec.store.replicas` plus the replacement pods failover keeps ([`crate::failover`]): those
//! pods are wanted, so they never make a healthy store drain; once failover lets one go, the
//! surplus pod leaves through the same drain.

use crate::builders::{name, Component};
use crate::crd::TikvCluster;
use crate::placement::{assign_pods, PlacementView};

/// What to do with the store StatefulSet's replica count this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleStep {
    /// Apply this replica count (scale out or steady state).
    Replicas(i32),
    /// Shrink to `replicas`, removing `pod`, whose store placement has tombstoned.
    Remove { replicas: i32, pod: String },
    /// Keep `keep` pods and ask placement to drain `store_id`, served by `pod`.
    Drain {
        keep: i32,
        store_id: u64,
        pod: String,
    },
    /// Keep `keep` pods while the drain runs or placement cannot be asked.
    Wait {
        keep: i32,
        reason: &'static str,
        message: String,
    },
}

impl ScaleStep {
    /// The replica count to apply.
    pub fn replicas(&self) -> i32 {
        match self {
            ScaleStep::Replicas(n) | ScaleStep::Remove { replicas: n, .. } => *n,
            ScaleStep::Drain { keep, .. } | ScaleStep::Wait { keep, .. } => *keep,
        }
    }
}

/// The next scale step for the stores, given the StatefulSet's current replica count and the
/// `failover` pods wanted beyond the spec.
pub fn plan_store_replicas(
    tc: &TikvCluster,
    failover: i32,
    running: Option<i32>,
    view: Option<&PlacementView>,
) -> ScaleStep {
    let desired = tc.spec.store.replicas.saturating_add(failover.max(0));
    let running = match running {
        Some(r) if r > desired => r,
        _ => return ScaleStep::Replicas(desired),
    };
    let pod = format!("{}-{}", name(tc, Component::Store), running - 1);
    let Some(view) = view else {
        return ScaleStep::Wait {
            keep: running,
            reason: "ScaleInWaitingForPlacement",
            message: format!("placement is not answering; {pod} stays until its store is drained"),
        };
    };
    let mut stores = view.stores.clone();
    assign_pods(tc, &mut stores);
    let live: Vec<_> = stores
        .iter()
        .filter(|s| s.pod.as_deref() == Some(pod.as_str()) && s.state != "Tombstone")
        .collect();
    match live.first() {
        None => ScaleStep::Remove {
            replicas: running - 1,
            pod,
        },
        Some(s) if s.state == "Offline" => ScaleStep::Wait {
            keep: running,
            reason: "ScaleInDraining",
            message: format!(
                "store {} ({pod}) is draining: {} regions left",
                s.id, s.region_count
            ),
        },
        Some(s) => ScaleStep::Drain {
            keep: running,
            store_id: s.id,
            pod,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::fixtures::cluster;
    use crate::crd::{StoreInfo, TikvClusterSpec};

    fn store(id: u64, ordinal: i32, state: &str) -> StoreInfo {
        StoreInfo {
            id,
            address: format!("basic-store-{ordinal}.basic-store-peer.db.svc:20160"),
            state: state.into(),
            region_count: 5,
            ..StoreInfo::default()
        }
    }

    fn view(stores: Vec<StoreInfo>) -> PlacementView {
        PlacementView {
            stores,
            ..PlacementView::default()
        }
    }

    #[test]
    fn scale_out_and_steady_state_apply_the_spec() {
        let tc = cluster(TikvClusterSpec::default());
        assert_eq!(
            plan_store_replicas(&tc, 0, None, None),
            ScaleStep::Replicas(3)
        );
        assert_eq!(
            plan_store_replicas(&tc, 0, Some(1), None),
            ScaleStep::Replicas(3)
        );
        assert_eq!(
            plan_store_replicas(&tc, 0, Some(3), None),
            ScaleStep::Replicas(3)
        );
    }

    #[test]
    fn scale_in_drains_the_highest_ordinal_first() {
        let tc = cluster(TikvClusterSpec::default());
        let v = view((0..5).map(|i| store(i as u64 + 1, i, "Up")).collect());
        assert_eq!(
            plan_store_replicas(&tc, 0, Some(5), Some(&v)),
            ScaleStep::Drain {
                keep: 5,
                store_id: 5,
                pod: "basic-store-4".into()
            }
        );
    }

    #[test]
    fn nothing_shrinks_while_the_drain_is_pending() {
        let tc = cluster(TikvClusterSpec::default());
        let mut stores: Vec<_> = (0..4).map(|i| store(i as u64 + 1, i, "Up")).collect();
        stores.push(store(5, 4, "Offline"));
        let step = plan_store_replicas(&tc, 0, Some(5), Some(&view(stores)));
        assert_eq!(step.replicas(), 5);
        assert!(
            matches!(
                step,
                ScaleStep::Wait {
                    reason: "ScaleInDraining",
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn a_tombstoned_store_lets_its_pod_go_one_at_a_time() {
        let tc = cluster(TikvClusterSpec::default());
        let mut stores: Vec<_> = (0..4).map(|i| store(i as u64 + 1, i, "Up")).collect();
        stores.push(store(5, 4, "Tombstone"));
        let step = plan_store_replicas(&tc, 0, Some(5), Some(&view(stores)));
        assert_eq!(
            step,
            ScaleStep::Remove {
                replicas: 4,
                pod: "basic-store-4".into()
            }
        );
    }

    #[test]
    fn failover_pods_count_as_wanted() {
        let tc = cluster(TikvClusterSpec::default());
        let v = view((0..4).map(|i| store(i as u64 + 1, i, "Up")).collect());
        // One failover pod: 4 running is the target; nothing drains.
        assert_eq!(
            plan_store_replicas(&tc, 1, Some(4), Some(&v)),
            ScaleStep::Replicas(4)
        );
        // A second failure grows the StatefulSet by one more.
        assert_eq!(
            plan_store_replicas(&tc, 2, Some(4), Some(&v)),
            ScaleStep::Replicas(5)
        );
        // Failover let go: the surplus (highest-ordinal) store drains.
        assert_eq!(
            plan_store_replicas(&tc, 0, Some(4), Some(&v)),
            ScaleStep::Drain {
                keep: 4,
                store_id: 4,
                pod: "basic-store-3".into()
            }
        );
    }

    #[test]
    fn placement_silent_means_wait() {
        let tc = cluster(TikvClusterSpec::default());
        let step = plan_store_replicas(&tc, 0, Some(4), None);
        assert_eq!(step.replicas(), 4);
        assert!(matches!(
            step,
            ScaleStep::Wait {
                reason: "ScaleInWaitingForPlacement",
                ..
            }
        ));
    }
}
