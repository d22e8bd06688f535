//! Starting every workload process against a cluster, and collecting their histories.
//!
//! Processes per run: 3 register, 3 list-append, 2 bank transfer and 1 bank reader, 1 TSO and 1
//! lost-writes writer, each with its own client (one connection set each, as separate users).
//! [`Load::finish`] lets them run a little longer once the cluster is healed, stops them, and
//! makes the final reads.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use jepsen::checks::monotonic::TsRead;
use jepsen::checks::BankRead;
use jepsen::{RegisterOp, TxnOp};
use tikv_client::{RawClient, TransactionClient};
use tokio::task::JoinHandle;

use super::clock::Ctx;
use super::rng::Rng;
use super::{append, bank, lost, register, tso};
use crate::client::Api;
use crate::cluster::Cluster;

const REGISTERS: u64 = 3;
const APPENDERS: u64 = 3;
const TRANSFERS: u64 = 2;
/// How long the workloads go on after the cluster is healed (they must make progress again).
const AFTER_HEAL: Duration = Duration::from_secs(3);
/// Bound on each final read: long enough for the locks of transactions abandoned mid-commit to
/// expire and be resolved even after a minute of clock skew (TTLs are judged on the timestamp
/// oracle's clock, which stands still after the leader's clock jumped ahead and back until the
/// wall clock catches up).
const FINAL_READ: Duration = Duration::from_secs(150);

/// Everything the run recorded.
#[derive(Debug, Default)]
pub struct Histories {
    pub register: Vec<RegisterOp>,
    pub append: Vec<TxnOp>,
    pub commit_ts: Vec<TsRead>,
    pub tso: Vec<TsRead>,
    pub bank_reads: Vec<BankRead>,
    pub transfers: usize,
    pub acked_writes: Vec<(String, String)>,
    pub unacked_writes: usize,
    pub final_lists: Option<BTreeMap<String, Vec<u64>>>,
    pub final_writes: Option<BTreeMap<String, String>>,
    /// Why a final read could not be made.
    pub problems: Vec<String>,
}

/// The running processes.
pub struct Load {
    ctx: Ctx,
    registers: Vec<JoinHandle<Vec<RegisterOp>>>,
    appends: Vec<JoinHandle<append::AppendHistory>>,
    transfers: Vec<JoinHandle<usize>>,
    reads: JoinHandle<Vec<BankRead>>,
    tso: JoinHandle<Vec<TsRead>>,
    lost: JoinHandle<(Vec<(String, String)>, usize)>,
}

async fn raw(cluster: &Cluster) -> Result<RawClient, String> {
    RawClient::new_with_config(cluster.pd_endpoints(), Api::V1.config())
        .await
        .map_err(|e| format!("raw client: {e}"))
}

async fn txn(cluster: &Cluster) -> Result<TransactionClient, String> {
    TransactionClient::new_with_config(cluster.pd_endpoints(), Api::V1.config())
        .await
        .map_err(|e| format!("transaction client: {e}"))
}

/// Opens the bank and starts every process.
pub async fn start(cluster: &Cluster, mut rng: Rng, client_crashes: bool) -> Result<Load, String> {
    let ctx = Ctx::new(client_crashes);
    bank::open(&txn(cluster).await?, FINAL_READ).await?;
    let mut registers = Vec::new();
    for p in 0..REGISTERS {
        let fut = register::process(raw(cluster).await?, ctx.clone(), p, rng.fork(p));
        registers.push(tokio::spawn(fut));
    }
    let counter = Arc::new(AtomicU64::new(0));
    let mut appends = Vec::new();
    for p in 0..APPENDERS {
        let (client, r) = (txn(cluster).await?, rng.fork(100 + p));
        let fut = append::process(client, ctx.clone(), 100 + p, r, counter.clone());
        appends.push(tokio::spawn(fut));
    }
    let mut transfers = Vec::new();
    for p in 0..TRANSFERS {
        let fut = bank::transfers(txn(cluster).await?, ctx.clone(), rng.fork(200 + p));
        transfers.push(tokio::spawn(fut));
    }
    let reads = tokio::spawn(bank::reads(txn(cluster).await?, ctx.clone(), 300));
    let tso = tokio::spawn(tso::process(txn(cluster).await?, ctx.clone(), 400));
    let lost = tokio::spawn(lost::process(raw(cluster).await?, ctx.clone(), 500));
    Ok(Load {
        ctx,
        registers,
        appends,
        transfers,
        reads,
        tso,
        lost,
    })
}

async fn join<T: Default>(handle: JoinHandle<T>, problems: &mut Vec<String>) -> T {
    handle.await.unwrap_or_else(|e| {
        problems.push(format!("a workload process panicked: {e}"));
        T::default()
    })
}

impl Load {
    /// Lets the processes run [`AFTER_HEAL`] more when the cluster serves again, stops them,
    /// and reads back the lists and every acknowledged write.
    pub async fn finish(self, cluster: &Cluster, healed: bool) -> Histories {
        if healed {
            tokio::time::sleep(AFTER_HEAL).await;
        }
        self.ctx.stop();
        let mut h = Histories::default();
        let problems = &mut h.problems;
        for handle in self.registers {
            h.register.extend(join(handle, problems).await);
        }
        for handle in self.appends {
            let one = join(handle, problems).await;
            h.append.extend(one.txns);
            h.commit_ts.extend(one.commit_ts);
        }
        for handle in self.transfers {
            h.transfers += join(handle, problems).await;
        }
        h.bank_reads = join(self.reads, problems).await;
        h.tso = join(self.tso, problems).await;
        (h.acked_writes, h.unacked_writes) = join(self.lost, problems).await;
        if healed {
            final_reads(cluster, &mut h).await;
        }
        h
    }
}

/// The lists, the bank and the write-once keys, read after everything is healed.
async fn final_reads(cluster: &Cluster, h: &mut Histories) {
    let clients = match (txn(cluster).await, raw(cluster).await) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => return h.problems.push(e),
    };
    match append::final_read(&clients.0, FINAL_READ).await {
        Ok(lists) => h.final_lists = Some(lists),
        Err(e) => h.problems.push(e),
    }
    match bank::read_all(&clients.0).await {
        Ok(balances) => h.bank_reads.push(BankRead {
            process: 301,
            call_ns: u64::MAX - 1,
            return_ns: u64::MAX,
            balances,
        }),
        Err(e) => h.problems.push(format!("final bank read: {e}")),
    }
    let keys: Vec<String> = h.acked_writes.iter().map(|(k, _)| k.clone()).collect();
    match lost::final_read(&clients.1, &keys, FINAL_READ).await {
        Ok(found) => h.final_writes = Some(found),
        Err(e) => h.problems.push(e),
    }
}
