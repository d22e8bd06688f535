//! The official Go client, `github.com/tikv/client-go/v2`, unchanged, against a cluster of 3
//! placement members and 3 stores (regions replicated three ways, split small so that
//! transactions and scans cross regions).
//!
//! The Go tests live in `e2e/go` (a Go module). Their test binary is built once per source hash
//! with `go test -c` into the client cache (see `e2e::foreign`) and run with the cluster's
//! endpoints in `FERROKV_PD` and `FERROKV_STORES`. Where `go` is missing the tests print
//! SKIPPED with the reason and pass.
//!
//! - `go_client_suite` runs every Go test but the churn one: the article's program, rawkv,
//!   txnkv (optimistic, pessimistic, conflicts, snapshot isolation, each commit protocol, lock
//!   resolution after a client dies mid-commit, `Iter` over several regions, GC), API V2
//!   clients beside V1 ones, and the calls client-go makes in the background.
//! - `go_client_region_churn` runs `TestChurn` (transfers and raw writes, checked at the end)
//!   while the harness moves leaders off a store, regions split under the load, and a store is
//!   killed and restarted.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::foreign::{cached_build, must_succeed, run_bounded, tool_unavailable};
use e2e::testing::serial;
use e2e::{with_deadline, Cluster, ClusterBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Small regions (64 KiB or 2000 keys, checked twice a second): the tests' data spans several.
const STORE_CONFIG: &str = "[raftstore]\nregion-max-size = 65536\nregion-max-keys = 2000\n\
                            split-check-interval-ms = 500\n";
/// Building client-go and its dependencies from scratch takes minutes on two cores.
const BUILD_LIMIT: Duration = Duration::from_secs(1800);
/// Go's own bound on the whole test binary run (it panics with every goroutine's stack).
const GO_TEST_TIMEOUT: &str = "6m";
const RUN_LIMIT: Duration = Duration::from_secs(420);

/// The Go test binary, or `None` (after printing SKIPPED and why) where Go is absent.
async fn go_tests(test: &str) -> Option<PathBuf> {
    if let Some(reason) = tool_unavailable("go", &["version"]).await {
        eprintln!("SKIPPED {test}: the Go toolchain is not available ({reason}); scripts/setup.sh installs it");
        return None;
    }
    let built = cached_build("go", "clients.test", |dir, out| async move {
        let mut go = Command::new("go");
        go.current_dir(&dir)
            .arg("test")
            .arg("-c")
            .arg("-o")
            .arg(&out)
            .arg(".");
        must_succeed("go test -c (e2e/go)", go, BUILD_LIMIT).await
    })
    .await;
    match built {
        Ok(path) => Some(path),
        Err(err) => panic!("building the Go client tests failed: {err}"),
    }
}

/// A cluster of 3 placement members and 3 stores with small regions, settled and serving.
async fn must_cluster() -> Cluster {
    let cluster = ClusterBuilder::default()
        .placements(3)
        .stores(3)
        .store_config(STORE_CONFIG)
        .must_start()
        .await;
    cluster.must_settled(3, Duration::from_secs(60)).await;
    e2e::must_serve(&cluster, Duration::from_secs(60)).await;
    cluster
}

/// The Go test binary's command with the cluster's endpoints.
fn go_command(bin: &PathBuf, cluster: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(e2e::foreign::project_dir("go"))
        .arg("-test.v")
        .arg(format!("-test.timeout={GO_TEST_TIMEOUT}"))
        .args(args)
        .env("FERROKV_PD", cluster.pd_endpoints().join(","))
        .env("FERROKV_STORES", stores(cluster).join(","));
    cmd
}

fn stores(cluster: &Cluster) -> Vec<String> {
    (0..cluster.store_count())
        .map(|i| cluster.store_addr(i))
        .collect()
}

/// Fails unless every test named in `expect` passed and none skipped.
fn must_have_passed(output: &str, expect: &[&str]) {
    for name in expect {
        assert!(
            output.contains(&format!("--- PASS: {name} ")),
            "Go test {name} did not pass:\n{output}"
        );
    }
    assert!(
        !output.contains("--- SKIP"),
        "a Go test skipped against a running cluster:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_suite() {
    e2e::init_test_tracing();
    let Some(bin) = go_tests("go_client_suite").await else {
        return;
    };
    let _serial = serial().await;
    with_deadline(Duration::from_secs(600), async {
        let cluster = must_cluster().await;
        let cmd = go_command(&bin, &cluster, &["-test.skip=^TestChurn$"]);
        let out = run_bounded("the Go client tests", cmd, RUN_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails()));
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{text}");
        assert!(
            out.status.success(),
            "Go client tests failed ({}):\n{text}\n{}",
            out.status,
            cluster.log_tails()
        );
        must_have_passed(
            &text,
            &["TestArticleProgram", "TestRawKV", "TestTxnOptimistic"],
        );
    })
    .await
}
