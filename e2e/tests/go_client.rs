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
//!   resolution after a client dies mid-commit and of an orphaned lock whose primary never
//!   landed, `Iter` over several regions, GC), API V2
//!   clients beside V1 ones, and the calls client-go makes in the background.
//! - `go_client_region_churn` runs `TestChurn` (transfers and raw writes, checked at the end)
//!   while the harness moves leaders off a store, regions split under the load, and a store is
//!   killed and restarted.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::foreign::{cached_build, must_succeed, output_text, run_bounded, tool_unavailable};
use e2e::testing::serial;
use e2e::{must_eventually, must_within, with_deadline, Cluster, ClusterBuilder};
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
        e2e::testing::skip(
            test,
            &format!("the Go toolchain is not available ({reason})"),
        );
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
        .env("FERROKV_STORES", stores(cluster).join(","))
        .env("FERROKV_STORE_STATUS", store_statuses(cluster).join(","));
    cmd
}

fn store_statuses(cluster: &Cluster) -> Vec<String> {
    (0..cluster.store_count())
        .map(|i| cluster.store_status_addr(i))
        .collect()
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
        let cmd = go_command(
            &bin,
            &cluster,
            &["-test.skip=^(TestChurn|TestHelperDieMidCommit)$"],
        );
        let out = run_bounded("the Go client tests", cmd, RUN_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails()));
        let text = output_text(&out);
        eprintln!("{text}");
        assert!(
            out.status.success(),
            "Go client tests failed ({}):\n{text}\n{}",
            out.status,
            cluster.log_tails()
        );
        must_have_passed(
            &text,
            &[
                "TestArticleProgram",
                "TestRawKV",
                "TestTxnOptimistic",
                "TestFollowerRead",
                "TestStaleRead",
                "TestStaleReadMeetsAsyncCommitLock",
            ],
        );
    })
    .await
}

/// Bound on each churn step (an eviction, a split, a store coming back) and on the load
/// making progress after it.
const CHURN_STEP: Duration = Duration::from_secs(90);

/// The Go churn load running as a child process: its output so far and its last PROGRESS line.
struct GoChurn {
    child: tokio::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl GoChurn {
    fn must_spawn(bin: &PathBuf, cluster: &Cluster) -> GoChurn {
        let mut cmd = go_command(bin, cluster, &["-test.run=^TestChurn$"]);
        cmd.env("FERROKV_CHURN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the Go churn test");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(collect_lines(stdout, output.clone()));
        tokio::spawn(collect_lines(stderr, output.clone()));
        GoChurn { child, output }
    }

    fn text(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// (transfers, raw writes) of the last PROGRESS line, or zeros before the first.
    fn progress(&self) -> (u64, u64) {
        let text = self.text();
        let Some(line) = text.lines().rev().find(|l| l.starts_with("PROGRESS ")) else {
            return (0, 0);
        };
        (field(line, "transfers="), field(line, "raw="))
    }

    /// Waits until both loads acknowledged `n` more operations than at the call.
    async fn must_progress(&self, n: u64, after: &str) {
        let (t0, r0) = self.progress();
        let what = format!("the Go load to make {n} transfers and raw writes after {after}");
        must_eventually(&what, CHURN_STEP, || async {
            let (t, r) = self.progress();
            if t >= t0 + n && r >= r0 + n {
                Ok(())
            } else {
                Err(format!("transfers {t0} -> {t}, raw {r0} -> {r}"))
            }
        })
        .await
    }
}

async fn collect_lines(
    pipe: impl tokio::io::AsyncRead + Unpin,
    output: std::sync::Arc<std::sync::Mutex<String>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut out) = output.lock() {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

/// The number after `name` in a PROGRESS line (0 when absent).
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Moves every leader off store `store_id` with placement's evict-leader scheduler, then
/// removes the scheduler.
async fn must_evict_leaders(cluster: &Cluster, store_id: u64) {
    let pd = cluster.pd_endpoint();
    let body = serde_json::json!({"name": "evict-leader-scheduler", "store_id": store_id});
    let resp = reqwest::Client::new()
        .post(format!("http://{pd}/pd/api/v1/schedulers"))
        .json(&body)
        .send()
        .await
        .expect("POST evict-leader-scheduler");
    assert!(
        resp.status().is_success(),
        "add evict-leader: {:?}",
        resp.text().await
    );
    must_eventually("the evicted store leads nothing", CHURN_STEP, || async {
        let regions = cluster.regions().await?;
        match regions
            .iter()
            .filter(|r| e2e::topology::leader_store(r) == Some(store_id))
            .count()
        {
            0 => Ok(()),
            n => Err(format!("store {store_id} still leads {n} regions")),
        }
    })
    .await;
    let url = format!("http://{pd}/pd/api/v1/schedulers/evict-leader-scheduler-{store_id}");
    e2e::pd_api::PdHttp::default()
        .send(reqwest::Method::DELETE, &url)
        .await
        .expect("remove evict-leader");
}

/// Waits until placement reports more than `than` regions.
async fn must_split_beyond(cluster: &Cluster, than: usize) -> usize {
    must_eventually("regions to split under the Go load", CHURN_STEP, || async {
        let n = cluster.regions().await?.len();
        if n > than {
            Ok(n)
        } else {
            Err(format!("{n} regions"))
        }
    })
    .await
}

/// The churn itself: leaders moved off a store, regions split by the load, the store leading
/// the first region killed and restarted; the Go load must progress after each step.
async fn churn(cluster: &mut Cluster, go: &GoChurn) {
    go.must_progress(20, "start").await;
    let ids = cluster.must_store_ids().await;
    let before = cluster.regions().await.map(|r| r.len()).unwrap_or(1);
    must_evict_leaders(cluster, ids[0]).await;
    go.must_progress(20, "evicting the leaders of one store")
        .await;
    let regions = must_split_beyond(cluster, before).await;
    eprintln!("churn: {before} regions -> {regions}");
    go.must_progress(20, "regions split").await;
    let victim = cluster.regions().await.ok().and_then(|rs| {
        rs.iter()
            .filter_map(e2e::topology::leader_store)
            .next()
            .and_then(|s| ids.iter().position(|&id| id == s))
    });
    let victim = victim.unwrap_or(1);
    cluster.kill_store(victim).await.expect("kill a store");
    go.must_progress(20, "a store was killed").await;
    cluster
        .restart_store(victim)
        .await
        .expect("restart the store");
    go.must_progress(20, "the store restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_region_churn() {
    e2e::init_test_tracing();
    let Some(bin) = go_tests("go_client_region_churn").await else {
        return;
    };
    let _serial = serial().await;
    with_deadline(Duration::from_secs(600), async {
        let mut cluster = must_cluster().await;
        let mut go = GoChurn::must_spawn(&bin, &cluster);
        must_eventually("the Go churn load to start", CHURN_STEP, || async {
            match go.text().contains("CHURN READY") {
                true => Ok(()),
                false => Err(go.text()),
            }
        })
        .await;
        churn(&mut cluster, &go).await;
        // Closing stdin ends the load; the Go test then verifies what it wrote.
        if let Some(mut stdin) = go.child.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        let status = must_within(CHURN_STEP, "the Go churn test to finish", go.child.wait())
            .await
            .expect("wait for the Go churn test");
        let text = go.text();
        eprintln!("{text}");
        assert!(
            status.success() && text.contains("CHURN VERIFIED"),
            "the Go churn test failed ({status}):\n{text}\n{}",
            cluster.log_tails()
        );
    })
    .await
}
