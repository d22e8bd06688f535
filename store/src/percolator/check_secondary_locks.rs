//! `KvCheckSecondaryLocks`: the status of an async-commit txn from its
//! secondary keys (TiKV's `commands/check_secondary_locks.rs`).
//!
//! If every key still holds the txn's prewrite lock, the locks are returned
//! and the client decides. A committed key answers its `commit_ts`. A missing
//! lock (or a leftover pessimistic lock) means the txn can no longer commit:
//! a protected rollback is written so that it never will, and the answer is
//! "rolled back" (empty `locks`, `commit_ts` 0).

use proto::kvrpcpb::{CheckSecondaryLocksRequest, CheckSecondaryLocksResponse, LockInfo};

use super::error::{split, ActionResult};
use super::rollback::{collapse_prev_rollback, make_rollback, mark_rollback_on_mismatching_lock};
use super::{ConcurrencyManager, Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord, Write};

enum KeyStatus {
    Locked(LockInfo),
    Committed(u64),
    RolledBack,
}

pub fn check_secondary_locks(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &CheckSecondaryLocksRequest,
) -> Result<WriteOutcome<CheckSecondaryLocksResponse>> {
    // A commit must not overwrite the protected rollback written here.
    cm.update_max_ts(req.start_version);
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let mut resp = CheckSecondaryLocksResponse::default();
    for key in &req.keys {
        match split(check_key(&mut txn, &reader, key, req.start_version))? {
            Ok(KeyStatus::Locked(info)) => resp.locks.push(info),
            Ok(KeyStatus::Committed(commit_ts)) => {
                resp = CheckSecondaryLocksResponse {
                    commit_ts,
                    ..Default::default()
                };
                break;
            }
            Ok(KeyStatus::RolledBack) => {
                resp = CheckSecondaryLocksResponse::default();
                break;
            }
            Err(e) => {
                return Ok(WriteOutcome::response_only(CheckSecondaryLocksResponse {
                    error: Some(e),
                    ..Default::default()
                }))
            }
        }
    }
    Ok(WriteOutcome::new(txn, resp))
}

fn check_key(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
) -> ActionResult<KeyStatus> {
    let lock = reader.load_lock(key)?;
    let mismatch = match lock {
        Some(lock) if lock.ts == start_ts && !lock.is_pessimistic_lock() => {
            return Ok(KeyStatus::Locked(lock.to_lock_info(key)));
        }
        Some(lock) if lock.ts == start_ts => {
            // Only a pessimistic lock: the txn never prewrote this key.
            txn.unlock_key(key);
            None
        }
        other => other,
    };
    let overlapped = match reader.txn_commit_record(key, start_ts)? {
        TxnCommitRecord::Single { commit_ts, write } => {
            return Ok(match write.write_type {
                crate::mvcc::WriteType::Rollback => KeyStatus::RolledBack,
                _ => KeyStatus::Committed(commit_ts),
            });
        }
        TxnCommitRecord::OverlappedRollback { .. } => return Ok(KeyStatus::RolledBack),
        TxnCommitRecord::None { overlapped } => overlapped,
    };
    if let (Some(lock), None) = (mismatch, &overlapped) {
        mark_rollback_on_mismatching_lock(txn, key, lock, start_ts);
    }
    // Protected, so that a stale pessimistic lock + prewrite cannot succeed.
    let rollback: Option<Write> = make_rollback(start_ts, true, overlapped);
    if let Some(w) = rollback {
        txn.put_write(key, start_ts, &w);
        collapse_prev_rollback(txn, reader, key, start_ts)?;
    }
    Ok(KeyStatus::RolledBack)
}
