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
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::builders::{self, Component, MANAGER};
use crate::crd::{PvReclaimPolicy, TikvCluster, UpgradeStatus, FINALIZER};
use crate::members::{plan_member_upgrade, plan_members, MemberStep};
use crate::placement::{HttpPlacementAdmin, PlacementAdmin, PlacementView};
use crate::scale::{plan_store_replicas, ScaleStep};
use crate::server::Metrics;
use crate::status::{self, Observation};
use crate::upgrade::{self, plan_upgrade, UpgradeStep};
use crate::{Error, Result};
use decide::{decide, Act, Decision, PlacementCall, Seen};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Publishes the stateful steps as Kubernetes Events on the TikvCluster.
    pub recorder: Recorder,
    pub placement: Arc<dyn PlacementAdmin>,
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
#[derive(Clone, Debug, PartialEq)]
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

/// Applies one component's objects; returns the StatefulSet as the API server holds it.
async fn apply_component(client: &Client, ns: &str, wanted: Desired) -> Result<StatefulSet> {
    apply(client, ns, &wanted.peer).await?;
    apply(client, ns, &wanted.client).await?;
    apply(client, ns, &wanted.config).await?;
    let sts = apply(client, ns, &wanted.sts).await?;
    apply(client, ns, &wanted.pdb).await?;
    Ok(sts)
}

/// The scale step of one component.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scale {
    Store(ScaleStep),
    Placement(MemberStep),
}

/// Sets replicas (scale step) and partition (upgrade step) of `sts`. `failover` is the number
/// of replacement store pods wanted beyond the spec.
#[allow(clippy::too_many_arguments)]
fn shape(
    tc: &TikvCluster,
    c: Component,
    current: Option<&StatefulSet>,
    sts: &mut StatefulSet,
    view: Option<&PlacementView>,
    upgrade_state: Option<&UpgradeStatus>,
    failover: i32,
    now: Timestamp,
) -> (Scale, UpgradeStep) {
    let running = current.and_then(|s| s.spec.replicas);
    let (scale, upgrade) = match c {
        Component::Store => {
            let step = plan_store_replicas(tc, failover, running, view);
            sts.spec.replicas = Some(step.replicas());
            let upgrade = current.map_or(UpgradeStep::Steady, |cur| {
                let r = upgrade::rollout(cur, sts);
                plan_upgrade(tc, &r, view, upgrade_state, now)
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
/// `pvReclaimPolicy: Delete` and the topology ClusterRoleBinding; [`finalizer`] then drops
/// the finalizer.
async fn cleanup(ctx: &Context, tc: &TikvCluster, ns: &str) -> Result<Action> {
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
    Ok(Action::await_change())
}

/// Brings one cluster's objects to its spec and reports what it saw. [`finalizer`] adds the
/// finalizer first (that pass ends there: its own watch event starts the next) and runs
/// [`cleanup`] on deletion; a paused cluster without the finalizer gets none.
#[instrument(skip_all, fields(cluster = %tc.name_any(), namespace = tc.namespace()))]
pub async fn reconcile(tc: Arc<TikvCluster>, ctx: Arc<Context>) -> Result<Action> {
    let ns = builders::namespace(&tc)?;
    let api: Api<TikvCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let unfinalized = !tc.finalizers().iter().any(|f| f == FINALIZER);
    let action = if tc.spec.paused && unfinalized && tc.metadata.deletion_timestamp.is_none() {
        pass(&ctx, &tc, &ns).await?
    } else {
        finalizer(&api, FINALIZER, tc, |event| async {
            match event {
                Finalizer::Apply(tc) => pass(&ctx, &tc, &ns).await,
                Finalizer::Cleanup(tc) => cleanup(&ctx, &tc, &ns).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))?
    };
    ctx.metrics.reconciles.with_label_values(&["ok"]).inc();
    Ok(action)
}

/// One pass over a live cluster: read, [`decide`], carry the acts out, write the status.
async fn pass(ctx: &Context, tc: &TikvCluster, ns: &str) -> Result<Action> {
    let endpoint = builders::placement_endpoint(tc)?;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let view = match ctx.placement.view(&endpoint).await {
        Ok(view) => Some(view),
        Err(e) => {
            info!(error = %e, "placement not answering");
            None
        }
    };
    let seen = Seen {
        placement: sts_api
            .get_opt(&builders::name(tc, Component::Placement))
            .await?,
        store: sts_api
            .get_opt(&builders::name(tc, Component::Store))
            .await?,
        view,
    };
    let role = ctx.topology_cluster_role.as_deref();
    let Decision { acts, mut obs } = decide(tc, seen, role, Timestamp::now())?;
    if let Some(reason) = &obs.invalid_spec {
        warn!(error = %reason, "spec does not render; nothing applied");
    }
    for act in acts {
        carry_out(ctx, tc, ns, &endpoint, act, &mut obs).await?;
    }
    write_status(ctx, tc, ns, &obs).await
}

/// Does one act; an applied StatefulSet replaces the one read for status.
async fn carry_out(
    ctx: &Context,
    tc: &TikvCluster,
    ns: &str,
    endpoint: &str,
    act: Act,
    obs: &mut Observation,
) -> Result<()> {
    match act {
        Act::Publish { kind, reason, note } => publish_typed(ctx, tc, kind, reason, note).await,
        Act::ApplyServiceAccount(account) => {
            apply(&ctx.client, ns, &*account).await?;
        }
        Act::ApplyBinding(binding) => {
            apply_cluster_scoped(&ctx.client, &*binding).await?;
        }
        Act::ApplyComponent(c, wanted) => {
            let sts = Some(apply_component(&ctx.client, ns, *wanted).await?);
            match c {
                Component::Placement => obs.placement = sts,
                Component::Store => obs.store = sts,
            }
        }
        Act::Ask(call) => ask(ctx, endpoint, call).await?,
    }
    Ok(())
}

/// Makes a request to placement.
async fn ask(ctx: &Context, endpoint: &str, call: PlacementCall) -> Result<()> {
    let placement = &ctx.placement;
    match call {
        PlacementCall::EvictLeader { store_id } => placement.evict_leader(endpoint, store_id).await,
        PlacementCall::RemoveEvictLeader { store_id } => {
            placement.remove_evict_leader(endpoint, store_id).await
        }
        PlacementCall::TransferLeader { to } => placement.transfer_leader(endpoint, &to).await,
        PlacementCall::DeleteStore { store_id } => {
            info!(store_id, "draining store before its pod is removed");
            placement.delete_store(endpoint, store_id).await
        }
        PlacementCall::DeleteMember { name } => {
            info!(member = %name, "removing placement member before its pod goes");
            placement.delete_member(endpoint, &name).await
        }
    }
}

/// Writes the status `obs` makes; requeues soon while anything is in progress.
async fn write_status(
    ctx: &Context,
    tc: &TikvCluster,
    ns: &str,
    obs: &Observation,
) -> Result<Action> {
    let now = Time(Timestamp::now());
    let status = status::observe(tc, obs, now);
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
    let api: Api<TikvCluster> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(&tc.name_any(), &PatchParams::default(), &patch)
        .await?;
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
        placement: Arc::new(HttpPlacementAdmin::default()),
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

mod decide;
#[cfg(test)]
mod tests;
