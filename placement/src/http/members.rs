//! Members of the placement group, PD's shapes: `GET /pd/api/v1/{members, leader, health}`,
//! `POST /pd/api/v1/leader/transfer/{name}`, `POST /pd/api/v1/leader/resign` and
//! `DELETE /pd/api/v1/members/name/{name}`. `members` and `leader` are answered by every
//! member; the rest is forwarded to the leader by [`crate::gate`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::views;
use super::{ApiError, ApiResult};
use crate::error::Error;
use crate::state::Placement;

type AppState = State<Arc<Placement>>;

/// A member not heard from for this long is reported unhealthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(3);

pub(super) async fn health(State(state): AppState) -> Json<Value> {
    let list: Vec<Value> = state
        .members()
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "member_id": m.member_id,
                "client_urls": m.client_urls,
                "health": state.member.is_healthy(m.member_id, HEALTHY_WITHIN),
            })
        })
        .collect();
    Json(Value::Array(list))
}

pub(super) async fn members(State(state): AppState) -> Json<Value> {
    let members: Vec<Value> = state.members().iter().map(views::member).collect();
    let leader = state
        .leader_member()
        .map_or(Value::Null, |m| views::member(&m));
    Json(json!({
        "header": { "cluster_id": state.cluster_id },
        "members": members,
        "leader": leader.clone(),
        "etcd_leader": leader,
    }))
}

pub(super) async fn leader(State(state): AppState) -> Result<Json<Value>, ApiError> {
    match state.leader_member() {
        Some(m) => Ok(Json(views::member(&m))),
        None => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no placement leader elected yet".into(),
        )),
    }
}

/// Hands leadership to the named member and waits (up to 10 s) until it leads.
pub(super) async fn transfer(State(state): AppState, Path(name): Path<String>) -> ApiResult {
    let target = state
        .member
        .member_by_name(&name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("member `{name}` not found")))?;
    if !state.member.is_voter(target.id) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("`{name}` is not a member of the group"),
        ));
    }
    if target.id == state.member_id {
        return Ok(Json(Value::String("already the leader".into())));
    }
    hand_over(&state, Some(target.id)).await
}

/// Gives up leadership to the most suitable other member.
pub(super) async fn resign(State(state): AppState) -> ApiResult {
    hand_over(&state, None).await
}

async fn hand_over(state: &Placement, to: Option<u64>) -> ApiResult {
    let candidates: Vec<u64> = match to {
        Some(id) => vec![id],
        None => state
            .member
            .voters()
            .into_iter()
            .filter(|id| *id != state.member_id && state.member.is_healthy(*id, HEALTHY_WITHIN))
            .collect(),
    };
    let Some(&first) = candidates.first() else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "no other healthy member to take over".into(),
        ));
    };
    state.writer.transfer_leader(first)?;
    let moved = |m: &crate::member::Shared| m.leader_id() == first;
    if state.member.wait_for(Duration::from_secs(10), moved).await {
        return Ok(Json(Value::String(
            "The transfer command is submitted.".into(),
        )));
    }
    Err(ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "leadership did not move within 10s".into(),
    ))
}

/// Removes a member from the group. The leader cannot remove itself: transfer first.
pub(super) async fn delete_by_name(State(state): AppState, Path(name): Path<String>) -> ApiResult {
    let Some(target) = state.member.member_by_name(&name) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("member `{name}` not found"),
        ));
    };
    if !state.member.is_voter(target.id) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("`{name}` is not a member of the group"),
        ));
    }
    if target.id == state.member_id {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("`{name}` is the leader; transfer leadership (POST /pd/api/v1/leader/transfer/{{name}}) before removing it"),
        ));
    }
    if state.member.voters().len() <= 1 {
        return Err(Error::Membership("cannot remove the last member".into()).into());
    }
    state.writer.remove_member(target).await?;
    tracing::info!(%name, "placement member removed");
    Ok(Json(Value::String(format!("removed, name: {name}"))))
}
