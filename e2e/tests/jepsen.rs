//! The fault suite's short form, as CI runs it: one cluster of 3 placement members and 5 stores,
//! each in a network namespace of its own, every workload running through the official client
//! while every fault strikes once (kills, pauses, partitions, one-way loss, leader moves). The
//! histories must pass every checker: Porcupine for the registers, the Elle-style checker for
//! the list-append transactions, bank totals, monotonic timestamps, no acknowledged write lost.
//!
//! The seed comes from `FERROKV_JEPSEN_SEED`, else the clock; a failing run prints it with the
//! results directory and the one-line reproducer. Where network namespaces cannot be made (not
//! root) the test says SKIPPED with the reason.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::suite::nemesis::Fault;
use e2e::suite::{self, table, RunConfig};
use e2e::testing::serial;
use e2e::with_deadline;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_strikes_once_and_every_history_checks_clean() {
    e2e::init_test_tracing();
    if let Some(reason) = suite::skip_reason() {
        e2e::testing::skip(
            "every_fault_strikes_once_and_every_history_checks_clean",
            &reason,
        );
        return;
    }
    let _serial = serial().await;
    let seed = std::env::var("FERROKV_JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    let config = RunConfig {
        seed,
        seconds: None,
        results: std::env::temp_dir().join("ferrokv-jepsen"),
        reproducer: "FERROKV_JEPSEN_SEED={seed} cargo test -p e2e --test jepsen".to_owned(),
        client_crashes: true,
    };
    eprintln!("fault suite seed {seed}");
    let report = with_deadline(Duration::from_secs(900), suite::run(&config))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the run could not be made: {e}"));
    let text = table::render(std::slice::from_ref(&report));
    eprintln!("{text}");
    // Asserted whole: no anomaly, no acknowledged write lost, nothing that kept the run from
    // being judged (a final read that never answered, a checker that could not run).
    assert!(report.is_clean(), "seed {seed}:\n{text}\n{report:#?}");
    for fault in Fault::ALL {
        assert_eq!(
            report.faults.get(fault.name()),
            Some(&1),
            "seed {seed}: {} was not injected once:\n{text}",
            fault.name()
        );
    }
    assert!(
        report.skipped.is_empty() || !e2e::testing::tools_required(),
        "seed {seed}: a checker did not run: {:?}",
        report.skipped
    );
    for (workload, counts) in &report.ops {
        assert!(
            counts.ok > 0,
            "seed {seed}: no {workload} operation succeeded:\n{text}"
        );
    }
}
