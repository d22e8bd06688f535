//! The operator's own HTTP endpoints: `/healthz` (the process serves), `/readyz` (the
//! controller runs: this replica holds the lease, or leader election is off) and `/metrics`
//! (Prometheus text).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// Counters the controller updates and `/metrics` serves.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconcile passes by outcome (`ok`, `error`).
    pub reconciles: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "tikv_operator_reconciles_total",
                "Reconcile passes by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(reconciles.clone()))
            .expect("registered once");
        Metrics {
            registry,
            reconciles,
        }
    }
}

/// Shared between the server and the controller.
#[derive(Clone, Default)]
pub struct Health {
    pub ready: Arc<AtomicBool>,
    pub metrics: Metrics,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not leading")
    }
}

async fn metrics(State(h): State<Health>) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&h.metrics.registry.gather(), &mut buf)
        .expect("text encoding of gathered metrics");
    String::from_utf8(buf).expect("prometheus text is UTF-8")
}

/// Serves the endpoints on `addr` until the process exits.
pub async fn serve(addr: SocketAddr, health: Health) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(health)).await
}
