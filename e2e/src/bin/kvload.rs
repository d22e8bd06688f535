//! `kvload`: a client pod's write load through the official `tikv-client`, for the Kubernetes
//! suite's lifecycle steps (scale, upgrade, failover).
//!
//! Writes unique raw keys (`<prefix>-<n>`) one after another until SIGTERM (deleting the pod)
//! or `--seconds`, each put bounded by `--op-timeout-ms`; counts acknowledged writes, errors and
//! the longest time between two acknowledged writes. Then reads every acknowledged key back
//! (retrying for up to `--verify-secs`) and prints one summary line:
//! `kvload: {"acked":N,"errors":E,"longest_pause_ms":P,"lost":L,"unverified":U,...}`. Exits 0
//! only when no acknowledged write is lost, every one was read back and (with `--tso`) no
//! timestamp went back.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::Api;
use tikv_client::{RawClient, TimestampExt, TransactionClient};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(name = "kvload")]
struct Args {
    /// Placement endpoint(s), comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pd: Vec<String>,
    /// Key prefix (one per run).
    #[arg(long, default_value = "kvload")]
    prefix: String,
    /// Longest run; SIGTERM ends it earlier.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Bound on each put.
    #[arg(long, default_value_t = 5000)]
    op_timeout_ms: u64,
    /// Bound on reading everything back.
    #[arg(long, default_value_t = 20)]
    verify_secs: u64,
    /// Also take a timestamp from placement's TSO after every put and count any that is not
    /// above the one before (`tso_backwards`): TSO stays monotonic across placement changes.
    #[arg(long)]
    tso: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The client's own account (PD reconnects, region errors) lands in the pod's log.
    e2e::init_test_tracing();
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        println!("kvload: cannot handle SIGTERM");
        return ExitCode::FAILURE;
    };
    let client = loop {
        match RawClient::new_with_config(args.pd.clone(), Api::V1.config()).await {
            Ok(c) => break c,
            Err(e) => println!("kvload: connect: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let tso = if args.tso {
        loop {
            match TransactionClient::new_with_config(args.pd.clone(), Api::V1.config()).await {
                Ok(c) => break Some(c),
                Err(e) => println!("kvload: connect (txn): {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    } else {
        None
    };
    let (mut last_ts, mut timestamps, mut backwards) = (0u64, 0u64, 0u64);
    println!("kvload: writing to {:?}", args.pd);
    let op = Duration::from_millis(args.op_timeout_ms);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let (mut acked, mut errors, mut next) = (Vec::<u64>::new(), 0u64, 0u64);
    let mut last_ack = Instant::now();
    let mut longest = Duration::ZERO;
    loop {
        let key = format!("{}-{next:010}", args.prefix);
        let put = tokio::time::timeout(op, client.put(key.clone(), key.clone()));
        tokio::select! {
            _ = term.recv() => break,
            result = put => match result {
                Ok(Ok(())) => {
                    acked.push(next);
                    longest = longest.max(last_ack.elapsed());
                    last_ack = Instant::now();
                }
                Ok(Err(e)) => {
                    errors += 1;
                    if errors % 20 == 1 {
                        println!("kvload: put {key}: {e}");
                    }
                }
                Err(_) => errors += 1,
            },
        }
        if let Some(tso) = &tso {
            if let Ok(Ok(ts)) = tokio::time::timeout(op, tso.current_timestamp()).await {
                let ts = ts.version();
                timestamps += 1;
                if ts <= last_ts {
                    backwards += 1;
                    println!("kvload: timestamp {ts} is not above {last_ts}");
                }
                last_ts = last_ts.max(ts);
            }
        }
        next += 1;
        if Instant::now() >= end {
            break;
        }
    }
    println!(
        "kvload: stopping after {} acknowledged writes; reading them back",
        acked.len()
    );
    let verify_end = Instant::now() + Duration::from_secs(args.verify_secs);
    let mut unverified: Vec<u64> = acked.clone();
    let mut lost = Vec::new();
    while !unverified.is_empty() && Instant::now() < verify_end {
        let mut still = Vec::new();
        for chunk in unverified.chunks(256) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|n| format!("{}-{n:010}", args.prefix))
                .collect();
            match tokio::time::timeout(op, client.batch_get(keys.clone())).await {
                Ok(Ok(pairs)) => {
                    let found: std::collections::HashSet<Vec<u8>> =
                        pairs.into_iter().map(|p| Vec::from(p.0)).collect();
                    for (n, k) in chunk.iter().zip(&keys) {
                        if !found.contains(k.as_bytes()) {
                            lost.push(*n);
                        }
                    }
                }
                failed => {
                    // Say why once per pass: a read-back that never succeeds must leave a trace.
                    if still.is_empty() {
                        match failed {
                            Ok(Err(e)) => println!("kvload: read back {} keys: {e}", chunk.len()),
                            _ => println!(
                                "kvload: read back {} keys: no answer within {op:?}",
                                chunk.len()
                            ),
                        }
                    }
                    still.extend_from_slice(chunk);
                }
            }
        }
        unverified = still;
    }
    let summary = serde_json::json!({
        "acked": acked.len(),
        "errors": errors,
        "longest_pause_ms": longest.as_millis(),
        "lost": lost.len(),
        "unverified": unverified.len(),
        "timestamps": timestamps,
        "tso_backwards": backwards,
    });
    println!("kvload: {summary}");
    if !lost.is_empty() {
        println!(
            "kvload: lost keys (first 20): {:?}",
            &lost[..lost.len().min(20)]
        );
    }
    if lost.is_empty() && unverified.is_empty() && !acked.is_empty() && backwards == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
