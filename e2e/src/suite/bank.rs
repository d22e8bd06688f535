//! The bank workload: transfers between accounts in optimistic and pessimistic transactions,
//! and snapshot reads of every account that must always sum to the same total with no
//! negative balance.

use std::collections::BTreeMap;
use std::time::Duration;

use jepsen::checks::BankRead;
use tikv_client::TransactionClient;

use super::clock::{bounded, text, txn_options, CallError, Ctx};
use super::orphans;
use super::rng::Rng;
use crate::testing::kv_strings;
use crate::wait::wait_for;

/// Accounts `jr-bank-0` ..
pub const ACCOUNTS: u64 = 5;
/// What each account holds at the start.
const OPENING: i64 = 20;
/// What all accounts hold together, always.
pub const TOTAL: i64 = OPENING * ACCOUNTS as i64;

fn account(i: u64) -> String {
    format!("jr-bank-{i}")
}

/// Opens every account with [`OPENING`] (before any fault), retrying until `limit` passes.
pub async fn open(client: &TransactionClient, limit: Duration) -> Result<(), String> {
    let attempt = || async {
        let mut txn = bounded(client.begin_with_options(txn_options(false))).await?;
        for i in 0..ACCOUNTS {
            bounded(txn.put(account(i), OPENING.to_string())).await?;
        }
        bounded(txn.commit()).await.map(drop)
    };
    let attempt = || async { attempt().await.map_err(|e: CallError| e.to_string()) };
    wait_for("the bank accounts to open", limit, attempt, String::new)
        .await
        .map_err(|e| e.to_string())
}

/// A transfer process; returns how many transfers committed.
pub async fn transfers(client: TransactionClient, ctx: Ctx, mut rng: Rng) -> usize {
    let mut committed = 0;
    while !ctx.stopped() {
        let from = rng.below(ACCOUNTS);
        let to = (from + rng.between(1, ACCOUNTS - 1)) % ACCOUNTS;
        let amount = i64::try_from(rng.between(1, 5)).unwrap_or(1);
        if transfer(&client, rng.chance(1, 2), (from, to), amount).await == Ok(true) {
            committed += 1;
        }
        ctx.think().await;
    }
    committed
}

/// Moves `amount` unless `from` holds less; `Ok(true)` when it committed.
async fn transfer(
    client: &TransactionClient,
    pessimistic: bool,
    (from, to): (u64, u64),
    amount: i64,
) -> Result<bool, String> {
    let run = async {
        let mut txn = bounded(client.begin_with_options(txn_options(pessimistic))).await?;
        let mut balances = [0i64; 2];
        for (slot, i) in balances.iter_mut().zip([from, to]) {
            let value = if pessimistic {
                bounded(txn.get_for_update(account(i))).await?
            } else {
                bounded(txn.get(account(i))).await?
            };
            *slot = value.map_or(0, |v| text(&v).parse().unwrap_or(i64::MIN));
        }
        if balances[0] < amount {
            let _ = bounded(txn.rollback()).await;
            return Ok(false);
        }
        bounded(txn.put(account(from), (balances[0] - amount).to_string())).await?;
        bounded(txn.put(account(to), (balances[1] + amount).to_string())).await?;
        bounded(txn.commit()).await.map(|_| true)
    };
    match run.await {
        Ok(committed) => Ok(committed),
        Err(e) => {
            orphans::recover(client, &e).await;
            Err(e.to_string())
        }
    }
}

/// A reader process: snapshot reads of every account.
pub async fn reads(client: TransactionClient, ctx: Ctx, process: u64) -> Vec<BankRead> {
    let mut out = Vec::new();
    while !ctx.stopped() {
        let call = ctx.now();
        if let Ok(balances) = read_all(&client).await {
            out.push(BankRead {
                process,
                call_ns: call,
                return_ns: ctx.now(),
                balances,
            });
        }
        ctx.think().await;
    }
    out
}

/// Every balance in one snapshot; an account that is missing or does not parse fails the read
/// only if missing (a garbled balance is kept as `i64::MIN` for the checker to report).
pub async fn read_all(client: &TransactionClient) -> Result<BTreeMap<String, i64>, String> {
    let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
    let pairs = orphans::snapshot_read(client, keys)
        .await
        .map_err(|e| e.to_string())?;
    let balances: BTreeMap<String, i64> = kv_strings(pairs)
        .into_iter()
        .map(|(k, v)| (k, v.parse().unwrap_or(i64::MIN)))
        .collect();
    if balances.len() as u64 != ACCOUNTS {
        return Err(format!(
            "only {} of {ACCOUNTS} accounts read",
            balances.len()
        ));
    }
    Ok(balances)
}
