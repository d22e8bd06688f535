//! Prometheus metrics of one placement instance ([`Metrics`]), served as text on `/metrics`.
//!
//! Each server owns its own registry, so several in-process servers (tests) do not collide.
//! RPCs are counted and timed per method with the outcome as a label (`ok`, a `pdpb.ErrorType`
//! name for header errors, or `grpc_error`); store and region gauges are refreshed from the
//! cluster view when scraped.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metrics of one placement server.
pub struct Metrics {
    registry: Registry,
    rpc_total: IntCounterVec,
    rpc_seconds: HistogramVec,
    http_total: IntCounterVec,
    /// TSO stream requests (batches).
    pub tso_requests: IntCounter,
    /// Timestamps handed out (sum of batch counts).
    pub tso_timestamps: IntCounter,
    /// Region heartbeats by outcome.
    pub region_heartbeats: IntCounterVec,
    /// Operators by type (PD's description) and event (create, finish, timeout, cancel).
    pub operators: IntCounterVec,
    /// Checker findings by checker and event: `replica`, `isolation-level-blocked` for a region
    /// left under-replicated because every candidate store would break `isolation-level`,
    /// `no-target-store` when no store at all can take its missing replica.
    pub checker_events: IntCounterVec,
    /// Store label sets changed from Kubernetes topology ([`crate::topology`]).
    pub topology_label_updates: IntCounter,
    topology_lookups: IntCounterVec,
    stores: IntGaugeVec,
    regions: IntGauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure is a programming error caught by every test.
    r.expect("valid metric definition")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let rpc_total = must(IntCounterVec::new(
            Opts::new(
                "placement_grpc_requests_total",
                "gRPC requests by method and outcome",
            ),
            &["method", "result"],
        ));
        let rpc_seconds = must(HistogramVec::new(
            HistogramOpts::new("placement_grpc_request_duration_seconds", "gRPC latency")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("buckets")),
            &["method"],
        ));
        let http_total = must(IntCounterVec::new(
            Opts::new(
                "placement_http_requests_total",
                "HTTP API requests by route",
            ),
            &["route"],
        ));
        let tso_requests = must(IntCounter::new(
            "placement_tso_requests_total",
            "TSO batches served",
        ));
        let tso_timestamps = must(IntCounter::new(
            "placement_tso_timestamps_total",
            "timestamps handed out",
        ));
        let region_heartbeats = must(IntCounterVec::new(
            Opts::new(
                "placement_region_heartbeats_total",
                "region heartbeats by outcome",
            ),
            &["result"],
        ));
        let operators = must(IntCounterVec::new(
            Opts::new(
                "placement_schedule_operators_total",
                "operators by type and event (create, finish, timeout, cancel)",
            ),
            &["type", "event"],
        ));
        let checker_events = must(IntCounterVec::new(
            Opts::new(
                "placement_schedule_checker_events_total",
                "checker findings by checker and event",
            ),
            &["checker", "event"],
        ));
        let topology_label_updates = must(IntCounter::new(
            "placement_topology_label_updates_total",
            "store label sets changed from Kubernetes topology",
        ));
        let topology_lookups = must(IntCounterVec::new(
            Opts::new(
                "placement_topology_lookups_total",
                "store topology lookups by result (ok, not_found, error)",
            ),
            &["result"],
        ));
        let stores = must(IntGaugeVec::new(
            Opts::new("placement_stores", "stores by state"),
            &["state"],
        ));
        let regions = must(IntGauge::new("placement_regions", "known regions"));
        for c in [
            Box::new(rpc_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rpc_seconds.clone()),
            Box::new(http_total.clone()),
            Box::new(tso_requests.clone()),
            Box::new(tso_timestamps.clone()),
            Box::new(region_heartbeats.clone()),
            Box::new(operators.clone()),
            Box::new(checker_events.clone()),
            Box::new(topology_label_updates.clone()),
            Box::new(topology_lookups.clone()),
            Box::new(stores.clone()),
            Box::new(regions.clone()),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            rpc_total,
            rpc_seconds,
            http_total,
            tso_requests,
            tso_timestamps,
            region_heartbeats,
            operators,
            checker_events,
            topology_label_updates,
            topology_lookups,
            stores,
            regions,
        }
    }

    /// Records one finished RPC.
    pub fn observe_rpc(&self, method: &str, result: &str, elapsed: Duration) {
        self.rpc_total.with_label_values(&[method, result]).inc();
        self.rpc_seconds
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one HTTP API request.
    pub fn observe_http(&self, route: &str) {
        self.http_total.with_label_values(&[route]).inc();
    }

    /// Records one store topology lookup: `ok`, `not_found` or `error`.
    pub fn topology_lookup(&self, result: &str) {
        self.topology_lookups.with_label_values(&[result]).inc();
    }

    /// Topology lookups with `result` so far.
    pub fn topology_lookups(&self, result: &str) -> u64 {
        self.topology_lookups.with_label_values(&[result]).get()
    }

    /// Sets the store and region gauges.
    pub fn set_cluster_gauges(&self, stores_by_state: &[(&str, i64)], regions: i64) {
        self.stores.reset();
        for (state, n) in stores_by_state {
            self.stores.with_label_values(&[state]).set(*n);
        }
        self.regions.set(regions);
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_observed_values() {
        let m = Metrics::new();
        m.observe_rpc("GetRegion", "ok", Duration::from_millis(2));
        m.tso_timestamps.inc_by(5);
        m.set_cluster_gauges(&[("Up", 3)], 7);
        m.operators
            .with_label_values(&["make-up-replica", "create"])
            .inc();
        m.checker_events
            .with_label_values(&["replica", "isolation-level-blocked"])
            .inc();
        let text = m.render();
        assert!(text.contains(r#"placement_grpc_requests_total{method="GetRegion",result="ok"} 1"#));
        assert!(text.contains("placement_grpc_request_duration_seconds_bucket"));
        assert!(text.contains("placement_tso_timestamps_total 5"));
        assert!(text.contains(r#"placement_stores{state="Up"} 3"#));
        assert!(text.contains("placement_regions 7"));
        assert!(text.contains(
            r#"placement_schedule_operators_total{event="create",type="make-up-replica"} 1"#
        ));
        assert!(text.contains(
            r#"placement_schedule_checker_events_total{checker="replica",event="isolation-level-blocked"} 1"#
        ));
    }
}
