//! The reconcile loop: a kube-runtime [`Controller`] over `TikvCluster`s that server-side-applies
//! what [`crate::builders`] produce and writes the status [`crate::status::observe`] computes.
//!
//! Idempotent: each pass applies the full desired state with one field manager, so running it
//! twice changes nothing. The stateful steps are decided by pure planners and carried out here:
//! store failover adds a replacement pod per failed store ([`crate::failover`]); scale-in drains
//! a store through placement before its pod goes ([`crate::scale`]); a store upgrade evicts each
//! pod's leaders before releasing it by partition ([`crate::upgrade`]); placement members join
//! and leave one at a time and hand leadership over before they leave or restart
//! ([`crate::members`]). `paused` or a spec that does not render stops every write but the
//! status. Each step shows in the Progressing (or Degraded) condition and as an Event.
//!
//! The finalizer [`FINALIZER`] goes on at the first pass; deleting the cluster then deletes its
//! volume claims when `pvReclaimPolicy` is `Delete` and the placement ClusterRoleBinding (no
//! owner reference can reach a cluster-scoped object) before the finalizer comes off. Everything
//! else goes through owner references. Deletion is the user's explicit act, so it runs even
//! while the cluster is paused; a paused cluster only gets no finalizer added.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::builders::{self, Component, MANAGER};
use crate::crd::{PvReclaimPolicy, TikvCluster, UpgradeStatus, FINALIZER};
use crate::failover::{self, FailoverPlan};
use crate::members::{plan_member_upgrade, plan_members, MemberStep};
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
    /// The ClusterRole (installed by the chart) each cluster's placement ServiceAccount is bound
    /// to for store topology; `None` binds nothing.
    pub topology_cluster_role: Option<String>,
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

/// Server-side apply of one cluster-scoped object under the operator's field manager.
async fn apply_cluster_scoped<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::all(client.clone());
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

/// The scale step of one component.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scale {
    Store(ScaleStep),
    Placement(MemberStep),
}

/// Sets replicas (scale step) and partition (upgrade step) of `sts`. `failover` is the number
/// of replacement store pods wanted beyond the spec.
fn shape(
    tc: &TikvCluster,
    c: Component,
    current: Option<&StatefulSet>,
    sts: &mut StatefulSet,
    view: Option<&PlacementView>,
    upgrade_state: Option<&UpgradeStatus>,
    failover: i32,
) -> (Scale, UpgradeStep) {
    let running = current.and_then(|s| s.spec.replicas);
    let (scale, upgrade) = match c {
        Component::Store => {
            let step = plan_store_replicas(tc, failover, running, view);
            sts.spec.replicas = Some(step.replicas());
            let upgrade = current.map_or(UpgradeStep::Steady, |cur| {
                let r = upgrade::rollout(cur, sts);
                plan_upgrade(tc, &r, view, upgrade_state, Timestamp::now())
            });
            (Scale::Store(step), upgrade)
        }
        Component::Placement => {
            let step = plan_members(tc, running, view);
            sts.spec.replicas = Some(step.replicas());
            let upgrade = current.map_or(UpgradeStep::Steady, |cur| {
                let r = upgrade::rollout(cur, sts);
                plan_member_upgrade(tc, &r, running.unwrap_or(0), step.scaling(), view)
            });
            (Scale::Placement(step), upgrade)
        }
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
    c: Component,
    endpoint: &str,
    step: &UpgradeStep,
    obs: &mut Observation,
) -> Result<()> {
    let pod = |ordinal: i32| format!("{}-{ordinal}", builders::name(tc, c));
    let (reason, message) = match step {
        UpgradeStep::Steady => return Ok(()),
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
        UpgradeStep::TransferLeader { from, to, .. } => {
            ctx.placement.transfer_leader(endpoint, to).await?;
            let note = format!(
                "transferring placement leadership from {from} to {to} before {from} restarts"
            );
            publish(ctx, tc, "TransferringLeader", note.clone()).await;
            ("UpgradeTransferringLeader", note)
        }
        UpgradeStep::Restart { ordinal } => {
            let note = format!("restarting {} on the new revision", pod(*ordinal));
            let reason = match c {
                Component::Store => "RestartingStorePod",
                Component::Placement => "RestartingPlacementPod",
            };
            publish(ctx, tc, reason, note.clone()).await;
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
    obs.rollout.get_or_insert(Progress { reason, message });
    Ok(())
}

/// Records a step as an Event on the cluster; a failed publish is logged, never fatal.
async fn publish(ctx: &Context, tc: &TikvCluster, reason: &str, note: String) {
    publish_typed(ctx, tc, EventType::Normal, reason, note).await;
}

async fn publish_typed(
    ctx: &Context,
    tc: &TikvCluster,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &tc.object_ref(&())).await {
        warn!(error = %e, reason, "publishing event failed");
    }
}

/// Carries out a store scale step's side effect on placement and says how status reports it.
async fn take_store_step(
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

/// Carries out a placement member step on placement and says how status reports it.
async fn take_member_step(
    ctx: &Context,
    tc: &TikvCluster,
    endpoint: &str,
    step: &MemberStep,
) -> Result<Option<Progress>> {
    Ok(match step {
        MemberStep::Replicas(_) => None,
        MemberStep::Grow { replicas, pod } => {
            let note = format!("adding placement member {pod}; scaling to {replicas}");
            publish(ctx, tc, "AddingMember", note.clone()).await;
            Some(Progress {
                reason: "ScaleOutAddingMember",
                message: note,
            })
        }
        MemberStep::TransferLeader { from, to, .. } => {
            ctx.placement.transfer_leader(endpoint, to).await?;
            let note = format!(
                "transferring placement leadership from {from} to {to} before {from} leaves"
            );
            publish(ctx, tc, "TransferringLeader", note.clone()).await;
            Some(Progress {
                reason: "ScaleInTransferringLeader",
                message: note,
            })
        }
        MemberStep::DeleteMember { name, .. } => {
            info!(member = %name, "removing placement member before its pod goes");
            ctx.placement.delete_member(endpoint, name).await?;
            let note = format!("removing member {name} from placement before its pod goes");
            publish(ctx, tc, "DeletingMember", note.clone()).await;
            Some(Progress {
                reason: "ScaleInDeletingMember",
                message: note,
            })
        }
        MemberStep::Remove { replicas, pod } => {
            let note = format!("{pod} left placement; scaling to {replicas}");
            publish(ctx, tc, "RemovedMember", note).await;
            None
        }
        MemberStep::Wait {
            reason, message, ..
        } => Some(Progress {
            reason,
            message: message.clone(),
        }),
    })
}

/// Publishes what failover decided this pass: new failures, recoveries, and (once, when the
/// Degraded condition turns to it) the limit being reached.
async fn report_failover(ctx: &Context, tc: &TikvCluster, plan: &FailoverPlan) {
    for f in &plan.added {
        warn!(store_id = f.store_id, pod = %f.pod, "store failed; adding a replacement pod");
        let note = format!(
            "store {} ({}) is down; adding a replacement store pod ({} of at most {})",
            f.store_id,
            f.pod,
            plan.extra(),
            tc.spec.max_failover_count
        );
        publish_typed(ctx, tc, EventType::Warning, "StoreFailover", note).await;
    }
    for f in &plan.recovered {
        let note = format!(
            "store {} ({}) is Up again; its replacement pod leaves through a drain",
            f.store_id, f.pod
        );
        publish(ctx, tc, "StoreRecovered", note).await;
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
        publish_typed(ctx, tc, EventType::Warning, "FailoverLimitReached", note).await;
    }
}

/// Adds [`FINALIZER`] unless present; the resourceVersion makes a concurrent change conflict.
async fn ensure_finalizer(api: &Api<TikvCluster>, tc: &TikvCluster) -> Result<()> {
    if tc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = tc.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    set_finalizers(api, tc, finalizers).await
}

async fn set_finalizers(
    api: &Api<TikvCluster>,
    tc: &TikvCluster,
    finalizers: Vec<String>,
) -> Result<()> {
    let patch = Patch::Merge(serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": tc.resource_version(),
        }
    }));
    api.patch(&tc.name_any(), &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// Deletes `name` through `api`; one already gone is fine.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The deletion path: record it, delete the cluster's volume claims under
/// `pvReclaimPolicy: Delete`, delete the topology ClusterRoleBinding, drop the finalizer.
async fn cleanup(
    ctx: &Context,
    tc: &TikvCluster,
    api: &Api<TikvCluster>,
    ns: &str,
) -> Result<Action> {
    if !tc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let policy = tc.spec.pv_reclaim_policy;
    let verdict = match policy {
        PvReclaimPolicy::Delete => "its volume claims are deleted (pvReclaimPolicy: Delete)",
        PvReclaimPolicy::Retain => "its volume claims are kept (pvReclaimPolicy: Retain)",
    };
    publish(ctx, tc, "Deleting", format!("cluster deleted; {verdict}")).await;
    if policy == PvReclaimPolicy::Delete {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        let selector = format!(
            "app.kubernetes.io/name=ferrokv,app.kubernetes.io/instance={}",
            tc.name_any()
        );
        for pvc in pvcs.list(&ListParams::default().labels(&selector)).await? {
            let name = pvc.name_any();
            if delete_if_present(&pvcs, &name).await? {
                info!(pvc = %name, "deleted volume claim");
            }
        }
    }
    // Without a topology ClusterRole the operator made no binding and may lack the right to
    // touch bindings at all: asking would only keep the finalizer stuck on a 403.
    if ctx.topology_cluster_role.is_some() {
        let bindings: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
        delete_if_present(&bindings, &builders::topology_binding_name(tc)?).await?;
    }
    let rest: Vec<String> = tc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(api, tc, rest).await?;
    Ok(Action::await_change())
}

/// Brings one cluster's objects to its spec and reports what it saw.
#[instrument(skip_all, fields(cluster = %tc.name_any(), namespace = tc.namespace()))]
pub async fn reconcile(tc: Arc<TikvCluster>, ctx: Arc<Context>) -> Result<Action> {
    let ns = builders::namespace(&tc)?;
    let api: Api<TikvCluster> = Api::namespaced(ctx.client.clone(), &ns);
    if tc.metadata.deletion_timestamp.is_some() {
        let action = cleanup(&ctx, &tc, &api, &ns).await?;
        ctx.metrics.reconciles.with_label_values(&["ok"]).inc();
        return Ok(action);
    }
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
    if !tc.spec.paused {
        ensure_finalizer(&api, &tc).await?;
    }
    let plan = if write {
        failover::plan_failover(&tc, obs.placement_view.as_ref(), Timestamp::now())
    } else {
        failover::keep(&tc)
    };
    if write {
        report_failover(&ctx, &tc, &plan).await;
        apply(&ctx.client, &ns, &builders::placement_service_account(&tc)?).await?;
        if let Some(role) = &ctx.topology_cluster_role {
            let binding = builders::placement_topology_binding(&tc, role)?;
            apply_cluster_scoped(&ctx.client, &binding).await?;
        }
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut wanted = wanted.into_iter();
    for c in Component::ALL {
        let sts = match wanted.next().filter(|_| write) {
            Some(d) => {
                let view = obs.placement_view.as_ref();
                let state = obs.upgrade.as_ref();
                let extra = plan.extra();
                let (sts, (step, upgrade)) = apply_component(&ctx.client, &ns, d, |cur, sts| {
                    shape(&tc, c, cur, sts, view, state, extra)
                })
                .await?;
                let progress = match &step {
                    Scale::Store(s) => take_store_step(&ctx, &tc, &endpoint, s).await?,
                    Scale::Placement(m) => take_member_step(&ctx, &tc, &endpoint, m).await?,
                };
                if let Some(p) = progress {
                    obs.scale_in.get_or_insert(p);
                }
                take_upgrade_step(&ctx, &tc, c, &endpoint, &upgrade, &mut obs).await?;
                Some(sts)
            }
            None => sts_api.get_opt(&builders::name(&tc, c)).await?,
        };
        match c {
            Component::Placement => obs.placement = sts,
            Component::Store => obs.store = sts,
        }
    }
    obs.failure_stores = plan.failures;
    obs.failover_capped = plan.capped;
    let now = Time(Timestamp::now());
    let status = status::observe(&tc, &obs, now);
    let busy = status::find(&status, "Progressing").is_some_and(|c| c.status == "True");
    let mut body = serde_json::to_value(&status).expect("status serializes");
    if status.upgrade.is_none() {
        // A merge patch only clears a field it names.
        body["upgrade"] = serde_json::Value::Null;
    }
    if status.store.failure_stores.is_empty() {
        body["store"]["failureStores"] = serde_json::Value::Null;
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
pub async fn run(
    client: Client,
    namespace: Option<String>,
    topology_cluster_role: Option<String>,
    metrics: Metrics,
) {
    let (clusters, sts, svc, cm, pdb, sa) = match &namespace {
        Some(ns) => (
            Api::<TikvCluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
            Api::<ServiceAccount>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
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
        topology_cluster_role,
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
        .owns(sa, owned())
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
