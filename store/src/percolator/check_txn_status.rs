//! `KvCheckTxnStatus`: decide a txn's fate from its primary key (TiKV's
//! `commands/check_txn_status.rs` and `actions/check_txn_status.rs`).
//!
//! The lock present: async-commit locks are reported as they are (unless
//! `force_sync_commit`); an expired lock is rolled back (a pessimistic
//! primary met while resolving a pessimistic lock is just unlocked);
//! otherwise its `min_commit_ts` may be pushed past the caller so the
//! caller's read need not wait. The lock absent: committed, rolled back, or
//! (with `rollback_if_not_exist`) a protected rollback is written; else
//! `txn_not_found`. Responses take exactly one of the three shapes the client
//! accepts: `(0, 0, None)`, `(commit_ts, 0, None)`, `(0, ttl > 0, Some)`.

use proto::kvrpcpb::{Action, CheckTxnStatusRequest, CheckTxnStatusResponse};

use super::error::{split, ActionResult};
use super::key_error as ke;
use super::rollback::{check_missing_lock, rollback_lock, MissingLockAction, TxnStatus};
use super::{ConcurrencyManager, Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{physical, Lock, MvccReader, MvccTxn};

pub fn check_txn_status(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &CheckTxnStatusRequest,
) -> Result<WriteOutcome<CheckTxnStatusResponse>> {
    // A commit must not overwrite a protected rollback written here, and a
    // pushed min_commit_ts must stay above what callers read.
    let max_ts = [req.current_ts, req.caller_start_ts]
        .into_iter()
        .filter(|ts| *ts != u64::MAX)
        .fold(req.lock_ts, u64::max);
    cm.update_max_ts(max_ts);

    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let status = match split(decide(&mut txn, &reader, req))? {
        Ok(status) => status,
        Err(e) => {
            return Ok(WriteOutcome::response_only(CheckTxnStatusResponse {
                error: Some(e),
                ..Default::default()
            }))
        }
    };
    Ok(WriteOutcome::new(txn, response(status)))
}

fn decide(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    req: &CheckTxnStatusRequest,
) -> ActionResult<TxnStatus> {
    let primary = req.primary_key.as_slice();
    match reader.load_lock(primary)? {
        Some(lock) if lock.ts == req.lock_ts => {
            if req.verify_is_primary && lock.primary != primary {
                return Err(ke::primary_mismatch(lock.to_lock_info(primary)).into());
            }
            lock_exists(txn, reader, req, lock)
        }
        other => {
            let action = if req.rollback_if_not_exist {
                MissingLockAction::ProtectedRollback
            } else {
                MissingLockAction::ReturnError
            };
            check_missing_lock(
                txn,
                reader,
                primary,
                req.lock_ts,
                other,
                action,
                req.resolving_pessimistic_lock,
            )
        }
    }
}

fn lock_exists(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    req: &CheckTxnStatusRequest,
    mut lock: Lock,
) -> ActionResult<TxnStatus> {
    let primary = req.primary_key.as_slice();
    // Async-commit locks are rolled back only by resolving their secondaries.
    if lock.use_async_commit && !req.force_sync_commit {
        return Ok(TxnStatus::Uncommitted {
            lock,
            min_commit_ts_pushed: false,
        });
    }
    if physical(lock.ts).saturating_add(lock.ttl) < physical(req.current_ts) {
        if req.resolving_pessimistic_lock && lock.is_pessimistic_lock() {
            txn.unlock_key(primary);
            return Ok(TxnStatus::PessimisticRollBack);
        }
        rollback_lock(txn, reader, primary, &lock, true)?;
        return Ok(TxnStatus::TtlExpire);
    }
    let caller = req.caller_start_ts;
    // min_commit_ts 0 marks a txn that cannot be pushed (as in TiKV).
    if lock.min_commit_ts != 0 && caller != u64::MAX && caller >= lock.min_commit_ts {
        lock.min_commit_ts = (caller + 1).max(req.current_ts);
        txn.put_lock(primary, &lock);
    }
    let pushed = (caller != 0 && lock.min_commit_ts > caller) || caller == u64::MAX;
    Ok(TxnStatus::Uncommitted {
        lock,
        min_commit_ts_pushed: pushed,
    })
}

fn response(status: TxnStatus) -> CheckTxnStatusResponse {
    let mut resp = CheckTxnStatusResponse::default();
    let action = match status {
        TxnStatus::RolledBack => Action::NoAction,
        TxnStatus::TtlExpire => Action::TtlExpireRollback,
        TxnStatus::LockNotExist => Action::LockNotExistRollback,
        TxnStatus::PessimisticRollBack => Action::TtlExpirePessimisticRollback,
        TxnStatus::LockNotExistDoNothing => Action::LockNotExistDoNothing,
        TxnStatus::Committed { commit_ts } => {
            resp.commit_version = commit_ts;
            Action::NoAction
        }
        TxnStatus::Uncommitted {
            lock,
            min_commit_ts_pushed,
        } => {
            // The client accepts a live lock only with ttl > 0.
            resp.lock_ttl = lock.ttl.max(1);
            resp.lock_info = Some(lock.to_lock_info(&lock.primary));
            if min_commit_ts_pushed {
                Action::MinCommitTsPushed
            } else {
                Action::NoAction
            }
        }
    };
    resp.action = action as i32;
    resp
}
