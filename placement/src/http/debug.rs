//! Fault injection over HTTP, served only with `[debug] fault-injection = true`:
//! `POST /debug/fail/meta-write` makes every later write of the metadata engine fail (as a
//! full disk would), `POST /debug/fail/raft-panic` makes the raft thread panic. Either way the
//! member must stop ([`crate::writer`]), which is what the tests watch for.
//! `POST /debug/clock-offset/{ms}` shifts the wall clock the timestamp oracle reads by `ms`
//! milliseconds (negative: behind; 0 undoes it), as a skewed or jumping clock would.
//! `POST /debug/hold-joint` keeps every region an operator put in a joint state there (no
//! leave command is sent) until `DELETE /debug/hold-joint`: the window a replica move's
//! fault tolerance is tested in.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::{ApiError, ApiResult};
use crate::state::Placement;

pub(super) async fn fail(
    State(state): State<Arc<Placement>>,
    Path(what): Path<String>,
) -> ApiResult {
    match what.as_str() {
        "meta-write" => state.faults.fail_writes_after(0),
        "raft-panic" => state.faults.panic_raft_thread(),
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("unknown fault `{other}` (meta-write, raft-panic)"),
            ))
        }
    }
    tracing::warn!(fault = %what, "fault injected");
    Ok(Json(Value::String(format!("injected {what}"))))
}

pub(super) async fn clock_offset(Path(ms): Path<String>) -> ApiResult {
    let offset: i64 = ms.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("clock offset `{ms}` is not a whole number of milliseconds"),
        )
    })?;
    crate::tso::set_clock_offset_ms(offset);
    tracing::warn!(offset_ms = offset, "clock offset injected");
    Ok(Json(Value::String(format!("clock offset {offset} ms"))))
}

pub(super) async fn hold_joint(State(state): State<Arc<Placement>>) -> ApiResult {
    state.scheduler.lock().operators.hold_joint = true;
    tracing::warn!("fault injection: operators hold regions in their joint states");
    Ok(Json(Value::String("joint states held".into())))
}

pub(super) async fn release_joint(State(state): State<Arc<Placement>>) -> ApiResult {
    state.scheduler.lock().operators.hold_joint = false;
    tracing::warn!("fault injection: joint states released");
    Ok(Json(Value::String("joint states released".into())))
}
