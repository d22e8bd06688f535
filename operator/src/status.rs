//! Status is computed, not accumulated: [`observe`] maps what the StatefulSets report (and what
//! the reconcile step decided) to a fresh [`TikvClusterStatus`], keeping a condition's
//! `lastTransitionTime` only while its status holds. Pure, so every condition is unit-tested.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::builders::{image, Component};
use crate::crd::{ComponentStatus, FailureStore, TikvCluster, TikvClusterStatus, UpgradeStatus};
use crate::placement::{assign_pods, PlacementView};

/// What a reconcile pass saw and decided, beyond the objects themselves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The placement and store StatefulSets, as the API server returned them.
    pub placement: Option<StatefulSet>,
    pub store: Option<StatefulSet>,
    /// A component asked for fewer pods than it runs and keeps them for now.
    pub scale_in: Option<Progress>,
    /// A store upgrade step in flight.
    pub rollout: Option<Progress>,
    /// The upgrade state to keep for the next pass (`None` clears it).
    pub upgrade: Option<UpgradeStatus>,
    /// The spec could not be rendered (e.g. a component's `config` is not TOML).
    pub invalid_spec: Option<String>,
    /// What placement reported; `None` when it did not answer (the last report is kept).
    pub placement_view: Option<PlacementView>,
    /// Stores failover covers with a replacement pod (written to `status.store.failureStores`).
    pub failure_stores: Vec<FailureStore>,
    /// Failed stores failover could not cover (`maxFailoverCount` reached): `(id, pod)`.
    pub failover_capped: Vec<(u64, String)>,
}

/// A stateful step in flight (scale-in, upgrade), as the Progressing condition reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub reason: &'static str,
    pub message: String,
}

/// Replica counts of one StatefulSet; zeros while it does not exist yet.
pub fn component_status(sts: Option<&StatefulSet>) -> ComponentStatus {
    let Some(sts) = sts else {
        return ComponentStatus::default();
    };
    let status = sts.status.clone().unwrap_or_default();
    let image = sts
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone());
    ComponentStatus {
        ready_replicas: status.ready_replicas.unwrap_or(0),
        current_replicas: status.current_replicas.unwrap_or(0),
        updated_replicas: status.updated_replicas.unwrap_or(0),
        image,
    }
}

/// Every replica ready (`want` of them), on the desired image, and nothing left to roll.
fn settled(tc: &TikvCluster, c: Component, want: i32, s: &ComponentStatus) -> bool {
    s.ready_replicas == want
        && s.updated_replicas == want
        && s.image.as_deref() == Some(image(tc, c).as_str())
}

/// A condition's status, reason and message.
type Verdict = (&'static str, &'static str, String);

/// The status a reconcile pass writes. `previous` carries transition times over.
pub fn observe(tc: &TikvCluster, obs: &Observation, now: Time) -> TikvClusterStatus {
    let previous = tc.status.clone().unwrap_or_default();
    let mut status = TikvClusterStatus {
        observed_generation: tc.metadata.generation,
        ..previous.clone()
    };
    status.placement.replicas = component_status(obs.placement.as_ref());
    status.store.replicas = component_status(obs.store.as_ref());
    status.upgrade = obs.upgrade.clone();
    status.store.failure_stores = obs.failure_stores.clone();
    let failover = i32::try_from(obs.failure_stores.len()).unwrap_or(i32::MAX);
    let store_want = tc.spec.store.replicas.saturating_add(failover);
    if let Some(view) = &obs.placement_view {
        status.placement.members = view.members.clone();
        status.placement.leader = view.leader.clone();
        status.store.stores = view.stores.clone();
        assign_pods(tc, &mut status.store.stores);
        status.fault_tolerance = view.fault_tolerance;
    }
    let all_settled = settled(
        tc,
        Component::Placement,
        tc.spec.placement.replicas,
        &status.placement.replicas,
    ) && settled(tc, Component::Store, store_want, &status.store.replicas);
    let verdicts = [
        ("Ready", ready(tc, &status, all_settled, store_want)),
        ("Progressing", progressing(tc, obs, all_settled)),
        ("Degraded", degraded(tc, obs, failover)),
    ];
    status.conditions = verdicts
        .into_iter()
        .map(|(kind, (s, reason, message))| {
            condition(&previous.conditions, tc, kind, s, reason, message, &now)
        })
        .collect();
    status
}

/// Ready: every replica of both components ready on the desired image.
fn ready(
    tc: &TikvCluster,
    status: &TikvClusterStatus,
    all_settled: bool,
    store_want: i32,
) -> Verdict {
    if all_settled {
        return (
            "True",
            "AllReplicasReady",
            "every placement member and store is ready".to_owned(),
        );
    }
    (
        "False",
        "ReplicasNotReady",
        format!(
            "placement {}/{} ready, stores {}/{} ready",
            status.placement.replicas.ready_replicas,
            tc.spec.placement.replicas,
            status.store.replicas.ready_replicas,
            store_want
        ),
    )
}

/// Progressing: paused, a step in flight, converging, or stable.
fn progressing(tc: &TikvCluster, obs: &Observation, all_settled: bool) -> Verdict {
    if tc.spec.paused {
        (
            "False",
            "Paused",
            "spec.paused is set; no changes are made".to_owned(),
        )
    } else if let Some(step) = obs.scale_in.as_ref().or(obs.rollout.as_ref()) {
        ("True", step.reason, step.message.clone())
    } else if all_settled {
        ("False", "Stable", "nothing to change".to_owned())
    } else {
        (
            "True",
            "RollingOut",
            "StatefulSets are converging on the spec".to_owned(),
        )
    }
}

/// `store 2 (basic-store-1), store 3 (basic-store-2)`.
fn describe<'a>(list: impl Iterator<Item = (u64, &'a str)>) -> String {
    list.map(|(id, pod)| format!("store {id} ({pod})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Degraded: a spec that does not render, failover at its limit, or failover covering stores.
fn degraded(tc: &TikvCluster, obs: &Observation, failover: i32) -> Verdict {
    if let Some(reason) = &obs.invalid_spec {
        ("True", "InvalidSpec", reason.clone())
    } else if !obs.failover_capped.is_empty() {
        let capped = describe(obs.failover_capped.iter().map(|(id, p)| (*id, p.as_str())));
        (
            "True",
            "FailoverLimitReached",
            format!(
                "{capped} failed with no replacement: maxFailoverCount ({}) is reached",
                tc.spec.max_failover_count
            ),
        )
    } else if !obs.failure_stores.is_empty() {
        let covered = describe(
            obs.failure_stores
                .iter()
                .map(|f| (f.store_id, f.pod.as_str())),
        );
        (
            "True",
            "StoreFailover",
            format!(
                "{covered} failed; {failover} replacement store pod(s) added until it is Up again"
            ),
        )
    } else {
        ("False", "AsExpected", "the spec renders".to_owned())
    }
}

fn condition(
    previous: &[Condition],
    tc: &TikvCluster,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Time,
) -> Condition {
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: tc.metadata.generation,
    }
}

/// The condition of `type_`, if set.
pub fn find<'a>(status: &'a TikvClusterStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    use super::*;
    use crate::builders::{fixtures::cluster, stateful_set};
    use crate::crd::TikvClusterSpec;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn must_running(tc: &TikvCluster, c: Component, ready: i32) -> StatefulSet {
        let mut sts = stateful_set(tc, c, 0).unwrap();
        sts.status = Some(StatefulSetStatus {
            replicas: c.replicas(tc),
            ready_replicas: Some(ready),
            current_replicas: Some(c.replicas(tc)),
            updated_replicas: Some(c.replicas(tc)),
            ..StatefulSetStatus::default()
        });
        sts
    }

    #[test]
    fn fresh_cluster_is_progressing_not_ready() {
        let tc = cluster(TikvClusterSpec::default());
        let s = observe(&tc, &Observation::default(), t(1));
        assert_eq!(find(&s, "Ready").unwrap().status, "False");
        assert_eq!(find(&s, "Progressing").unwrap().reason, "RollingOut");
        assert_eq!(find(&s, "Degraded").unwrap().status, "False");
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn all_ready_is_ready_and_stable_and_keeps_transition_time() {
        let mut tc = cluster(TikvClusterSpec::default());
        let obs = Observation {
            placement: Some(must_running(&tc, Component::Placement, 1)),
            store: Some(must_running(&tc, Component::Store, 3)),
            ..Observation::default()
        };
        let s = observe(&tc, &obs, t(10));
        assert_eq!(find(&s, "Ready").unwrap().status, "True");
        assert_eq!(find(&s, "Progressing").unwrap().reason, "Stable");
        assert_eq!(s.store.replicas.ready_replicas, 3);
        assert_eq!(
            s.store.replicas.image.as_deref(),
            Some(concat!(
                "ghcr.io/ferrokv/ferrokv:v",
                env!("CARGO_PKG_VERSION")
            ))
        );
        tc.status = Some(s);
        let again = observe(&tc, &obs, t(20));
        assert_eq!(find(&again, "Ready").unwrap().last_transition_time, t(10));
    }

    #[test]
    fn pending_scale_in_and_pause_and_bad_spec_have_reasons() {
        let mut tc = cluster(TikvClusterSpec::default());
        let obs = Observation {
            scale_in: Some(Progress {
                reason: "ScaleInDraining",
                message: "store 5 (basic-store-4) is draining".into(),
            }),
            invalid_spec: Some("spec.store.config is not valid TOML".into()),
            ..Observation::default()
        };
        let s = observe(&tc, &obs, t(1));
        assert_eq!(find(&s, "Progressing").unwrap().reason, "ScaleInDraining");
        let degraded = find(&s, "Degraded").unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "InvalidSpec")
        );
        tc.spec.paused = true;
        let s = observe(&tc, &obs, t(1));
        assert_eq!(find(&s, "Progressing").unwrap().reason, "Paused");
    }

    #[test]
    fn failover_is_degraded_and_counts_the_extra_pod() {
        let tc = cluster(TikvClusterSpec::default());
        let mut store = must_running(&tc, Component::Store, 3);
        let failure = FailureStore {
            store_id: 2,
            pod: "basic-store-1".into(),
            since: t(5),
        };
        let mut obs = Observation {
            placement: Some(must_running(&tc, Component::Placement, 1)),
            store: Some(store.clone()),
            failure_stores: vec![failure.clone()],
            ..Observation::default()
        };
        let s = observe(&tc, &obs, t(10));
        let degraded = find(&s, "Degraded").unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "StoreFailover")
        );
        assert!(
            degraded.message.contains("store 2 (basic-store-1)"),
            "{}",
            degraded.message
        );
        assert_eq!(s.store.failure_stores, [failure]);
        // Three ready of four wanted: not ready.
        assert_eq!(find(&s, "Ready").unwrap().status, "False");
        store.status.as_mut().unwrap().ready_replicas = Some(4);
        store.status.as_mut().unwrap().updated_replicas = Some(4);
        obs.store = Some(store);
        assert_eq!(
            find(&observe(&tc, &obs, t(10)), "Ready").unwrap().status,
            "True"
        );
        obs.failover_capped = vec![(3, "basic-store-2".into())];
        let degraded = observe(&tc, &obs, t(10));
        let degraded = find(&degraded, "Degraded").unwrap();
        assert_eq!(degraded.reason, "FailoverLimitReached");
        assert!(
            degraded.message.contains("maxFailoverCount (3)"),
            "{}",
            degraded.message
        );
    }
}
