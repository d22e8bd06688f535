//! Fault injection over HTTP, served only with `[debug] fault-injection = true`:
//! `POST /debug/fail/meta-write` makes every later write of the metadata engine fail (as a
//! full disk would), `POST /debug/fail/raft-panic` makes the raft thread panic. Either way the
//! member must stop ([`crate::writer`]), which is what the tests watch for.

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
