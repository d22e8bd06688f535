//! The list-append workload: transactions that read and append to a few keys, each key holding
//! the list of values appended to it; histories are checked by the Elle-style checker for
//! snapshot isolation (G0, G1a/b/c, G-single, lost update, ...).
//!
//! An append reads the key's list inside the transaction and writes it back one longer. Values
//! are unique per key over the whole run (one counter for all processes). Half the transactions
//! are pessimistic: they lock every key they touch, reads included, with `get_for_update`. A transaction that fails before its
//! commit did nothing (`fail`); one whose commit fails or times out may have committed
//! (`info`). One optimistic transaction in twenty plays a client killed in the middle of
//! two-phase commit.
//! Each commit timestamp is kept for the monotonic check.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jepsen::checks::monotonic::TsRead;
use jepsen::{Mop, Outcome, TxnOp};
use tikv_client::TimestampExt;
use tikv_client::{Transaction, TransactionClient};

use super::clock::{bounded, text, txn_options, CallError, Ctx};
use super::orphans;
use super::rng::Rng;
use crate::testing::kv_strings;
use crate::wait::wait_for;

/// The lists: `jr-list-0` ..
pub const KEYS: u64 = 8;
/// Micro-operations per transaction: 1 ..= this.
const MAX_MOPS: u64 = 4;

pub fn key(i: u64) -> String {
    format!("jr-list-{i}")
}

/// What one process recorded.
#[derive(Debug, Default)]
pub struct AppendHistory {
    pub txns: Vec<TxnOp>,
    pub commit_ts: Vec<TsRead>,
}

/// One process: transactions one after another until the run stops.
pub async fn process(
    client: TransactionClient,
    ctx: Ctx,
    process: u64,
    mut rng: Rng,
    counter: Arc<AtomicU64>,
) -> AppendHistory {
    let mut history = AppendHistory::default();
    while !ctx.stopped() {
        let mops: Vec<Mop> = (0..rng.between(1, MAX_MOPS))
            .map(|_| {
                let key = key(rng.below(KEYS));
                if rng.chance(1, 2) {
                    Mop::read(&key, None)
                } else {
                    Mop::append(&key, counter.fetch_add(1, Ordering::Relaxed))
                }
            })
            .collect();
        let pessimistic = rng.chance(1, 2);
        // One optimistic transaction in twenty is a client that dies during two-phase commit:
        // its commit is abandoned after a few milliseconds, leaving whatever locks it wrote for
        // others to resolve once they expire. (Pessimistic ones are spared: their locks live
        // 20 s, which would stall a short run.)
        let crash = (ctx.client_crashes() && !pessimistic && rng.chance(1, 20))
            .then(|| Duration::from_millis(rng.between(1, 30)));
        let call = ctx.now();
        let (outcome, mops, commit_ts) = run_txn(&client, pessimistic, mops, crash).await;
        let ret = ctx.now();
        if let Some(ts) = commit_ts {
            history.commit_ts.push(TsRead {
                process,
                call_ns: call,
                return_ns: ret,
                ts,
            });
        }
        history
            .txns
            .push(TxnOp::new(process, (call, ret), outcome, mops));
        ctx.think().await;
    }
    history
}

/// Runs the transaction; returns its outcome, its micro-operations with what the reads saw, and
/// its commit timestamp when it committed.
async fn run_txn(
    client: &TransactionClient,
    pessimistic: bool,
    mut mops: Vec<Mop>,
    crash: Option<Duration>,
) -> (Outcome, Vec<Mop>, Option<u64>) {
    let mut txn = match bounded(client.begin_with_options(txn_options(pessimistic))).await {
        Ok(txn) => txn,
        Err(e) => {
            tracing::debug!(error = %e, "list-append transaction could not begin");
            return (Outcome::Fail, mops, None);
        }
    };
    let mut lists = HashMap::new();
    for mop in &mut mops {
        if let Err(e) = step(&mut txn, pessimistic, &mut lists, mop).await {
            tracing::debug!(error = %e, pessimistic, "list-append transaction failed");
            let _ = bounded(txn.rollback()).await;
            orphans::recover(client, &e).await;
            return (Outcome::Fail, mops, None);
        }
    }
    let commit = bounded(txn.commit());
    let result = match crash {
        Some(after) => match tokio::time::timeout(after, commit).await {
            Ok(result) => result,
            // Dropped mid-commit, as a client process killed there would be.
            Err(_) => return (Outcome::Info, mops, None),
        },
        None => commit.await,
    };
    match result {
        Ok(ts) => (Outcome::Ok, mops, ts.map(|t| t.version())),
        Err(e) => {
            orphans::recover(client, &e).await;
            (Outcome::Info, mops, None)
        }
    }
}

/// One micro-operation. The transaction's view of each key it touched is kept in `lists`: the
/// first access fetches it (a pessimistic transaction locks it then, with `get_for_update`,
/// which answers the latest committed value, so every key it reads or writes stays locked
/// until commit and it is serializable), later ones use that view (the client's
/// `get_for_update` answers from the server, not from the transaction's own writes).
async fn step(
    txn: &mut Transaction,
    pessimistic: bool,
    lists: &mut HashMap<String, Vec<u64>>,
    mop: &mut Mop,
) -> Result<(), CallError> {
    let key = mop.key().to_owned();
    if !lists.contains_key(&key) {
        let current = if pessimistic {
            bounded(txn.get_for_update(key.clone())).await?
        } else {
            bounded(txn.get(key.clone())).await?
        };
        lists.insert(key.clone(), parse(current.as_deref()));
    }
    let list = lists.entry(key.clone()).or_default();
    match mop {
        Mop::Read { value, .. } => *value = Some(list.clone()),
        Mop::Append { value, .. } => {
            list.push(*value);
            let text = render(list);
            bounded(txn.put(key, text)).await?;
        }
    }
    Ok(())
}

fn parse(bytes: Option<&[u8]>) -> Vec<u64> {
    let Some(bytes) = bytes else {
        return Vec::new();
    };
    text(bytes)
        .split(',')
        .filter(|s| !s.is_empty())
        // A value that does not parse shows up as u64::MAX: garbage the checker reports.
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

fn render(list: &[u64]) -> String {
    let parts: Vec<String> = list.iter().map(u64::to_string).collect();
    parts.join(",")
}

/// Every list, read in one snapshot, retrying until it answers or `limit` passes.
pub async fn final_read(
    client: &TransactionClient,
    limit: Duration,
) -> Result<BTreeMap<String, Vec<u64>>, String> {
    let read = || async { read_all(client).await.map_err(|e| e.to_string()) };
    wait_for("the final read of the lists", limit, read, String::new)
        .await
        .map_err(|e| e.to_string())
}

async fn read_all(client: &TransactionClient) -> Result<BTreeMap<String, Vec<u64>>, CallError> {
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let pairs = orphans::snapshot_read(client, keys).await?;
    Ok(kv_strings(pairs)
        .into_iter()
        .map(|(k, v)| (k, parse(Some(v.as_bytes()))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_garbage_is_visible() {
        assert_eq!(parse(None), Vec::<u64>::new());
        assert_eq!(parse(Some(render(&[3, 1, 2]).as_bytes())), vec![3, 1, 2]);
        assert_eq!(parse(Some(b"4,x")), vec![4, u64::MAX]);
    }
}
