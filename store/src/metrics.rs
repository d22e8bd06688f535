//! Prometheus metrics of the store, served on the status port. Every layer
//! records into one registry; only the status server exposes it.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Requests handled, by gRPC method and outcome.
pub static GRPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("store_grpc_requests_total", "gRPC requests handled"),
        &["method", "result"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("register once");
    c
});

/// Request latency, by gRPC method.
pub static GRPC_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        HistogramOpts::new("store_grpc_duration_seconds", "gRPC request latency")
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("valid buckets")),
        &["method"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("register once");
    h
});

/// Raft snapshots built for other stores and installed from them.
pub static SNAPSHOTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("store_raft_snapshots_total", "raft snapshots by direction"),
        &["direction"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("register once");
    c
});

/// Reads this store served as a follower or learner (`replica_read`), by outcome.
pub static REPLICA_READS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "store_replica_reads_total",
            "reads served by a follower or learner replica after a read index round",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("register once");
    c
});

/// Raft messages from other stores dropped because the raftstore inbox was full.
pub static RAFT_MESSAGES_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new(
        "store_raft_messages_dropped_total",
        "incoming raft messages dropped on a full raftstore inbox",
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("register once");
    c
});

pub fn observe(method: &str, ok: bool, secs: f64) {
    GRPC_REQUESTS
        .with_label_values(&[method, if ok { "ok" } else { "error" }])
        .inc();
    GRPC_DURATION.with_label_values(&[method]).observe(secs);
}

/// The text exposition of every metric.
pub fn render() -> String {
    LazyLock::force(&GRPC_REQUESTS);
    LazyLock::force(&GRPC_DURATION);
    LazyLock::force(&SNAPSHOTS);
    LazyLock::force(&RAFT_MESSAGES_DROPPED);
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&REGISTRY.gather(), &mut out) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

/// How full the data directory's disk is: 0 normal, 1 almost full (writes adding data
/// refused), 2 already full; and the bytes available to the store.
pub static DISK_USAGE: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    let g = prometheus::IntGaugeVec::new(
        Opts::new(
            "store_disk",
            "disk of the data directory: usage level (0 normal, 1 almost full, 2 already full) and available bytes",
        ),
        &["type"],
    )
    .expect("valid metric");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("register once");
    g
});
