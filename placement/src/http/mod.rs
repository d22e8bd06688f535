//! PD's HTTP API, served on the same port as gRPC ([`router`]), plus `/metrics` (Prometheus
//! text) and `/health`.
//!
//! Routes: `/pd/api/v1/{health, members, members/name/{name} (DELETE), leader,
//! leader/transfer/{name}, leader/resign, stores[?state=], store/{id} (GET, DELETE =
//! drain), store/{id}/state (POST), stores/remove-tombstone (DELETE), schedulers (GET, POST),
//! schedulers/{name} (DELETE), fault-tolerance, regions, region/id/{id},
//! cluster, config (GET, POST), config/replicate, config/schedule, operators, operators/{region_id}, version,
//! status}` and `/pd/api/v2/keyspaces` (GET, POST `{name}`),
//! `/pd/api/v2/keyspaces/{name}`. JSON shapes are PD's ([`views`]). With `[debug]
//! fault-injection = true`, also `POST /debug/fail/{meta-write, raft-panic}` ([`debug`]).

mod admin;
mod config_api;
mod debug;
mod members;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cluster::{ClusterView, Liveness, StoreInfo};
use crate::error::Error;
use crate::state::{now_ms, now_secs, Placement, VERSION};

type AppState = State<Arc<Placement>>;

/// The HTTP routes, without a fallback (they are merged with the gRPC routes).
pub fn router(state: Arc<Placement>) -> Router {
    let routes = if state.config.debug.fault_injection {
        Router::new()
            .route("/debug/fail/{what}", post(debug::fail))
            .route("/debug/clock-offset/{ms}", post(debug::clock_offset))
            .route(
                "/debug/hold-joint",
                post(debug::hold_joint).delete(debug::release_joint),
            )
    } else {
        Router::new()
    };
    routes
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/pd/api/v1/health", get(members::health))
        .route("/pd/api/v1/members", get(members::members))
        .route(
            "/pd/api/v1/members/name/{name}",
            delete(members::delete_by_name),
        )
        .route("/pd/api/v1/leader", get(members::leader))
        .route("/pd/api/v1/leader/transfer/{name}", post(members::transfer))
        .route("/pd/api/v1/leader/resign", post(members::resign))
        .route("/pd/api/v1/stores", get(stores))
        .route(
            "/pd/api/v1/store/{id}",
            get(store).delete(admin::delete_store),
        )
        .route("/pd/api/v1/store/{id}/state", post(admin::store_state))
        .route(
            "/pd/api/v1/stores/remove-tombstone",
            delete(admin::remove_tombstones),
        )
        .route(
            "/pd/api/v1/schedulers",
            get(admin::schedulers).post(admin::add_scheduler),
        )
        .route(
            "/pd/api/v1/schedulers/{name}",
            delete(admin::remove_scheduler),
        )
        .route("/pd/api/v1/fault-tolerance", get(admin::fault_tolerance))
        .route("/pd/api/v1/regions", get(regions))
        .route("/pd/api/v1/region/id/{id}", get(region_by_id))
        .route("/pd/api/v1/cluster", get(cluster))
        .route(
            "/pd/api/v1/config",
            get(config_api::show).post(config_api::set),
        )
        .route(
            "/pd/api/v1/config/replicate",
            get(config_api::replicate).post(config_api::set),
        )
        .route(
            "/pd/api/v1/config/schedule",
            get(config_api::schedule).post(config_api::set),
        )
        .route(
            "/pd/api/v1/operators",
            get(operators).post(admin::create_operator),
        )
        .route("/pd/api/v1/operators/{region_id}", get(operator))
        .route("/pd/api/v1/version", get(version))
        .route("/pd/api/v1/status", get(status))
        .route("/pd/api/v2/keyspaces", get(keyspaces).post(create_keyspace))
        .route("/pd/api/v2/keyspaces/{name}", get(keyspace))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(state): AppState, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    state.metrics.observe_http(&route);
    next.run(req).await
}

/// An error answered as PD does: a status code and a JSON string body.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(Value::String(self.1))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NotBootstrapped => StatusCode::INTERNAL_SERVER_ERROR,
            Error::StoreNotFound(_) | Error::RegionNotFound(_) | Error::KeyspaceNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Error::KeyspaceExists(_) => StatusCode::CONFLICT,
            Error::InvalidArgument(_)
            | Error::KeyspaceIdsExhausted
            | Error::StoreTombstone(_)
            | Error::Membership(_) => StatusCode::BAD_REQUEST,
            Error::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

pub(crate) type ApiResult = Result<Json<Value>, ApiError>;

async fn metrics(State(state): AppState) -> impl IntoResponse {
    let (by_state, regions) = {
        let view = state.view();
        let mut counts: Vec<(&str, i64)> = Vec::new();
        for s in view.stores() {
            let name = liveness(&state, &view, s).name();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        (counts, view.regions().len() as i64)
    };
    state.metrics.set_cluster_gauges(&by_state, regions);
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub(crate) fn liveness(state: &Placement, view: &ClusterView, s: &StoreInfo) -> Liveness {
    let o = view.config_override().max_store_down_time_ms;
    let down = if o > 0 {
        Duration::from_millis(o)
    } else {
        state.schedule.max_store_down_time
    };
    s.liveness(now_ms(), state.started_ms, down)
}

/// Stores; `?state=` (repeatable: `0`/`Up`, `1`/`Offline`, `2`/`Tombstone`, or a liveness
/// name such as `Down`) filters them. Without it tombstones are left out, as in PD.
async fn stores(State(state): AppState, Query(query): Query<Vec<(String, String)>>) -> ApiResult {
    let wanted: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "state")
        .map(|(_, v)| v.as_str())
        .collect();
    let view = state.view();
    view.meta()?;
    let now = now_ms();
    let list: Vec<Value> = view
        .stores()
        .filter(|s| admin::state_matches(&wanted, s, liveness(&state, &view, s)))
        .map(|s| {
            let ctx = views::StoreContext {
                regions: view.regions(),
                now_ms: now,
                state_name: liveness(&state, &view, s).name(),
            };
            views::store(s, &ctx)
        })
        .collect();
    Ok(Json(json!({ "count": list.len(), "stores": list })))
}

async fn store(State(state): AppState, Path(id): Path<u64>) -> ApiResult {
    let view = state.view();
    let s = view.store(id)?;
    let ctx = views::StoreContext {
        regions: view.regions(),
        now_ms: now_ms(),
        state_name: liveness(&state, &view, s).name(),
    };
    Ok(Json(views::store(s, &ctx)))
}

async fn regions(State(state): AppState) -> ApiResult {
    let view = state.view();
    view.meta()?;
    Ok(Json(views::regions(view.regions().iter())))
}

async fn region_by_id(State(state): AppState, Path(id): Path<u64>) -> ApiResult {
    let view = state.view();
    view.meta()?;
    let r = view.regions().get(id).ok_or(Error::RegionNotFound(id))?;
    Ok(Json(views::region(r)))
}

async fn cluster(State(state): AppState) -> ApiResult {
    let meta = state.view().meta()?;
    Ok(Json(
        json!({ "id": meta.id, "max_peer_count": meta.max_peer_count }),
    ))
}

/// Running operators; `?kind=leader|region|replica` (repeatable) filters as PD does.
async fn operators(
    State(state): AppState,
    Query(query): Query<Vec<(String, String)>>,
) -> Json<Value> {
    let kinds: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "kind")
        .map(|(_, v)| v.as_str())
        .collect();
    let now = now_ms();
    let list: Vec<Value> = state
        .scheduler
        .lock()
        .operators
        .running()
        .filter(|op| {
            kinds.is_empty()
                || kinds.iter().any(|k| match *k {
                    "leader" => op.kind.leader,
                    "region" | "replica" => op.kind.replica,
                    _ => false,
                })
        })
        .map(|op| views::operator(op, now))
        .collect();
    Json(Value::Array(list))
}

/// The region's running operator, else the last one that ended.
async fn operator(State(state): AppState, Path(region_id): Path<u64>) -> ApiResult {
    let scheduler = state.scheduler.lock();
    let op = scheduler
        .operators
        .latest(region_id)
        .ok_or(Error::RegionNotFound(region_id))?;
    Ok(Json(views::operator(op, now_ms())))
}

async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION }))
}

async fn status(State(state): AppState) -> Json<Value> {
    Json(json!({
        "build_ts": "",
        "version": VERSION,
        "git_hash": "",
        "start_timestamp": state.started_ms / 1000,
        "uptime": views::go_duration(Duration::from_millis(now_ms() - state.started_ms)),
    }))
}

async fn keyspaces(State(state): AppState) -> Json<Value> {
    let list: Vec<Value> = state
        .view()
        .keyspaces()
        .list(0, 0)
        .iter()
        .map(views::keyspace)
        .collect();
    Json(json!({ "keyspaces": list }))
}

async fn keyspace(State(state): AppState, Path(name): Path<String>) -> ApiResult {
    let view = state.view();
    let k = view
        .keyspaces()
        .by_name(&name)
        .ok_or(Error::KeyspaceNotFound(name))?;
    Ok(Json(views::keyspace(k)))
}

#[derive(Deserialize)]
struct CreateKeyspace {
    name: String,
}

async fn create_keyspace(State(state): AppState, Json(body): Json<CreateKeyspace>) -> ApiResult {
    let now = now_secs();
    let meta = state
        .commit(|view| view.plan_create_keyspace(&body.name, now))
        .await?;
    tracing::info!(keyspace = %meta.name, keyspace_id = meta.id, "keyspace created");
    Ok(Json(views::keyspace(&meta)))
}
