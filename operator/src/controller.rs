//! The reconcile loop: a kube-runtime [`Controller`] over `TikvCluster`s that server-side-applies
//! what [`crate::builders`] produce and writes the status [`crate::status::observe`] computes.
//!
//! Idempotent: each pass applies the full desired state with one field manager, so running it
//! twice changes nothing. The stateful steps are decided by pure planners and carried out here:
//! scale-in drains a store through placement before its pod goes ([`crate::scale`]); a store
//! upgrade evicts each pod's leaders before releasing it by partition ([`crate::upgrade`]);
//! `paused` or a spec that does not render stops every write but the status. Each step shows in
//! the Progressing condition and as an Event.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::builders::{self, Component, MANAGER};
use crate::crd::{TikvCluster, UpgradeStatus};
use crate::placement::{HttpPlacementClient, PlacementClient, PlacementView};
use crate::scale::{plan_store_replicas, ScaleStep};
use crate::server::Metrics;
use crate::status::{self, Observation, Progress};
use crate::upgrade::{self, plan_upgrade, UpgradeStep};
use crate::{Error, Result};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Publishes the stateful steps as Kubernetes Events on the TikvCluster.
    pub recorder: Recorder,
    pub placement: Arc<dyn PlacementClient>,
    pub metrics: Metrics,
}

/// Requeue while converging, so progress is observed without waiting for a watch event.
const REQUEUE_BUSY: Duration = Duration::from_secs(10);
const REQUEUE_IDLE: Duration = Duration::from_secs(300);

/// Server-side apply of one namespaced object under the operator's field manager.
async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let params = PatchParams::apply(MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(obj)).await?)
}

/// Everything one component needs, rendered before anything is written, so a spec that does
/// not render changes nothing rather than half of the objects.
struct Desired {
    peer: Service,
    client: Service,
    config: ConfigMap,
    sts: StatefulSet,
    pdb: PodDisruptionBudget,
}

fn desired(tc: &TikvCluster, c: Component) -> Result<Desired> {
    Ok(Desired {
        peer: builders::peer_service(tc, c)?,
        client: builders::client_service(tc, c)?,
        config: builders::config_map(tc, c)?,
        sts: builders::stateful_set(tc, c, 0)?,
        pdb: builders::pod_disruption_budget(tc, c)?,
    })
}

/// Applies one component's objects; `shape` sets the StatefulSet's replicas and partition from
/// the one running. Returns the StatefulSet as the API server holds it and what `shape` said.
async fn apply_component<R>(
    client: &Client,
    ns: &str,
    wanted: Desired,
    shape: impl FnOnce(Option<&StatefulSet>, &mut StatefulSet) -> R,
) -> Result<(StatefulSet, R)> {
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let current = sts_api.get_opt(&wanted.sts.name_any()).await?;
    let mut sts = wanted.sts;
    let decided = shape(current.as_ref(), &mut sts);
    apply(client, ns, &wanted.peer).await?;
    apply(client, ns, &wanted.client).await?;
    apply(client, ns, &wanted.config).await?;
    let sts = apply(client, ns, &sts).await?;
    apply(client, ns, &wanted.pdb).await?;
    Ok((sts, decided))
}

/// Sets replicas (scale step) and, for the stores, the partition (upgrade step) of `sts`.
fn shape(
    tc: &TikvCluster,
    c: Component,
    current: Option<&StatefulSet>,
    sts: &mut StatefulSet,
    view: Option<&PlacementView>,
    upgrade_state: Option<&UpgradeStatus>,
) -> (ScaleStep, UpgradeStep) {
    let scale = plan(tc, c, current.and_then(|s| s.spec.replicas), view);
    sts.spec.replicas = Some(scale.replicas());
    let upgrade = match current {
        Some(cur) if c == Component::Store => {
            let r = upgrade::rollout(cur, sts);
            plan_upgrade(tc, &r, view, upgrade_state, Timestamp::now())
        }
        _ => UpgradeStep::Steady,
    };
    if let Some(rolling) = sts
        .spec
        .update_strategy
        .as_mut()
        .and_then(|u| u.rolling_update.as_mut())
    {
        rolling.partition = Some(upgrade.partition());
    }
    (scale, upgrade)
}

/// Carries out an upgrade step's side effects on placement; records it for status.
async fn take_upgrade_step(
    ctx: &Context,
    tc: &TikvCluster,
    endpoint: &str,
    step: &UpgradeStep,
    obs: &mut Observation,
) -> Result<()> {
    let pod = |ordinal: i32| format!("{}-{ordinal}", builders::name(tc, Component::Store));
    let (reason, message) = match step {
        UpgradeStep::Steady => return Ok(()),
        UpgradeStep::Hold { partition, reason } => {
            (*reason, format!("stores upgrading; partition {partition}"))
        }
        UpgradeStep::EvictLeaders {
            ordinal, store_id, ..
        } => {
            ctx.placement.evict_leader(endpoint, *store_id).await?;
            obs.upgrade = Some(UpgradeStatus {
                ordinal: *ordinal,
                store_id: *store_id,
                evict_started_at: Time(Timestamp::now()),
            });
            let note = format!(
                "evicting leaders from store {store_id} before {} restarts",
                pod(*ordinal)
            );
            publish(ctx, tc, "EvictingLeaders", note.clone()).await;
            ("UpgradeEvictingLeaders", note)
        }
        UpgradeStep::Restart { ordinal } => {
            let note = format!("restarting {} on the new revision", pod(*ordinal));
            publish(ctx, tc, "RestartingStorePod", note.clone()).await;
            ("UpgradeRestartingPod", note)
        }
        UpgradeStep::Finish { store_id, .. } => {
            ctx.placement
                .remove_evict_leader(endpoint, *store_id)
                .await?;
            let done = obs.upgrade.take().map_or(String::new(), |u| pod(u.ordinal));
            let note = format!(
                "{done} is ready on the new revision; store {store_id} takes leaders again"
            );
            publish(ctx, tc, "StorePodUpgraded", note.clone()).await;
            ("UpgradeRollingOut", note)
        }
    };
    obs.rollout = Some(Progress { reason, message });
    Ok(())
}

/// The scale step of `c`. Placement members are never removed yet: that needs member removal
/// through placement, so a smaller placement spec keeps its pods.
fn plan(
    tc: &TikvCluster,
    c: Component,
    running: Option<i32>,
    view: Option<&PlacementView>,
) -> ScaleStep {
    match c {
        Component::Store => plan_store_replicas(tc, running, view),
        Component::Placement => match running {
            Some(keep) if keep > tc.spec.placement.replicas => ScaleStep::Wait {
                keep,
                reason: "ScaleInUnsupported",
                message: "placement members are not removed yet; placement keeps its pods".into(),
            },
            _ => ScaleStep::Replicas(tc.spec.placement.replicas),
        },
    }
}

/// Records a step as an Event on the cluster; a failed publish is logged, never fatal.
async fn publish(ctx: &Context, tc: &TikvCluster, reason: &str, note: String) {
    let event = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(note),
        action: "Scale".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &tc.object_ref(&())).await {
        warn!(error = %e, reason, "publishing event failed");
    }
}

/// Carries out a scale step's side effect on placement and says how status reports it.
async fn take_step(
    ctx: &Context,
    tc: &TikvCluster,
    endpoint: &str,
    step: &ScaleStep,
) -> Result<Option<Progress>> {
    Ok(match step {
        ScaleStep::Replicas(_) => None,
        ScaleStep::Remove { replicas, pod } => {
            let note = format!("store of {pod} is a tombstone; scaling to {replicas}");
            info!(pod = %pod, replicas, "removing drained pod");
            publish(ctx, tc, "RemovedDrainedPod", note).await;
            None
        }
        ScaleStep::Drain { store_id, pod, .. } => {
            info!(store_id, pod = %pod, "draining store before its pod is removed");
            ctx.placement.delete_store(endpoint, *store_id).await?;
            let note = format!("draining store {store_id} ({pod}) through placement");
            publish(ctx, tc, "DrainingStore", note).await;
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
    })
}

/// Brings one cluster's objects to its spec and reports what it saw.
#[instrument(skip_all, fields(cluster = %tc.name_any(), namespace = tc.namespace()))]
pub async fn reconcile(tc: Arc<TikvCluster>, ctx: Arc<Context>) -> Result<Action> {
    let ns = builders::namespace(&tc)?;
    let endpoint = builders::placement_endpoint(&tc)?;
    let mut obs = Observation {
        upgrade: tc.status.as_ref().and_then(|s| s.upgrade.clone()),
        ..Observation::default()
    };
    let mut wanted = Vec::new();
    for c in Component::ALL {
        match desired(&tc, c) {
            Ok(d) => wanted.push(d),
            Err(e @ Error::ComponentConfig { .. }) => {
                warn!(error = %e, "spec does not render; nothing applied");
                obs.invalid_spec = Some(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    match ctx.placement.view(&endpoint).await {
        Ok(view) => obs.placement_view = Some(view),
        Err(e) => info!(error = %e, "placement not answering"),
    }
    let write = !tc.spec.paused && obs.invalid_spec.is_none();
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut wanted = wanted.into_iter();
    for c in Component::ALL {
        let sts = match wanted.next().filter(|_| write) {
            Some(d) => {
                let view = obs.placement_view.as_ref();
                let state = obs.upgrade.as_ref();
                let (sts, (step, upgrade)) = apply_component(&ctx.client, &ns, d, |cur, sts| {
                    shape(&tc, c, cur, sts, view, state)
                })
                .await?;
                if let Some(scale_in) = take_step(&ctx, &tc, &endpoint, &step).await? {
                    obs.scale_in = Some(scale_in);
                }
                take_upgrade_step(&ctx, &tc, &endpoint, &upgrade, &mut obs).await?;
                Some(sts)
            }
            None => sts_api.get_opt(&builders::name(&tc, c)).await?,
        };
        match c {
            Component::Placement => obs.placement = sts,
            Component::Store => obs.store = sts,
        }
    }
    let now = Time(Timestamp::now());
    let status = status::observe(&tc, &obs, now);
    let busy = status::find(&status, "Progressing").is_some_and(|c| c.status == "True");
    let api: Api<TikvCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let mut body = serde_json::to_value(&status).expect("status serializes");
    if status.upgrade.is_none() {
        // A merge patch only clears a field it names.
        body["upgrade"] = serde_json::Value::Null;
    }
    let patch = Patch::Merge(serde_json::json!({ "status": body }));
    api.patch_status(&tc.name_any(), &PatchParams::default(), &patch)
        .await?;
    ctx.metrics.reconciles.with_label_values(&["ok"]).inc();
    Ok(if obs.invalid_spec.is_some() {
        Action::await_change()
    } else {
        Action::requeue(if busy { REQUEUE_BUSY } else { REQUEUE_IDLE })
    })
}

/// Failed passes retry after a pause; the error is logged with the cluster's fields.
pub fn error_policy(tc: Arc<TikvCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconciles.with_label_values(&["error"]).inc();
    warn!(cluster = %tc.name_any(), namespace = tc.namespace(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(30))
}

/// Runs the controller until a shutdown signal, over one namespace or all of them.
pub async fn run(client: Client, namespace: Option<String>, metrics: Metrics) {
    let (clusters, sts, svc, cm, pdb) = match &namespace {
        Some(ns) => (
            Api::<TikvCluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let owned = || watcher::Config::default().labels("app.kubernetes.io/managed-by=tikv-operator");
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        placement: Arc::new(HttpPlacementClient::default()),
        metrics,
    });
    info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "controller starting"
    );
    Controller::new(clusters, watcher::Config::default())
        .owns(sts, owned())
        .owns(svc, owned())
        .owns(cm, owned())
        .owns(pdb, owned())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => info!(cluster = %obj.name, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile stream error"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
