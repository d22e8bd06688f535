//! `kvcheck`: a client pod's smoke check through the official `tikv-client`.
//!
//! Connects to `--pd` (as an application pod would, e.g. `http://basic-placement.db.svc:2379`)
//! and, under API V1 and V2, does a raw put and get and a transactional commit read back by a
//! fresh snapshot, each key unique to this run. Prints every step; exits 0 only if all of them
//! worked. A failed round is retried from the start (a cluster that has just come up may still
//! be moving leaders) for at most `--attempts` rounds and `--timeout-secs` in all.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::Api;
use tikv_client::{RawClient, TransactionClient};

#[derive(Debug, Parser)]
#[command(name = "kvcheck")]
struct Args {
    /// Placement endpoint(s), comma separated, as the operator renders them for clients.
    #[arg(long, value_delimiter = ',', required = true)]
    pd: Vec<String>,
    /// Bound on the whole check.
    #[arg(long, default_value_t = 90)]
    timeout_secs: u64,
    /// Bound on the rounds tried.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
}

/// Bound on each client call, so a hang names its step.
const STEP_LIMIT: Duration = Duration::from_secs(20);

async fn step<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP_LIMIT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e:?}")),
        Err(_) => Err(format!("{what}: no answer within {STEP_LIMIT:?}")),
    }
}

/// One round under `api`: raw put/get, then a transactional write read back.
async fn round(pd: &[String], api: Api, tag: &str) -> Result<(), String> {
    let raw = step(
        "raw connect",
        RawClient::new_with_config(pd.to_vec(), api.config()),
    )
    .await?;
    let (key, value) = (format!("kvcheck-raw-{tag}"), format!("raw-value-{tag}"));
    step("raw put", raw.put(key.clone(), value.clone())).await?;
    let got = step("raw get", raw.get(key.clone())).await?;
    if got.as_deref() != Some(value.as_bytes()) {
        return Err(format!("raw get {key}: expected {value:?}, got {got:?}"));
    }
    println!("{api:?}: raw put {key}={value}, raw get returned it");

    let txn = step(
        "txn connect",
        TransactionClient::new_with_config(pd.to_vec(), api.config()),
    )
    .await?;
    let (key, value) = (format!("kvcheck-txn-{tag}"), format!("txn-value-{tag}"));
    let mut t = step("begin", txn.begin_optimistic()).await?;
    step("txn put", t.put(key.clone(), value.clone())).await?;
    let commit_ts = step("commit", t.commit()).await?;
    println!("{api:?}: committed {key}={value} at {commit_ts:?}");
    let ts = step("timestamp", txn.current_timestamp()).await?;
    let mut snapshot = txn.snapshot(ts, tikv_client::TransactionOptions::new_optimistic());
    let got = step("snapshot get", snapshot.get(key.clone())).await?;
    if got.as_deref() != Some(value.as_bytes()) {
        return Err(format!(
            "snapshot get {key}: expected {value:?}, got {got:?}"
        ));
    }
    println!("{api:?}: a later snapshot read {key}={value}");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let pid = std::process::id();
    println!("kvcheck: placement {:?}", args.pd);
    for attempt in 1..=args.attempts.max(1) {
        let tag = format!("{pid}-{attempt}");
        let remaining = deadline.saturating_duration_since(Instant::now());
        let all = async {
            for api in Api::ALL {
                round(&args.pd, api, &tag)
                    .await
                    .map_err(|e| format!("{api:?}: {e}"))?;
            }
            Ok::<(), String>(())
        };
        match tokio::time::timeout(remaining, all).await {
            Ok(Ok(())) => {
                println!("kvcheck: OK (attempt {attempt})");
                return ExitCode::SUCCESS;
            }
            Ok(Err(e)) => println!("kvcheck: attempt {attempt} failed: {e}"),
            Err(_) => println!("kvcheck: attempt {attempt} ran out of time"),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("kvcheck: FAILED");
    ExitCode::FAILURE
}
