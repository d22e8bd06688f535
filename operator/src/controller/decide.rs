//! What one reconcile pass does, decided before anything is written.
//!
//! [`decide`] is a pure function of the cluster, the StatefulSets the API server holds and
//! placement's view: it renders every object, plans failover, scale and upgrade steps, and
//! returns the [`Act`]s to carry out, in order, with the [`Observation`] the status is computed
//! from. The driver in [`super`] only reads, executes the acts and writes the status; its
//! tests assert the calls, these assert the decisions (as openraft's engine tests assert the
//! commands its engine emits).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

use super::{desired, shape, Desired, Scale};
use crate::builders::{self, Component};
use crate::crd::{TikvCluster, UpgradeStatus};
use crate::failover::{self, FailoverPlan};
use crate::members::MemberStep;
use crate::placement::PlacementView;
use crate::scale::ScaleStep;
use crate::status::{self, Observation, Progress};
use crate::upgrade::UpgradeStep;
use crate::{Error, Result};

/// What a pass read before deciding.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// The placement and store StatefulSets as the API server holds them (`None`: absent).
    pub placement: Option<StatefulSet>,
    pub store: Option<StatefulSet>,
    /// What placement reported; `None` when it did not answer.
    pub view: Option<PlacementView>,
}

/// A request to placement's HTTP API.
#[derive(Clone, Debug, PartialEq)]
pub enum PlacementCall {
    /// Move every leader off the store (before its pod restarts).
    EvictLeader { store_id: u64 },
    /// Let the store take leaders again.
    RemoveEvictLeader { store_id: u64 },
    /// Hand placement leadership to member `to`.
    TransferLeader { to: String },
    /// Drain the store (before its pod goes).
    DeleteStore { store_id: u64 },
    /// Remove member `name` from the placement group (before its pod goes).
    DeleteMember { name: String },
}

/// One thing the driver does.
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    /// Record a step as an Event on the cluster.
    Publish {
        kind: EventType,
        reason: &'static str,
        note: String,
    },
    /// Server-side apply placement's ServiceAccount.
    ApplyServiceAccount(Box<ServiceAccount>),
    /// Server-side apply the binding to the topology ClusterRole.
    ApplyBinding(Box<ClusterRoleBinding>),
    /// Server-side apply a component's Services, ConfigMap, StatefulSet and PDB.
    ApplyComponent(Component, Box<Desired>),
    /// Ask placement.
    Ask(PlacementCall),
}

/// The acts of one pass, in order, and what status reports of it.
#[derive(Debug)]
pub struct Decision {
    pub acts: Vec<Act>,
    /// Status input; the driver replaces the StatefulSets with what each apply returned.
    pub obs: Observation,
}

impl Decision {
    fn publish(&mut self, reason: &'static str, note: String) {
        self.publish_as(EventType::Normal, reason, note);
    }

    fn publish_as(&mut self, kind: EventType, reason: &'static str, note: String) {
        self.acts.push(Act::Publish { kind, reason, note });
    }

    fn ask(&mut self, call: PlacementCall) {
        self.acts.push(Act::Ask(call));
    }
}

/// Decides one pass over `tc`. `topology_role` is the ClusterRole placement is bound to.
/// Paused, or with a spec that does not render, the pass writes nothing but the status.
pub fn decide(
    tc: &TikvCluster,
    seen: Seen,
    topology_role: Option<&str>,
    now: Timestamp,
) -> Result<Decision> {
    let mut d = Decision {
        acts: Vec::new(),
        obs: Observation {
            upgrade: tc.status.as_ref().and_then(|s| s.upgrade.clone()),
            placement: seen.placement.clone(),
            store: seen.store.clone(),
            placement_view: seen.view,
            ..Observation::default()
        },
    };
    let mut wanted = Vec::new();
    for c in Component::ALL {
        match desired(tc, c) {
            Ok(w) => wanted.push(w),
            Err(e @ Error::ComponentConfig { .. }) => d.obs.invalid_spec = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if tc.spec.paused || d.obs.invalid_spec.is_some() {
        let kept = failover::keep(tc);
        d.obs.failure_stores = kept.failures;
        d.obs.failover_capped = kept.capped;
        return Ok(d);
    }
    let plan = failover::plan_failover(tc, d.obs.placement_view.as_ref(), now);
    failover_events(&mut d, tc, &plan);
    let account = builders::placement_service_account(tc)?;
    d.acts.push(Act::ApplyServiceAccount(Box::new(account)));
    if let Some(role) = topology_role {
        let binding = builders::placement_topology_binding(tc, role)?;
        d.acts.push(Act::ApplyBinding(Box::new(binding)));
    }
    for (c, mut want) in Component::ALL.into_iter().zip(wanted) {
        let current = match c {
            Component::Placement => seen.placement.as_ref(),
            Component::Store => seen.store.as_ref(),
        };
        let (step, upgrade) = shape(
            tc,
            c,
            current,
            &mut want.sts,
            d.obs.placement_view.as_ref(),
            d.obs.upgrade.as_ref(),
            plan.extra(),
            now,
        );
        d.acts.push(Act::ApplyComponent(c, Box::new(want)));
        let progress = match &step {
            Scale::Store(s) => store_step(&mut d, s),
            Scale::Placement(m) => member_step(&mut d, m),
        };
        if let Some(p) = progress {
            d.obs.scale_in.get_or_insert(p);
        }
        upgrade_step(&mut d, tc, c, &upgrade, now);
    }
    d.obs.failure_stores = plan.failures;
    d.obs.failover_capped = plan.capped;
    Ok(d)
}

/// Events for what failover decided: new failures, recoveries, and (once, when the Degraded
/// condition turns to it) the limit being reached.
fn failover_events(d: &mut Decision, tc: &TikvCluster, plan: &FailoverPlan) {
    for f in &plan.added {
        let note = format!(
            "store {} ({}) is down; adding a replacement store pod ({} of at most {})",
            f.store_id,
            f.pod,
            plan.extra(),
            tc.spec.max_failover_count
        );
        d.publish_as(EventType::Warning, "StoreFailover", note);
    }
    for f in &plan.recovered {
        let note = format!(
            "store {} ({}) is Up again; its replacement pod leaves through a drain",
            f.store_id, f.pod
        );
        d.publish("StoreRecovered", note);
    }
    let was_capped = tc
        .status
        .as_ref()
        .and_then(|s| status::find(s, "Degraded"))
        .is_some_and(|c| c.reason == "FailoverLimitReached");
    if !plan.capped.is_empty() && !was_capped {
        let stores: Vec<_> = plan
            .capped
            .iter()
            .map(|(id, pod)| format!("store {id} ({pod})"))
            .collect();
        let note = format!(
            "{} failed but maxFailoverCount ({}) replacement pods already run",
            stores.join(", "),
            tc.spec.max_failover_count
        );
        d.publish_as(EventType::Warning, "FailoverLimitReached", note);
    }
}

/// The acts of a store scale step, and how status reports it.
fn store_step(d: &mut Decision, step: &ScaleStep) -> Option<Progress> {
    match step {
        ScaleStep::Replicas(_) => None,
        ScaleStep::Remove { replicas, pod } => {
            let note = format!("store of {pod} is a tombstone; scaling to {replicas}");
            d.publish("RemovedDrainedPod", note);
            None
        }
        ScaleStep::Drain { store_id, pod, .. } => {
            d.ask(PlacementCall::DeleteStore {
                store_id: *store_id,
            });
            let note = format!("draining store {store_id} ({pod}) through placement");
            d.publish("DrainingStore", note);
            Some(Progress {
                reason: "ScaleInDraining",
                message: format!("draining store {store_id} ({pod}) before removing its pod"),
            })
        }
        ScaleStep::Wait {
            reason, message, ..
        } => Some(Progress {
            reason,
            message: message.clone(),
        }),
    }
}

/// The acts of a placement member step, and how status reports it.
fn member_step(d: &mut Decision, step: &MemberStep) -> Option<Progress> {
    let (reason, note) = match step {
        MemberStep::Replicas(_) => return None,
        MemberStep::Grow { replicas, pod } => {
            let note = format!("adding placement member {pod}; scaling to {replicas}");
            d.publish("AddingMember", note.clone());
            ("ScaleOutAddingMember", note)
        }
        MemberStep::TransferLeader { from, to, .. } => {
            d.ask(PlacementCall::TransferLeader { to: to.clone() });
            let note = format!(
                "transferring placement leadership from {from} to {to} before {from} leaves"
            );
            d.publish("TransferringLeader", note.clone());
            ("ScaleInTransferringLeader", note)
        }
        MemberStep::DeleteMember { name, .. } => {
            d.ask(PlacementCall::DeleteMember { name: name.clone() });
            let note = format!("removing member {name} from placement before its pod goes");
            d.publish("DeletingMember", note.clone());
            ("ScaleInDeletingMember", note)
        }
        MemberStep::Remove { replicas, pod } => {
            let note = format!("{pod} left placement; scaling to {replicas}");
            d.publish("RemovedMember", note);
            return None;
        }
        MemberStep::Wait {
            reason, message, ..
        } => (*reason, message.clone()),
    };
    Some(Progress {
        reason,
        message: note,
    })
}

/// The acts of an upgrade step; records it (and the upgrade state to keep) for status.
fn upgrade_step(
    d: &mut Decision,
    tc: &TikvCluster,
    c: Component,
    step: &UpgradeStep,
    now: Timestamp,
) {
    let pod = |ordinal: i32| format!("{}-{ordinal}", builders::name(tc, c));
    let (reason, message) = match step {
        UpgradeStep::Steady => return,
        UpgradeStep::Hold { partition, reason } => {
            let who = match c {
                Component::Store => "stores",
                Component::Placement => "placement members",
            };
            (*reason, format!("{who} upgrading; partition {partition}"))
        }
        UpgradeStep::EvictLeaders {
            ordinal, store_id, ..
        } => {
            d.ask(PlacementCall::EvictLeader {
                store_id: *store_id,
            });
            d.obs.upgrade = Some(UpgradeStatus {
                ordinal: *ordinal,
                store_id: *store_id,
                evict_started_at: Time(now),
            });
            let note = format!(
                "evicting leaders from store {store_id} before {} restarts",
                pod(*ordinal)
            );
            d.publish("EvictingLeaders", note.clone());
            ("UpgradeEvictingLeaders", note)
        }
        UpgradeStep::TransferLeader { from, to, .. } => {
            d.ask(PlacementCall::TransferLeader { to: to.clone() });
            let note = format!(
                "transferring placement leadership from {from} to {to} before {from} restarts"
            );
            d.publish("TransferringLeader", note.clone());
            ("UpgradeTransferringLeader", note)
        }
        UpgradeStep::Restart { ordinal } => {
            let note = format!("restarting {} on the new revision", pod(*ordinal));
            let reason = match c {
                Component::Store => "RestartingStorePod",
                Component::Placement => "RestartingPlacementPod",
            };
            d.publish(reason, note.clone());
            ("UpgradeRestartingPod", note)
        }
        UpgradeStep::Finish { store_id, .. } => {
            d.ask(PlacementCall::RemoveEvictLeader {
                store_id: *store_id,
            });
            let done = d
                .obs
                .upgrade
                .take()
                .map_or(String::new(), |u| pod(u.ordinal));
            let note = format!(
                "{done} is ready on the new revision; store {store_id} takes leaders again"
            );
            d.publish("StorePodUpgraded", note.clone());
            ("UpgradeRollingOut", note)
        }
    };
    d.obs.rollout.get_or_insert(Progress { reason, message });
}

#[cfg(test)]
pub(super) mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    use super::*;
    use crate::builders::fixtures::cluster;
    use crate::crd::{StoreInfo, TikvClusterSpec};

    /// Each act in a word or three: `apply store replicas=4 partition=0`, `ask DeleteStore
    /// 5`, `event Warning StoreFailover`.
    fn acts(d: &Decision) -> Vec<String> {
        d.acts
            .iter()
            .map(|a| match a {
                Act::Publish { kind, reason, .. } => format!("event {kind:?} {reason}"),
                Act::ApplyServiceAccount(_) => "apply serviceaccount".into(),
                Act::ApplyBinding(b) => format!("apply binding to {}", b.role_ref.name),
                Act::ApplyComponent(c, w) => {
                    let partition = w
                        .sts
                        .spec
                        .update_strategy
                        .as_ref()
                        .and_then(|u| u.rolling_update.as_ref())
                        .and_then(|r| r.partition);
                    let replicas = w.sts.spec.replicas;
                    format!(
                        "apply {} replicas={} partition={}",
                        builders::name(&cluster(TikvClusterSpec::default()), *c),
                        replicas.unwrap_or(-1),
                        partition.unwrap_or(-1)
                    )
                }
                Act::Ask(call) => format!("ask {call:?}"),
            })
            .collect()
    }

    /// The StatefulSet of `c` rendered from `tc`, running `replicas` pods, all ready and
    /// updated.
    pub(in crate::controller) fn running(
        tc: &TikvCluster,
        c: Component,
        replicas: i32,
    ) -> StatefulSet {
        let mut sts = builders::stateful_set(tc, c, 0).unwrap();
        sts.spec.replicas = Some(replicas);
        sts.status = Some(StatefulSetStatus {
            replicas,
            ready_replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ..Default::default()
        });
        sts
    }

    fn view(states: &[&str]) -> PlacementView {
        let stores = states
            .iter()
            .enumerate()
            .map(|(i, state)| StoreInfo {
                id: i as u64 + 1,
                address: format!("basic-store-{i}.basic-store-peer.db.svc:20160"),
                state: (*state).into(),
                region_count: 4,
                ..StoreInfo::default()
            })
            .collect();
        PlacementView {
            stores,
            ..PlacementView::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(5_000).unwrap()
    }

    #[test]
    fn a_new_cluster_applies_identity_then_each_component() {
        let tc = cluster(TikvClusterSpec::default());
        let d = decide(&tc, Seen::default(), Some("topology"), now()).unwrap();
        assert_eq!(
            acts(&d),
            [
                "apply serviceaccount",
                "apply binding to topology",
                "apply basic-placement replicas=1 partition=0",
                "apply basic-store replicas=3 partition=0",
            ]
        );
        let d = decide(&tc, Seen::default(), None, now()).unwrap();
        assert_eq!(acts(&d)[1], "apply basic-placement replicas=1 partition=0");
    }

    #[test]
    fn paused_or_unrenderable_decides_nothing_but_status() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.paused = true;
        let seen = Seen {
            view: Some(view(&["Up", "Down", "Up"])),
            ..Seen::default()
        };
        let d = decide(&tc, seen.clone(), Some("topology"), now()).unwrap();
        assert_eq!(acts(&d), Vec::<String>::new());
        assert!(d.obs.failure_stores.is_empty(), "no failover while paused");
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.common.config = Some("not = = toml".into());
        let d = decide(&tc, seen, Some("topology"), now()).unwrap();
        assert_eq!(acts(&d), Vec::<String>::new());
        assert!(d.obs.invalid_spec.unwrap().contains("spec.store.config"));
    }

    #[test]
    fn a_down_store_is_announced_before_anything_is_applied() {
        let tc = cluster(TikvClusterSpec::default());
        let seen = Seen {
            store: Some(running(&tc, Component::Store, 3)),
            view: Some(view(&["Up", "Down", "Up"])),
            ..Seen::default()
        };
        let d = decide(&tc, seen, None, now()).unwrap();
        assert_eq!(
            acts(&d),
            [
                "event Warning StoreFailover",
                "apply serviceaccount",
                "apply basic-placement replicas=1 partition=0",
                "apply basic-store replicas=4 partition=0",
            ]
        );
        assert_eq!(d.obs.failure_stores[0].store_id, 2);
        assert_eq!(d.obs.failure_stores[0].since, Time(now()));
    }

    #[test]
    fn scale_in_asks_placement_to_drain_before_the_pod_goes() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.store.replicas = 3;
        let seen = |states: &[&str]| Seen {
            store: Some(running(&tc, Component::Store, 5)),
            view: Some(view(states)),
            ..Seen::default()
        };
        let d = decide(&tc, seen(&["Up"; 5]), None, now()).unwrap();
        assert_eq!(
            acts(&d)[2..],
            [
                "apply basic-store replicas=5 partition=0",
                "ask DeleteStore { store_id: 5 }",
                "event Normal DrainingStore",
            ]
        );
        assert_eq!(d.obs.scale_in.unwrap().reason, "ScaleInDraining");
        let tombstone = ["Up", "Up", "Up", "Up", "Tombstone"];
        let d = decide(&tc, seen(&tombstone), None, now()).unwrap();
        assert_eq!(
            acts(&d)[2..],
            [
                "apply basic-store replicas=4 partition=0",
                "event Normal RemovedDrainedPod",
            ]
        );
    }

    #[test]
    fn an_upgrade_evicts_leaders_and_records_when_it_began() {
        let mut tc = cluster(TikvClusterSpec::default());
        tc.spec.version = "v2".into();
        // The new template is in, held back at partition 3 by the last pass; no pod rolled.
        let mut store = builders::stateful_set(&tc, Component::Store, 3).unwrap();
        store.status = Some(StatefulSetStatus {
            replicas: 3,
            ready_replicas: Some(3),
            updated_replicas: Some(0),
            ..Default::default()
        });
        let seen = Seen {
            store: Some(store),
            view: Some(view(&["Up", "Up", "Up"])),
            ..Seen::default()
        };
        let d = decide(&tc, seen, None, now()).unwrap();
        let acts = acts(&d);
        assert!(
            acts.contains(&"ask EvictLeader { store_id: 3 }".to_owned()),
            "{acts:?}"
        );
        assert!(acts.contains(&"event Normal EvictingLeaders".to_owned()));
        let upgrade = d.obs.upgrade.unwrap();
        assert_eq!((upgrade.store_id, upgrade.ordinal), (3, 2));
        assert_eq!(upgrade.evict_started_at, Time(now()));
    }
}
