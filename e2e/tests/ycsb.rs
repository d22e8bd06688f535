//! go-ycsb (`github.com/pingcap/go-ycsb` v1.0.3, the benchmark TiKV publishes its figures
//! with), built from the module proxy in the wrapper module `e2e/ycsb`, runs the core workloads
//! A-F without a single failed operation:
//!
//! - `ycsb_tikv_raw_and_txn_workloads`: its `tikv` driver in raw and in txn mode against a
//!   playground-shaped cluster (one placement, three stores), with the driver's defaults (128
//!   gRPC connections per store, BatchCommands batches of 128), 8 client threads in raw mode
//!   and 1 in txn mode (see [`threads`]);
//! - `ycsb_etcd_workloads`: its `etcd` driver against a 3-member etcd cluster from Debian's
//!   `etcd-server`, so that benchmarks can compare both with the same tool (workloads A-D and
//!   F: the driver's scan is broken against any etcd, see [`ETCD_SCAN_BUG`]).
//!
//! Each workload is loaded (`go-ycsb load`) and then run (`go-ycsb run`) on its own table with a
//! small record and operation count: a correctness run for CI, not a measurement. go-ycsb
//! prints a `<OP>_ERROR` line for every kind of operation that failed; there must be none. Where
//! Go (or `etcd`) is missing, the tests print SKIPPED with the reason and pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::foreign::{output_text, run_bounded, tool_unavailable};
use e2e::testing::serial;
use e2e::ycsb::WORKLOADS;
use e2e::{with_deadline, ClusterBuilder};

const STEP_LIMIT: Duration = Duration::from_secs(120);
/// Why workload E (short scans) is not run with the etcd driver: go-ycsb 1.0.3's etcd `Scan`
/// reads `[start, +inf)` with a limit and then requires the response's `count` to equal that
/// limit, but etcd's `count` is the number of keys in the whole range, not the number
/// returned, so every scan that does not end exactly at the last key fails, against any etcd.
const ETCD_SCAN_BUG: &str = "go-ycsb 1.0.3's etcd Scan compares etcd's total range count \
                             with its limit and fails against any etcd";
/// Records loaded and operations run per workload.
const RECORDS: &str = "500";
const OPERATIONS: &str = "500";

/// go-ycsb's directory (binary and `workloads`), or `None` after printing SKIPPED where Go is
/// absent.
async fn go_ycsb(test: &str) -> Option<PathBuf> {
    if let Some(reason) = tool_unavailable("go", &["version"]).await {
        e2e::testing::skip(
            test,
            &format!("the Go toolchain is not available ({reason})"),
        );
        return None;
    }
    match e2e::ycsb::build().await {
        Ok(dir) => Some(dir),
        Err(err) => panic!("building go-ycsb failed: {err}"),
    }
}

/// Loads and runs every workload with `driver` and its `props`; fails on any error line.
async fn must_run_workloads(ycsb: &Path, driver: &str, table_prefix: &str, props: &[String]) {
    for w in WORKLOADS {
        if driver == "etcd" && w == "e" {
            println!("== go-ycsb etcd workloade not run: {ETCD_SCAN_BUG}");
            continue;
        }
        let table = format!("{table_prefix}_{w}");
        for phase in ["load", "run"] {
            let mut all = vec![
                format!("recordcount={RECORDS}"),
                format!("operationcount={OPERATIONS}"),
                format!("threadcount={}", threads(driver, props)),
                format!("table={table}"),
            ];
            all.extend_from_slice(props);
            let cmd = e2e::ycsb::command(ycsb, phase, driver, w, &all);
            let what = format!("go-ycsb {phase} {driver} workload{w} ({table_prefix})");
            let out = run_bounded(&what, cmd, STEP_LIMIT)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let text = output_text(&out);
            println!("== {what}\n{}", summary_lines(&text));
            assert!(
                out.status.success(),
                "{what} failed ({}):\n{text}",
                out.status
            );
            let errors: Vec<&str> = text.lines().filter(|l| l.contains("_ERROR")).collect();
            assert!(errors.is_empty(), "{what} had failed operations:\n{text}");
            assert!(
                text.lines()
                    .any(|l| l.contains("Count: ") && !l.contains("Count: 0,")),
                "{what} reported no operations:\n{text}"
            );
        }
    }
}

/// Client threads: 8, but 1 for the tikv driver in txn mode. There, workloads A and F update
/// the same few hundred keys from optimistic transactions (read, then write), and two that
/// overlap rightly abort one with a write conflict, which go-ycsb counts as an error without
/// telling it apart from a real failure. One thread makes every error a real one; conflicts
/// themselves are proven by the Go suite (`TestTxnConflictExactlyOneWins`).
fn threads(driver: &str, props: &[String]) -> usize {
    if driver == "tikv" && props.iter().any(|p| p == "tikv.type=txn") {
        1
    } else {
        8
    }
}

/// go-ycsb's final per-operation lines (`READ - Takes(s): ... Count: ...`).
fn summary_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" - Takes(s):"))
        .collect();
    let start = lines.len().saturating_sub(8);
    lines[start..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ycsb_tikv_raw_and_txn_workloads() {
    e2e::init_test_tracing();
    let Some(ycsb) = go_ycsb("ycsb_tikv_raw_and_txn_workloads").await else {
        return;
    };
    let _serial = serial().await;
    with_deadline(Duration::from_secs(900), async {
        let cluster = ClusterBuilder::default().stores(3).must_start().await;
        cluster.must_settled(3, Duration::from_secs(60)).await;
        e2e::must_serve(&cluster, Duration::from_secs(60)).await;
        let pd = format!("tikv.pd={}", cluster.pd_endpoints().join(","));
        for mode in ["raw", "txn"] {
            let props = [pd.clone(), format!("tikv.type={mode}")];
            must_run_workloads(&ycsb, "tikv", mode, &props).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ycsb_etcd_workloads() {
    e2e::init_test_tracing();
    if let Some(reason) = tool_unavailable("etcd", &["--version"]).await {
        let reason = format!("etcd is not available ({reason}); Debian's etcd-server has it");
        e2e::testing::skip("ycsb_etcd_workloads", &reason);
        return;
    }
    let Some(ycsb) = go_ycsb("ycsb_etcd_workloads").await else {
        return;
    };
    let _serial = serial().await;
    with_deadline(Duration::from_secs(600), async {
        let etcd = e2e::etcd::EtcdCluster::start(3, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let props = [format!("etcd.endpoints={}", etcd.endpoints.join(","))];
        must_run_workloads(&ycsb, "etcd", "etcd", &props).await;
    })
    .await
}
