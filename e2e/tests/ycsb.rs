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

use e2e::foreign::{cached_build, must_succeed, output_text, run_bounded, tool_unavailable};
use e2e::ports::free_port;
use e2e::testing::serial;
use e2e::{must_eventually, with_deadline, ClusterBuilder};
use tokio::process::{Child, Command};

const BUILD_LIMIT: Duration = Duration::from_secs(2400);
const STEP_LIMIT: Duration = Duration::from_secs(120);
const WORKLOADS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
/// Why workload E (short scans) is not run with the etcd driver: go-ycsb 1.0.3's etcd `Scan`
/// reads `[start, +inf)` with a limit and then requires the response's `count` to equal that
/// limit, but etcd's `count` is the number of keys in the whole range, not the number
/// returned, so every scan that does not end exactly at the last key fails, against any etcd.
const ETCD_SCAN_BUG: &str = "go-ycsb 1.0.3's etcd Scan compares etcd's total range count \
                             with its limit and fails against any etcd";
/// Records loaded and operations run per workload.
const RECORDS: &str = "500";
const OPERATIONS: &str = "500";

/// go-ycsb's binary and its `workloads` directory (copied from the module), or `None` after
/// printing SKIPPED where Go is absent.
async fn go_ycsb(test: &str) -> Option<PathBuf> {
    if let Some(reason) = tool_unavailable("go", &["version"]).await {
        e2e::testing::skip(
            test,
            &format!("the Go toolchain is not available ({reason})"),
        );
        return None;
    }
    let built = cached_build("ycsb", "go-ycsb", |dir, out| async move {
        std::fs::create_dir_all(&out).map_err(|e| e2e::Error::Command {
            command: format!("mkdir {}", out.display()),
            reason: e.to_string(),
        })?;
        let mut go = Command::new("go");
        go.current_dir(&dir)
            .args(["build", "-o"])
            .arg(out.join("go-ycsb"))
            .arg("github.com/pingcap/go-ycsb/cmd/go-ycsb");
        must_succeed("go build go-ycsb (e2e/ycsb)", go, BUILD_LIMIT).await?;
        let mut list = Command::new("go");
        list.current_dir(&dir)
            .args(["list", "-m", "-f", "{{.Dir}}", "github.com/pingcap/go-ycsb"]);
        let module = run_bounded("go list -m go-ycsb", list, STEP_LIMIT).await?;
        let module = PathBuf::from(String::from_utf8_lossy(&module.stdout).trim());
        copy_workloads(&module.join("workloads"), &out.join("workloads"))
    })
    .await;
    match built {
        Ok(dir) => Some(dir),
        Err(err) => panic!("building go-ycsb failed: {err}"),
    }
}

fn copy_workloads(from: &Path, to: &Path) -> e2e::Result<()> {
    let fail = |e: std::io::Error| e2e::Error::Command {
        command: format!("copy {} to {}", from.display(), to.display()),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(to).map_err(fail)?;
    for w in WORKLOADS {
        let name = format!("workload{w}");
        std::fs::copy(from.join(&name), to.join(&name)).map_err(fail)?;
    }
    Ok(())
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
            let mut cmd = Command::new(ycsb.join("go-ycsb"));
            cmd.arg(phase)
                .arg(driver)
                .arg("-P")
                .arg(ycsb.join("workloads").join(format!("workload{w}")))
                .args(["-p", &format!("recordcount={RECORDS}")])
                .args(["-p", &format!("operationcount={OPERATIONS}")])
                .args(["-p", &format!("threadcount={}", threads(driver, props))])
                .args(["-p", &format!("table={table}")]);
            for p in props {
                cmd.args(["-p", p]);
            }
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

/// A 3-member etcd cluster of Debian's `etcd` on loopback ports; killed on drop.
struct Etcd {
    children: Vec<Child>,
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    async fn must_start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| (free_port().expect("port"), free_port().expect("port")))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut children = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.path().join(format!("e{i}.log"))).expect("log");
            let child = Command::new("etcd")
                .arg("--name")
                .arg(format!("e{i}"))
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .arg("--listen-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-cluster")
                .arg(initial.join(","))
                .arg("--initial-cluster-state")
                .arg("new")
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("spawn etcd");
            children.push(child);
        }
        let endpoints: Vec<String> = ports
            .iter()
            .map(|(c, _)| format!("127.0.0.1:{c}"))
            .collect();
        let etcd = Etcd {
            children,
            endpoints,
            _dir: dir,
        };
        etcd.must_be_healthy().await;
        etcd
    }

    /// Waits until every member's `/health` says `"health":"true"` (the cluster has a leader).
    async fn must_be_healthy(&self) {
        let http = reqwest::Client::new();
        must_eventually("etcd members healthy", Duration::from_secs(60), || {
            let http = http.clone();
            let endpoints = self.endpoints.clone();
            async move {
                for ep in endpoints {
                    let body = http
                        .get(format!("http://{ep}/health"))
                        .send()
                        .await
                        .map_err(|e| format!("{ep}: {e}"))?
                        .text()
                        .await
                        .map_err(|e| format!("{ep}: {e}"))?;
                    if !body.contains("\"health\":\"true\"") {
                        return Err(format!("{ep}: {body}"));
                    }
                }
                Ok(())
            }
        })
        .await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
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
        let etcd = Etcd::must_start().await;
        let props = [format!("etcd.endpoints={}", etcd.endpoints.join(","))];
        must_run_workloads(&ycsb, "etcd", "etcd", &props).await;
    })
    .await
}
