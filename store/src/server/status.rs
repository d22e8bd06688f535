//! The status HTTP server: Prometheus `/metrics`, `/health` and `/status`
//! (store id, replica and leader counts, and the ids of the regions it leads);
//! and, only when `debug.fault-injection` is on, `/debug/raft/filters` to
//! cut this store's outgoing raft traffic to chosen stores (for partition
//! tests against real processes): `POST ?block=2,3`, `DELETE`, `GET`; and
//! `POST /debug/engine/fail-writes`, after which every engine write fails
//! as on a full disk (for fail-stop tests); and `POST
//! /debug/engine/sync-delay/{ms}`, after which every synced write (the raft
//! log's) first waits `ms` milliseconds, as on a slow disk (0 ends it); and `POST
//! /debug/clock-offset/{ms}`, which steps the store's wall clock (`crate::clock`: raw TTLs, the
//! heartbeat's start time) by `ms` milliseconds either way (0 ends it).

use std::sync::Arc;

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::raftstore::transport::{BlockStores, Filter, Filters};
use crate::raftstore::StoreMeta;

/// Serves the status port on `listener` until `stop` fires; the debug routes only
/// when `debug` carries the fault-injection handles.
pub async fn serve(
    listener: TcpListener,
    meta: Arc<RwLock<StoreMeta>>,
    debug: Option<(Filters, crate::engine::Engine)>,
    stop: oneshot::Receiver<()>,
) {
    let app = Router::new()
        .route("/metrics", get(|| async { super::metrics::render() }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/status",
            get(move || {
                let body = status_json(&meta.read());
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        );
    let app = match debug {
        Some((filters, engine)) => with_debug_routes(app, filters, engine),
        None => app,
    };
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stop.await;
    });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "status server failed");
    }
}

/// `/status`: the store id, its replica and leader counts and the regions it leads.
fn status_json(m: &StoreMeta) -> String {
    let mut leaders: Vec<u64> = m
        .regions
        .iter()
        .filter(|(_, r)| r.is_leader)
        .map(|(&id, _)| id)
        .collect();
    leaders.sort_unstable();
    let list: Vec<String> = leaders.iter().map(u64::to_string).collect();
    format!(
        "{{\"store_id\":{},\"region_count\":{},\"leader_count\":{},\"leader_regions\":[{}]}}",
        m.store_id,
        m.regions.len(),
        leaders.len(),
        list.join(",")
    )
}

/// The fault-injection routes: wall clock, slow and failing disk, raft filters.
fn with_debug_routes(app: Router, f: Filters, engine: crate::engine::Engine) -> Router {
    app.route(
        "/debug/clock-offset/{ms}",
        axum::routing::post(|Path(ms): Path<String>| async move {
            match parse_clock_offset(&ms) {
                Ok(offset) => {
                    tracing::warn!(offset_ms = offset, "fault injection: wall clock offset");
                    crate::clock::set_offset_ms(offset);
                    (StatusCode::OK, format!("clock offset {offset} ms"))
                }
                Err(e) => (StatusCode::BAD_REQUEST, e),
            }
        }),
    )
    .route(
        "/debug/engine/sync-delay/{ms}",
        axum::routing::post({
            let engine = engine.clone();
            move |Path(ms): Path<String>| async move { sync_delay(&engine, &ms) }
        }),
    )
    .route(
        "/debug/engine/fail-writes",
        axum::routing::post(move || {
            tracing::warn!("fault injection: every engine write fails from now on");
            engine.inject_write_failure(true);
            async { "engine writes fail" }
        }),
    )
    .route(
        "/debug/raft/filters",
        get({
            let f = f.clone();
            move || async move { f.describe().join("\n") }
        })
        .delete({
            let f = f.clone();
            move || async move {
                f.clear();
                "cleared"
            }
        })
        .post(move |q: Query<HashMap<String, String>>| async move { add_block(&f, &q) }),
    )
}

fn add_block(filters: &Filters, q: &HashMap<String, String>) -> (StatusCode, String) {
    let Some(list) = q.get("block") else {
        return (StatusCode::BAD_REQUEST, "missing ?block=<store ids>".into());
    };
    let ids: Result<HashSet<u64>, _> = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect();
    match ids {
        Ok(ids) => {
            let f = BlockStores(ids);
            let text = f.describe();
            tracing::warn!(filter = %text, "fault injection: raft filter added");
            filters.add(Box::new(f));
            (StatusCode::OK, text)
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("bad store id list: {e}")),
    }
}

fn sync_delay(engine: &crate::engine::Engine, ms: &str) -> (StatusCode, String) {
    match ms.parse::<u64>() {
        Ok(ms) if ms <= MAX_SYNC_DELAY_MS => {
            tracing::warn!(ms, "fault injection: every synced engine write waits first");
            engine.inject_sync_delay(ms);
            (StatusCode::OK, format!("synced writes wait {ms} ms"))
        }
        Ok(ms) => (
            StatusCode::BAD_REQUEST,
            format!("sync delay {ms} ms is over the {MAX_SYNC_DELAY_MS} ms limit"),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("bad sync delay {ms:?}: {e} (milliseconds expected)"),
        ),
    }
}

/// A wall-clock step of `ms` milliseconds, within a day either way.
fn parse_clock_offset(ms: &str) -> Result<i64, String> {
    match ms.parse::<i64>() {
        Ok(ms) if ms.unsigned_abs() <= MAX_CLOCK_OFFSET_MS => Ok(ms),
        Ok(ms) => Err(format!(
            "clock offset {ms} ms is beyond the {MAX_CLOCK_OFFSET_MS} ms limit either way"
        )),
        Err(e) => Err(format!(
            "bad clock offset {ms:?}: {e} (whole milliseconds expected)"
        )),
    }
}

const MAX_CLOCK_OFFSET_MS: u64 = 86_400_000;

/// Longer waits would only stall the store; a minute already outlasts every lease.
const MAX_SYNC_DELAY_MS: u64 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_delay_must_be_whole_milliseconds_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::Engine::open(dir.path()).unwrap();
        assert_eq!(sync_delay(&engine, "250").0, StatusCode::OK);
        assert_eq!(sync_delay(&engine, "0").0, StatusCode::OK);
        for bad in ["-5", "1.5", "soon", "60001"] {
            let (code, text) = sync_delay(&engine, bad);
            assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {text}");
            assert!(text.contains(bad), "the answer names the bad value: {text}");
        }
    }

    #[test]
    fn a_clock_offset_is_whole_milliseconds_within_a_day_either_way() {
        assert_eq!(parse_clock_offset("60000"), Ok(60_000));
        assert_eq!(parse_clock_offset("-3000"), Ok(-3_000));
        assert_eq!(parse_clock_offset("0"), Ok(0));
        for bad in ["1.5", "later", "86400001", "-86400001"] {
            let text = parse_clock_offset(bad).expect_err(bad);
            assert!(text.contains(bad), "the answer names the bad value: {text}");
        }
    }
}
