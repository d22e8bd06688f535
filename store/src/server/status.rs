//! The status HTTP server: Prometheus `/metrics`, `/health` and `/status`.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::raftstore::StoreMeta;

pub async fn serve(
    listener: TcpListener,
    meta: Arc<RwLock<StoreMeta>>,
    stop: oneshot::Receiver<()>,
) {
    let status_meta = meta.clone();
    let app = Router::new()
        .route("/metrics", get(|| async { super::metrics::render() }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/status",
            get(move || {
                let m = status_meta.read();
                let leaders = m.regions.values().filter(|r| r.is_leader).count();
                let body = format!(
                    "{{\"store_id\":{},\"region_count\":{},\"leader_count\":{}}}",
                    m.store_id,
                    m.regions.len(),
                    leaders
                );
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        );
    let served = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stop.await;
    });
    if let Err(e) = served.await {
        tracing::error!(error = %e, "status server failed");
    }
}
