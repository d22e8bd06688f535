//! `bench`: throughput and latency of a cluster through the official client.
//!
//! Starts its own cluster (placement + `--stores` stores as processes, in a
//! temp dir) unless `--pd` names a running one, then runs `--clients`
//! concurrent workers for `--secs` seconds per phase: raw puts, raw gets,
//! single-key optimistic transactions and two-key optimistic and pessimistic
//! transactions, the optimistic ones also with async commit and with 1PC, as
//! clients that enable them send (`--phases` picks some). Prints one line per phase:
//! `bench <phase> ops=<n> ops_per_sec=<x> p50_us=<a> p99_us=<b> errors=<e>`.
//! Every loop is bounded by time and by `--max-ops`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::ClusterBuilder;
use tikv_client::TransactionOptions;

#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Placement endpoint of a running cluster; default: start one.
    #[arg(long)]
    pd: Option<String>,
    /// Stores of the cluster this starts.
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Concurrent client workers.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Upper bound on operations per phase.
    #[arg(long, default_value_t = 2_000_000)]
    max_ops: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Phases to run, comma separated (default: all): raw-put, raw-get, txn-put, txn2-optimistic,
    /// txn2-pessimistic, txn2-async-commit, txn2-1pc.
    #[arg(long, value_delimiter = ',')]
    phases: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    RawPut,
    RawGet,
    TxnPut,
    /// Two keys in one optimistic transaction.
    Txn2Optimistic,
    /// Two keys in one pessimistic transaction.
    Txn2Pessimistic,
    /// Two keys in one optimistic transaction with async commit.
    Txn2AsyncCommit,
    /// Two keys in one optimistic transaction committed in one phase (1PC).
    Txn2OnePc,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::RawPut,
        Phase::RawGet,
        Phase::TxnPut,
        Phase::Txn2Optimistic,
        Phase::Txn2Pessimistic,
        Phase::Txn2AsyncCommit,
        Phase::Txn2OnePc,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::RawPut => "raw-put",
            Phase::RawGet => "raw-get",
            Phase::TxnPut => "txn-put",
            Phase::Txn2Optimistic => "txn2-optimistic",
            Phase::Txn2Pessimistic => "txn2-pessimistic",
            Phase::Txn2AsyncCommit => "txn2-async-commit",
            Phase::Txn2OnePc => "txn2-1pc",
        }
    }
}

struct Report {
    lat_us: Vec<u32>,
    errors: u64,
}

async fn worker(
    phase: Phase,
    id: usize,
    pd: Vec<String>,
    deadline: Instant,
    budget: Arc<AtomicU64>,
    value: Vec<u8>,
) -> Report {
    let raw = tikv_client::RawClient::new(pd.clone())
        .await
        .expect("raw client");
    let txn = tikv_client::TransactionClient::new(pd)
        .await
        .expect("txn client");
    let mut rep = Report {
        lat_us: Vec::new(),
        errors: 0,
    };
    let mut i: u64 = 0;
    while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
        let key = format!("bench-{id:03}-{:08}", i % 10_000);
        i += 1;
        let start = Instant::now();
        let ok = match phase {
            Phase::RawPut => raw.put(key, value.clone()).await.is_ok(),
            Phase::RawGet => raw.get(key).await.is_ok(),
            Phase::TxnPut => async {
                let mut t = txn.begin_optimistic().await?;
                t.put(key, value.clone()).await?;
                t.commit().await
            }
            .await
            .is_ok(),
            Phase::Txn2Optimistic
            | Phase::Txn2Pessimistic
            | Phase::Txn2AsyncCommit
            | Phase::Txn2OnePc => async {
                let options = match phase {
                    Phase::Txn2Pessimistic => TransactionOptions::new_pessimistic(),
                    Phase::Txn2AsyncCommit => {
                        TransactionOptions::new_optimistic().use_async_commit()
                    }
                    Phase::Txn2OnePc => TransactionOptions::new_optimistic().try_one_pc(),
                    _ => TransactionOptions::new_optimistic(),
                };
                let mut t = txn.begin_with_options(options).await?;
                let other = format!("{key}-b");
                t.put(key, value.clone()).await?;
                t.put(other, value.clone()).await?;
                t.commit().await
            }
            .await
            .is_ok(),
        };
        if ok {
            rep.lat_us
                .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        } else {
            rep.errors += 1;
        }
    }
    rep
}

async fn run_phase(phase: Phase, args: &Args, pd: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let budget = Arc::new(AtomicU64::new(args.max_ops));
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| {
            let value = vec![b'v'; args.value_size];
            tokio::spawn(worker(
                phase,
                id,
                pd.to_vec(),
                deadline,
                budget.clone(),
                value,
            ))
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let r = t.await.expect("worker");
        lat.extend(r.lat_us);
        errors += r.errors;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "bench {} ops={} ops_per_sec={:.0} p50_us={} p99_us={} errors={}",
        phase.name(),
        lat.len(),
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        errors
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _cluster;
    let pd = match &args.pd {
        Some(pd) => vec![pd.clone()],
        None => {
            let c = ClusterBuilder::default()
                .stores(args.stores)
                .must_start()
                .await;
            let pd = c.pd_endpoints();
            _cluster = c;
            pd
        }
    };
    for phase in Phase::ALL {
        if args.phases.is_empty() || args.phases.iter().any(|p| p == phase.name()) {
            run_phase(phase, &args, &pd).await;
        }
    }
    Ok(())
}
