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

/// An integer counter named `name`.
fn counter(name: &str, help: &str) -> IntCounter {
    must(IntCounter::new(name, help))
}

/// An integer counter family named `name`, split by `labels`.
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    must(IntCounterVec::new(Opts::new(name, help), labels))
}

/// The gRPC latency histogram, by method.
fn rpc_latency_histogram() -> HistogramVec {
    must(HistogramVec::new(
        HistogramOpts::new("placement_grpc_request_duration_seconds", "gRPC latency")
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("buckets")),
        &["method"],
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Registry::new(),
            rpc_total: counter_vec(
                "placement_grpc_requests_total",
                "gRPC requests by method and outcome",
                &["method", "result"],
            ),
            rpc_seconds: rpc_latency_histogram(),
            http_total: counter_vec(
                "placement_http_requests_total",
                "HTTP API requests by route",
                &["route"],
            ),
            tso_requests: counter("placement_tso_requests_total", "TSO batches served"),
            tso_timestamps: counter("placement_tso_timestamps_total", "timestamps handed out"),
            region_heartbeats: counter_vec(
                "placement_region_heartbeats_total",
                "region heartbeats by outcome",
                &["result"],
            ),
            operators: counter_vec(
                "placement_schedule_operators_total",
                "operators by type and event (create, finish, timeout, cancel)",
                &["type", "event"],
            ),
            checker_events: counter_vec(
                "placement_schedule_checker_events_total",
                "checker findings by checker and event",
                &["checker", "event"],
            ),
            topology_label_updates: counter(
                "placement_topology_label_updates_total",
                "store label sets changed from Kubernetes topology",
            ),
            topology_lookups: counter_vec(
                "placement_topology_lookups_total",
                "store topology lookups by result (ok, not_found, error)",
                &["result"],
            ),
            stores: must(IntGaugeVec::new(
                Opts::new("placement_stores", "stores by state"),
                &["state"],
            )),
            regions: must(IntGauge::new("placement_regions", "known regions")),
        };
        metrics.register_all();
        metrics
    }

    /// Registers every metric with this server's own registry.
    fn register_all(&self) {
        for c in [
            Box::new(self.rpc_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.rpc_seconds.clone()),
            Box::new(self.http_total.clone()),
            Box::new(self.tso_requests.clone()),
            Box::new(self.tso_timestamps.clone()),
            Box::new(self.region_heartbeats.clone()),
            Box::new(self.operators.clone()),
            Box::new(self.checker_events.clone()),
            Box::new(self.topology_label_updates.clone()),
            Box::new(self.topology_lookups.clone()),
            Box::new(self.stores.clone()),
            Box::new(self.regions.clone()),
        ] {
            must(self.registry.register(c));
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
