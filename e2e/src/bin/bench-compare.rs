//! `bench-compare`: this project side by side with a 3-member etcd and RocksDB's synced-write
//! ceiling, on this machine, in one run (`scripts/bench-compare.sh` builds everything in release
//! mode and runs this).
//!
//! 1. Starts a cluster of the binaries beside this one (placement and `--stores` stores) and a
//!    3-member etcd (Debian's `etcd-server`, fsync on).
//! 2. go-ycsb, built from the module proxy: for each of its `tikv` driver in raw mode, in txn
//!    mode, and its `etcd` driver, loads and runs workloads A, B, C, E and F with the same record
//!    count, field size and thread count (each workload on its own table; etcd skips E, whose
//!    scan go-ycsb 1.0.3 cannot do against any etcd).
//! 3. The project's `bench` through the official Rust client: raw put and get, 1-key and 2-key
//!    optimistic and pessimistic transactions under `--threads` workers, and the 1-client
//!    latency phases.
//! 4. `db_bench fillrandom --sync=1` (Debian's `rocksdb-tools`) with the same value size and
//!    threads: the synced group-commit ceiling of this disk.
//! 5. Resident memory of every store and etcd member.
//!
//! Prints progress as it goes, then one table; writes `table.md` and `results.json` under
//! `--out`. A component whose tool is missing is left out
//! with the reason in the table. Every run is bounded in operations and time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use e2e::etcd::EtcdCluster;
use e2e::foreign::{output_text, run_bounded, tool_unavailable};
use e2e::process::Binaries;
use e2e::ycsb::{self, Totals};
use e2e::{Cluster, ClusterBuilder};
use serde::Serialize;
use tokio::process::Command;

#[derive(Debug, Parser)]
#[command(name = "bench-compare")]
struct Args {
    /// Stores of the cluster under test.
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// go-ycsb records per table.
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// go-ycsb operations per workload run.
    #[arg(long, default_value_t = 20_000)]
    operations: u64,
    /// Client threads (go-ycsb, `bench` and `db_bench`).
    #[arg(long, default_value_t = 32)]
    threads: usize,
    /// Value (field) size in bytes; one field per record.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Seconds per `bench` phase.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Results directory (default `bench-results/run-<unix seconds>`; the script passes
    /// `bench-results/<UTC time>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Leave go-ycsb out.
    #[arg(long)]
    no_ycsb: bool,
}

/// Bound on one go-ycsb phase or one `bench` invocation.
const STEP_LIMIT: Duration = Duration::from_secs(900);
const YCSB_WORKLOADS: [&str; 5] = ["a", "b", "c", "e", "f"];

/// One go-ycsb phase of one target.
#[derive(Debug, Serialize)]
struct YcsbRun {
    target: String,
    workload: String,
    phase: String,
    totals: Totals,
    ops: Vec<ycsb::OpStats>,
}

/// One `bench` phase line: `bench <phase> ops=.. ops_per_sec=.. p50_us=.. p99_us=.. errors=..`.
#[derive(Debug, Serialize, Default)]
struct BenchLine {
    clients: usize,
    phase: String,
    fields: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize, Default)]
struct Results {
    machine: String,
    settings: String,
    ycsb: Vec<YcsbRun>,
    bench: Vec<BenchLine>,
    /// db_bench fillrandom --sync=1 operations per second.
    rocksdb_synced_ops: Option<f64>,
    /// Resident memory (KiB) by process name.
    rss_kib: BTreeMap<String, u64>,
    /// Components left out, with why.
    skipped: Vec<String>,
}

fn progress(msg: &str) {
    println!("== {msg}");
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench-compare: {msg}");
    std::process::exit(1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let out = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("bench-results").join(format!("run-{secs}"))
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        die(format!("cannot create {}: {e}", out.display()));
    }
    let mut results = Results {
        machine: machine().await,
        settings: format!(
            "records={} operations={} threads={} value_size={} bench_secs={} stores={}",
            args.records, args.operations, args.threads, args.value_size, args.secs, args.stores
        ),
        ..Results::default()
    };
    progress(&format!("machine: {}", results.machine));
    progress(&format!("starting a cluster of {} stores", args.stores));
    let cluster = match ClusterBuilder::default().stores(args.stores).start().await {
        Ok(c) => c,
        Err(e) => die(format!("the cluster did not start: {e}")),
    };
    cluster
        .must_settled(3.min(args.stores), Duration::from_secs(120))
        .await;
    let etcd = if let Some(why) = tool_unavailable("etcd", &["--version"]).await {
        results
            .skipped
            .push(format!("etcd: {why} (Debian's etcd-server has it)"));
        None
    } else {
        progress("starting a 3-member etcd");
        match EtcdCluster::start(3, Duration::from_secs(60)).await {
            Ok(e) => Some(e),
            Err(e) => die(format!("etcd did not start: {e}")),
        }
    };

    if args.no_ycsb {
        results.skipped.push("go-ycsb: --no-ycsb".to_owned());
    } else if let Some(why) = tool_unavailable("go", &["version"]).await {
        results
            .skipped
            .push(format!("go-ycsb: no Go toolchain ({why})"));
    } else {
        progress("building go-ycsb (cached after the first time)");
        match ycsb::build().await {
            Ok(dir) => run_ycsb(&args, &dir, &cluster, etcd.as_ref(), &mut results).await,
            Err(e) => results.skipped.push(format!("go-ycsb: build failed: {e}")),
        }
    }

    run_bench(&args, &cluster, &mut results).await;
    rocksdb_ceiling(&args, &out, &mut results).await;

    for i in 0..cluster.store_count() {
        if let Some(kib) = cluster.pid_of(e2e::Role::Store(i)).and_then(rss_kib) {
            results.rss_kib.insert(format!("store-{i}"), kib);
        }
    }
    if let Some(etcd) = &etcd {
        for (i, pid) in etcd.pids.iter().enumerate() {
            if let Some(kib) = rss_kib(*pid) {
                results.rss_kib.insert(format!("etcd-{i}"), kib);
            }
        }
    }
    drop(etcd);
    drop(cluster);

    let table = render(&results);
    println!("\n{table}");
    let json = serde_json::to_string_pretty(&results).unwrap_or_default();
    for (name, text) in [("table.md", &table), ("results.json", &json)] {
        let path = out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            die(format!("cannot write {}: {e}", path.display()));
        }
    }
    progress(&format!("results in {}", out.display()));
}

async fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{} GiB", kib / (1 << 20)))
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} cpus, {mem} memory, Linux {}", kernel.trim())
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run_ycsb(
    args: &Args,
    dir: &Path,
    cluster: &Cluster,
    etcd: Option<&EtcdCluster>,
    results: &mut Results,
) {
    let pd = format!("tikv.pd={}", cluster.pd_endpoints().join(","));
    let mut targets: Vec<(&str, &str, Vec<String>)> = vec![
        ("tikv-raw", "tikv", vec![pd.clone(), "tikv.type=raw".into()]),
        ("tikv-txn", "tikv", vec![pd, "tikv.type=txn".into()]),
    ];
    if let Some(etcd) = etcd {
        let endpoints = format!("etcd.endpoints={}", etcd.endpoints.join(","));
        targets.push(("etcd", "etcd", vec![endpoints]));
    }
    for (target, driver, props) in targets {
        for w in YCSB_WORKLOADS {
            if driver == "etcd" && w == "e" {
                continue;
            }
            for phase in ["load", "run"] {
                let mut all = vec![
                    format!("recordcount={}", args.records),
                    format!("operationcount={}", args.operations),
                    format!("threadcount={}", args.threads),
                    "fieldcount=1".to_owned(),
                    format!("fieldlength={}", args.value_size),
                    format!("table={target}_{w}"),
                ];
                all.extend(props.iter().cloned());
                let what = format!("go-ycsb {phase} {target} workload{w}");
                progress(&what);
                let cmd = ycsb::command(dir, phase, driver, w, &all);
                let text = match run_bounded(&what, cmd, STEP_LIMIT).await {
                    Ok(out) => output_text(&out),
                    Err(e) => {
                        results.skipped.push(format!("{what}: {e}"));
                        continue;
                    }
                };
                let ops = ycsb::parse_summary(&text);
                let totals = Totals::of(&ops);
                println!(
                    "   {:.0} ops/s, p99 {:.1} ms, {} errors",
                    totals.ops_per_sec,
                    totals.p99_us / 1000.0,
                    totals.errors
                );
                results.ycsb.push(YcsbRun {
                    target: target.to_owned(),
                    workload: w.to_owned(),
                    phase: phase.to_owned(),
                    totals,
                    ops,
                });
            }
        }
    }
}

async fn run_bench(args: &Args, cluster: &Cluster, results: &mut Results) {
    let bench = match Binaries::other("bench") {
        Ok(b) => b,
        Err(e) => {
            results.skipped.push(format!("bench: {e}"));
            return;
        }
    };
    let pd = cluster.pd_endpoint();
    let load =
        "raw-put,raw-get,txn-put,txn2-optimistic,txn2-pessimistic,txn2-async-commit,txn2-1pc";
    let latency = "raw-put,txn-put,txn2-optimistic,txn2-pessimistic,txn2-async-commit,txn2-1pc";
    for (clients, phases) in [(args.threads, load), (1, latency)] {
        progress(&format!("bench: {clients} client(s), {phases}"));
        let mut cmd = Command::new(&bench);
        cmd.args(["--pd", &pd])
            .args(["--clients", &clients.to_string()])
            .args(["--secs", &args.secs.to_string()])
            .args(["--value-size", &args.value_size.to_string()])
            .args(["--phases", phases]);
        let text = match run_bounded("bench", cmd, STEP_LIMIT).await {
            Ok(out) => output_text(&out),
            Err(e) => {
                results.skipped.push(format!("bench: {e}"));
                continue;
            }
        };
        for line in text.lines().filter(|l| l.starts_with("bench ")) {
            println!("   {line}");
            let mut words = line.split_whitespace().skip(1);
            let phase = words.next().unwrap_or_default().to_owned();
            let fields = words
                .filter_map(|w| {
                    let (k, v) = w.split_once('=')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect();
            results.bench.push(BenchLine {
                clients,
                phase,
                fields,
            });
        }
    }
}

async fn rocksdb_ceiling(args: &Args, out: &Path, results: &mut Results) {
    if let Some(why) = tool_unavailable("db_bench", &["--version"]).await {
        results
            .skipped
            .push(format!("db_bench: {why} (Debian's rocksdb-tools has it)"));
        return;
    }
    progress("db_bench fillrandom --sync=1 (RocksDB's synced-write ceiling)");
    let db = out.join("db_bench-data");
    let mut cmd = Command::new("db_bench");
    cmd.arg("--benchmarks=fillrandom")
        .arg("--sync=1")
        .arg(format!("--threads={}", args.threads))
        .arg(format!("--value_size={}", args.value_size))
        .arg(format!("--num={}", 100_000 / args.threads.max(1)))
        .arg(format!("--db={}", db.display()));
    let text = match run_bounded("db_bench", cmd, STEP_LIMIT).await {
        Ok(out) => output_text(&out),
        Err(e) => {
            results.skipped.push(format!("db_bench: {e}"));
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&db);
    // `fillrandom   :     123.456 micros/op 8100 ops/sec 12.3 seconds ...`
    results.rocksdb_synced_ops = text
        .lines()
        .find(|l| l.starts_with("fillrandom"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "ops/sec")?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        });
    if results.rocksdb_synced_ops.is_none() {
        results
            .skipped
            .push(format!("db_bench: no fillrandom line in:\n{text}"));
    }
}

fn ycsb_totals<'r>(r: &'r Results, target: &str, w: &str, phase: &str) -> Option<&'r Totals> {
    r.ycsb
        .iter()
        .find(|y| y.target == target && y.workload == w && y.phase == phase)
        .map(|y| &y.totals)
}

fn cell(t: Option<&Totals>) -> String {
    match t {
        Some(t) if t.count > 0 => format!(
            "{:.0}/s, p99 {:.1} ms{}",
            t.ops_per_sec,
            t.p99_us / 1000.0,
            if t.errors > 0 {
                format!(", {} errors", t.errors)
            } else {
                String::new()
            }
        ),
        _ => "-".to_owned(),
    }
}

fn ratio(ours: Option<&Totals>, theirs: Option<&Totals>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b.ops_per_sec > 0.0 && a.count > 0 => {
            format!("{:.2}x", a.ops_per_sec / b.ops_per_sec)
        }
        _ => "-".to_owned(),
    }
}

/// The side-by-side table (Markdown).
fn render(r: &Results) -> String {
    let mut t = String::new();
    t.push_str(&format!("Machine: {}; {}\n\n", r.machine, r.settings));
    t.push_str("| go-ycsb | etcd | ours, raw | ours, txn | raw / etcd | txn / etcd |\n");
    t.push_str("|---|---|---|---|---|---|\n");
    for w in YCSB_WORKLOADS {
        for phase in ["load", "run"] {
            let (etcd, raw, txn) = (
                ycsb_totals(r, "etcd", w, phase),
                ycsb_totals(r, "tikv-raw", w, phase),
                ycsb_totals(r, "tikv-txn", w, phase),
            );
            if etcd.is_none() && raw.is_none() && txn.is_none() {
                continue;
            }
            t.push_str(&format!(
                "| workload {} {phase} | {} | {} | {} | {} | {} |\n",
                w.to_uppercase(),
                cell(etcd),
                cell(raw),
                cell(txn),
                ratio(raw, etcd),
                ratio(txn, etcd)
            ));
        }
    }
    t.push_str("\n| bench (official Rust client) | clients | ops/s | p50 | p99 | errors |\n");
    t.push_str("|---|---|---|---|---|---|\n");
    for b in &r.bench {
        let f = |k: &str| b.fields.get(k).copied().unwrap_or(0.0);
        t.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} |\n",
            b.phase,
            b.clients,
            f("ops_per_sec"),
            f("p50_us") / 1000.0,
            f("p99_us") / 1000.0,
            f("errors")
        ));
    }
    if let Some(ceiling) = r.rocksdb_synced_ops {
        let puts = r
            .bench
            .iter()
            .filter(|b| b.phase == "raw-put")
            .filter_map(|b| b.fields.get("ops_per_sec").copied())
            .fold(0.0, f64::max);
        t.push_str(&format!(
            "\nRocksDB synced-write ceiling (db_bench fillrandom --sync=1): {ceiling:.0}/s; \
             replicated raw puts reach {:.1}% of it\n",
            100.0 * puts / ceiling
        ));
    }
    if !r.rss_kib.is_empty() {
        let list: Vec<String> = r
            .rss_kib
            .iter()
            .map(|(k, v)| format!("{k} {} MiB", v / 1024))
            .collect();
        t.push_str(&format!(
            "\nResident memory after the run: {}\n",
            list.join(", ")
        ));
    }
    for s in &r.skipped {
        t.push_str(&format!("\nLeft out: {s}\n"));
    }
    t
}
