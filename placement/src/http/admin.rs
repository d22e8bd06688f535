//! The operator-facing write endpoints of PD's HTTP API: the store lifecycle
//! (`DELETE /store/{id}`, `POST /store/{id}/state`, `DELETE /stores/remove-tombstone`), the
//! schedulers (`/schedulers`), the fault tolerance report (`/fault-tolerance`) and operators
//! asked for by hand (`POST /operators`: `transfer-peer`, `transfer-leader`).
//!
//! Each one plans against the cluster view and persists through [`Placement::commit`]; the
//! logic lives in the pure core ([`crate::cluster::lifecycle`], [`crate::schedule`]).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use proto::metapb::StoreState;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{liveness, ApiResult};
use crate::cluster::{Liveness, StoreInfo};
use crate::error::Error;
use crate::meta::{MetaWrite, SchedulerRecord};
use crate::schedule::{fault_tolerance, SchedulerSet};
use crate::state::Placement;

type AppState = State<Arc<Placement>>;

/// Whether a store passes a `?state=` filter (empty: everything but tombstones).
pub fn state_matches(wanted: &[&str], s: &StoreInfo, live: Liveness) -> bool {
    if wanted.is_empty() {
        return !s.is_tombstone();
    }
    let stored = StoreState::try_from(s.meta.state).unwrap_or(StoreState::Up);
    wanted.iter().any(|w| {
        w.parse::<i32>().is_ok_and(|n| n == stored as i32)
            || w.eq_ignore_ascii_case(stored.as_str_name())
            || w.eq_ignore_ascii_case(live.name())
    })
}

#[derive(Deserialize, Default)]
pub struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /pd/api/v1/store/{id}[?force=true]`: start draining the store (Offline).
pub async fn delete_store(
    State(state): AppState,
    Path(id): Path<u64>,
    Query(q): Query<ForceQuery>,
) -> ApiResult {
    set_offline(&state, id, q.force).await?;
    Ok(Json(json!("The store is set as Offline.")))
}

async fn set_offline(state: &Placement, id: u64, force: bool) -> Result<(), Error> {
    state
        .commit(|view| {
            let max = view
                .meta()
                .map(|m| m.max_peer_count as usize)
                .unwrap_or(state.schedule.max_replicas);
            let writes = view
                .plan_store_offline(id, force, max, |s| liveness(state, view, s) == Liveness::Up)?;
            Ok(((), writes))
        })
        .await?;
    tracing::info!(store_id = id, force, "store set offline (draining)");
    Ok(())
}

#[derive(Deserialize)]
pub struct StateQuery {
    state: String,
    #[serde(default)]
    force: bool,
}

/// `POST /pd/api/v1/store/{id}/state?state=Up|Offline`.
pub async fn store_state(
    State(state): AppState,
    Path(id): Path<u64>,
    Query(q): Query<StateQuery>,
) -> ApiResult {
    if q.state.eq_ignore_ascii_case("Up") {
        state
            .commit(|view| Ok(((), view.plan_store_up(id)?)))
            .await?;
        tracing::info!(store_id = id, "store set up (drain canceled)");
    } else if q.state.eq_ignore_ascii_case("Offline") {
        set_offline(&state, id, q.force).await?;
    } else {
        return Err(Error::invalid(format!(
            "invalid state {}: only Up and Offline can be set",
            q.state
        ))
        .into());
    }
    Ok(Json(json!(format!(
        "The store's state is updated to {}.",
        q.state
    ))))
}

/// `DELETE /pd/api/v1/stores/remove-tombstone`: forget every tombstone.
pub async fn remove_tombstones(State(state): AppState) -> ApiResult {
    let removed = state
        .commit(|view| {
            let writes = view.plan_remove_tombstones()?;
            Ok((writes.len(), writes))
        })
        .await?;
    tracing::info!(removed, "tombstone stores purged");
    Ok(Json(json!("The tombstone stores are removed.")))
}

/// `GET /pd/api/v1/schedulers`: the enabled schedulers' names, as PD lists them.
pub async fn schedulers(State(state): AppState) -> Json<Value> {
    let set = SchedulerSet::from_names(state.view().scheduler_names());
    Json(json!(set.names()))
}

#[derive(Deserialize)]
pub struct AddScheduler {
    name: String,
    #[serde(default)]
    store_id: Option<u64>,
}

/// `POST /pd/api/v1/schedulers` with `{"name": "evict-leader-scheduler", "store_id": N}`.
pub async fn add_scheduler(State(state): AppState, Json(body): Json<AddScheduler>) -> ApiResult {
    if let Some(id) = body.store_id {
        state.view().store(id)?;
    }
    change_schedulers(&state, |set| set.add(&body.name, body.store_id)).await?;
    tracing::info!(scheduler = %body.name, store_id = body.store_id, "scheduler added");
    Ok(Json(json!("The scheduler is created.")))
}

/// `DELETE /pd/api/v1/schedulers/{name}`.
pub async fn remove_scheduler(State(state): AppState, Path(name): Path<String>) -> ApiResult {
    change_schedulers(&state, |set| set.remove(&name)).await?;
    tracing::info!(scheduler = %name, "scheduler removed");
    Ok(Json(json!("The scheduler is removed.")))
}

async fn change_schedulers(
    state: &Placement,
    change: impl FnOnce(&mut SchedulerSet) -> crate::Result<()>,
) -> crate::Result<()> {
    state
        .commit(|view| {
            let mut set = SchedulerSet::from_names(view.scheduler_names());
            change(&mut set)?;
            let rec = SchedulerRecord { names: set.names() };
            Ok(((), vec![MetaWrite::Schedulers(rec)]))
        })
        .await
}

/// `GET /pd/api/v1/fault-tolerance`: `{"regions": N, "levels": [LevelReport...]}`, one level
/// per location label, outermost first, then `store` ([`fault_tolerance::report`]).
pub async fn fault_tolerance(State(state): AppState) -> ApiResult {
    let view = state.view();
    view.meta()?;
    let levels = fault_tolerance::report(&view, &state.settings(&view).location_labels);
    Ok(Json(
        json!({ "regions": view.regions().len(), "levels": levels }),
    ))
}

/// The body of `POST /pd/api/v1/operators`, as pd-ctl's `operator add` sends it.
#[derive(Debug, Deserialize)]
pub struct OperatorRequest {
    name: String,
    region_id: u64,
    #[serde(default)]
    from_store_id: Option<u64>,
    #[serde(default)]
    to_store_id: Option<u64>,
}

/// `POST /pd/api/v1/operators`: starts a `transfer-peer` (a replica move, with the joint
/// steps the checkers use) or `transfer-leader` operator on one region, if no other operator
/// runs there and the limits allow.
pub async fn create_operator(
    State(state): AppState,
    Json(req): Json<OperatorRequest>,
) -> ApiResult {
    use crate::schedule::admin::{admin_operator, AdminRequest};
    use crate::schedule::Context;
    state.check_leader()?;
    let need = |v: Option<u64>, field: &str| {
        v.ok_or_else(|| Error::invalid(format!("{} needs `{field}`", req.name)))
    };
    let request = match req.name.as_str() {
        "transfer-peer" => AdminRequest::TransferPeer {
            from_store: need(req.from_store_id, "from_store_id")?,
            to_store: need(req.to_store_id, "to_store_id")?,
        },
        "transfer-leader" => AdminRequest::TransferLeader {
            to_store: need(req.to_store_id, "to_store_id")?,
        },
        other => {
            return Err(Error::invalid(format!(
                "unsupported operator `{other}` (transfer-peer, transfer-leader)"
            ))
            .into())
        }
    };
    let peer_id = match request {
        AdminRequest::TransferPeer { .. } => state.ids.alloc().await?,
        AdminRequest::TransferLeader { .. } => 0,
    };
    let view = state.view();
    let region = view
        .regions()
        .get(req.region_id)
        .ok_or(Error::RegionNotFound(req.region_id))?;
    let settings = state.settings(&view);
    let ctx = Context {
        view: &view,
        settings: &settings,
        now_ms: crate::state::now_ms(),
        started_ms: state.started_ms,
    };
    let mut scheduler = state.scheduler.lock();
    let op = admin_operator(request, region, &ctx, &scheduler.operators, peer_id)
        .map_err(Error::invalid)?;
    let steps = op.step_strings().join(", ");
    scheduler
        .operators
        .add(op, &settings)
        .map_err(|r| Error::invalid(format!("operator not admitted: {r:?}")))?;
    tracing::info!(region_id = req.region_id, name = %req.name, %steps, "operator created by request");
    Ok(Json(json!("The operator is created.")))
}
