//! Rolling back: the shared pieces (rollback records, protection, collapsing,
//! the missing-lock decision) and the `KvCleanup` and `KvBatchRollback`
//! commands (TiKV's `actions/cleanup.rs` and `actions/check_txn_status.rs`).
//!
//! A rollback leaves a `Rollback` record at `key + !start_ts` so that a late
//! prewrite of the txn fails. Protected rollbacks (of a pessimistic primary,
//! or written because the lock was missing) are never collapsed; unprotected
//! ones are deleted by the next rollback on the key. When another txn's commit
//! record already sits at `commit_ts == start_ts`, a protected rollback marks
//! it `has_overlapped_rollback` instead; when another txn's lock is on the key,
//! the rollback ts is remembered in that lock so its commit can do the same.

use proto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CleanupRequest, CleanupResponse,
};

use super::error::{split, ActionResult};
use super::key_error as ke;
use super::{ConcurrencyManager, Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{
    physical, Lock, LockType, MvccReader, MvccTxn, TxnCommitRecord, Write, WriteType,
};

/// What a txn status check decided (TiKV's `TxnStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxnStatus {
    RolledBack,
    TtlExpire,
    LockNotExist,
    Committed {
        commit_ts: u64,
    },
    Uncommitted {
        lock: Lock,
        min_commit_ts_pushed: bool,
    },
    PessimisticRollBack,
    LockNotExistDoNothing,
}

/// What to do when neither the lock nor a commit record of the txn exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingLockAction {
    Rollback,
    ProtectedRollback,
    ReturnError,
}

impl MissingLockAction {
    pub fn rollback_protect(protect: bool) -> Self {
        if protect {
            MissingLockAction::ProtectedRollback
        } else {
            MissingLockAction::Rollback
        }
    }
}

/// The rollback record to write for txn `start_ts`, given another txn's commit
/// record possibly sitting where it would go.
pub(crate) fn make_rollback(
    start_ts: u64,
    protected: bool,
    overlapped: Option<Write>,
) -> Option<Write> {
    match overlapped {
        Some(mut w) => protected.then(|| {
            w.has_overlapped_rollback = true;
            w
        }),
        None => Some(Write::new_rollback(start_ts, protected)),
    }
}

/// Deletes the newest record at or below `start_ts` if it is an unprotected
/// rollback of another txn.
pub(crate) fn collapse_prev_rollback(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
) -> ActionResult<()> {
    if let Some((commit_ts, w)) = reader.seek_write(key, start_ts)? {
        if w.write_type == WriteType::Rollback && !w.protected {
            txn.delete_write(key, commit_ts);
        }
    }
    Ok(())
}

/// Remembers a protected rollback of `start_ts` in another txn's lock that
/// could still commit at exactly `start_ts`.
pub(crate) fn mark_rollback_on_mismatching_lock(
    txn: &mut MvccTxn,
    key: &[u8],
    mut lock: Lock,
    start_ts: u64,
) {
    if lock.ts < start_ts && !lock.rollback_ts.contains(&start_ts) {
        lock.rollback_ts.push(start_ts);
        txn.put_lock(key, &lock);
    }
}

/// Rolls back txn `lock.ts`'s lock on `key`.
pub(crate) fn rollback_lock(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    lock: &Lock,
    collapse: bool,
) -> ActionResult<()> {
    let overlapped = match reader.txn_commit_record(key, lock.ts)? {
        TxnCommitRecord::None { overlapped } => overlapped,
        r if r.committed_ts().is_some() => {
            return Err(ke::abort(format!(
                "txn {} has both a lock and a commit record on {key:?}",
                lock.ts
            ))
            .into());
        }
        _ => {
            txn.unlock_key(key);
            return Ok(());
        }
    };
    if lock.short_value.is_none() && lock.lock_type == LockType::Put {
        txn.delete_value(key, lock.ts);
    }
    // Only the primary key of a pessimistic txn needs protection.
    let protected = lock.is_pessimistic_txn() && key == lock.primary.as_slice();
    if let Some(w) = make_rollback(lock.ts, protected, overlapped) {
        txn.put_write(key, lock.ts, &w);
    }
    if collapse {
        collapse_prev_rollback(txn, reader, key, lock.ts)?;
    }
    txn.unlock_key(key);
    Ok(())
}

/// Decides (and records) the status of txn `start_ts` on `key` when its lock
/// is not there; `mismatch` is another txn's lock on the key, if any.
pub(crate) fn check_missing_lock(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
    mismatch: Option<Lock>,
    action: MissingLockAction,
    resolving_pessimistic_lock: bool,
) -> ActionResult<TxnStatus> {
    let overlapped = match reader.txn_commit_record(key, start_ts)? {
        TxnCommitRecord::Single { commit_ts, write } => {
            return Ok(if write.write_type == WriteType::Rollback {
                TxnStatus::RolledBack
            } else {
                TxnStatus::Committed { commit_ts }
            });
        }
        TxnCommitRecord::OverlappedRollback { .. } => return Ok(TxnStatus::RolledBack),
        TxnCommitRecord::None { overlapped } => overlapped,
    };
    if action == MissingLockAction::ReturnError {
        return Err(ke::txn_not_found(start_ts, key).into());
    }
    if resolving_pessimistic_lock {
        return Ok(TxnStatus::LockNotExistDoNothing);
    }
    let protected = action == MissingLockAction::ProtectedRollback;
    if !protected {
        collapse_prev_rollback(txn, reader, key, start_ts)?;
    }
    if let (Some(lock), None, true) = (mismatch, &overlapped, protected) {
        mark_rollback_on_mismatching_lock(txn, key, lock, start_ts);
    }
    if let Some(w) = make_rollback(start_ts, protected, overlapped) {
        txn.put_write(key, start_ts, &w);
    }
    Ok(TxnStatus::LockNotExist)
}

/// Rolls back txn `start_ts` on `key` (TiKV's `cleanup`). With a non-zero
/// `current_ts`, a lock whose TTL has not expired is reported `locked`.
/// Returns the commit ts if the txn turned out committed.
pub(crate) fn cleanup_key(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
    current_ts: u64,
    protect_rollback: bool,
) -> ActionResult<Option<u64>> {
    match reader.load_lock(key)? {
        Some(lock) if lock.ts == start_ts => {
            if current_ts != 0 && physical(lock.ts).saturating_add(lock.ttl) >= physical(current_ts)
            {
                return Err(ke::locked(lock.to_lock_info(key)).into());
            }
            rollback_lock(txn, reader, key, &lock, !protect_rollback)?;
            Ok(None)
        }
        other => {
            let action = MissingLockAction::rollback_protect(protect_rollback);
            match check_missing_lock(txn, reader, key, start_ts, other, action, false)? {
                TxnStatus::Committed { commit_ts } => Ok(Some(commit_ts)),
                _ => Ok(None),
            }
        }
    }
}

/// `KvCleanup`: roll back one key (the primary) of an expired txn. A
/// committed txn answers `commit_version`, not an error.
pub fn cleanup(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &CleanupRequest,
) -> Result<WriteOutcome<CleanupResponse>> {
    // A commit must not overwrite the protected rollback written here.
    cm.update_max_ts(req.start_version);
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let result = cleanup_key(
        &mut txn,
        &reader,
        &req.key,
        req.start_version,
        req.current_ts,
        true,
    );
    Ok(match split(result)? {
        Ok(Some(commit_ts)) => WriteOutcome::response_only(CleanupResponse {
            commit_version: commit_ts,
            ..Default::default()
        }),
        Ok(None) => WriteOutcome::new(txn, CleanupResponse::default()),
        Err(e) => WriteOutcome::response_only(CleanupResponse {
            error: Some(e),
            ..Default::default()
        }),
    })
}

/// `KvBatchRollback`: roll back the txn on each key regardless of TTL.
pub fn batch_rollback(
    snap: &Snapshot<'_>,
    req: &BatchRollbackRequest,
) -> Result<WriteOutcome<BatchRollbackResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let start_ts = req.start_version;
    for key in &req.keys {
        let error = match split(cleanup_key(&mut txn, &reader, key, start_ts, 0, false))? {
            Ok(None) => continue,
            Ok(Some(commit_ts)) => ke::committed(start_ts, commit_ts, key),
            Err(e) => e,
        };
        return Ok(WriteOutcome::response_only(BatchRollbackResponse {
            error: Some(error),
            ..Default::default()
        }));
    }
    Ok(WriteOutcome::new(txn, BatchRollbackResponse::default()))
}
