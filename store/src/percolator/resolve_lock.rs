//! `KvResolveLock`: commit or roll back the locks of txns whose fate is known
//! (TiKV's `commands/resolve_lock.rs` and `resolve_lock_lite.rs`).
//!
//! With `keys`, only those keys are resolved for `start_version`
//! ([`resolve_lock`]). Without, every lock in the caller's range whose ts is
//! `start_version` (or, when that is 0, any txn of `txn_infos`) is resolved:
//! `commit_version` / `status` 0 rolls back, anything else commits at that
//! ts. The caller works through a range in bounded batches:
//! [`scan_resolvable_keys`] finds the next locked keys, the caller latches
//! them and [`resolve_locks_of`] resolves those still locked.

use std::collections::HashMap;

use proto::kvrpcpb::{ResolveLockRequest, ResolveLockResponse};

use super::commit::commit_key;
use super::error::{split, ActionResult};
use super::key_error as ke;
use super::rollback::cleanup_key;
use super::{Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{MvccReader, MvccTxn};

/// Resolves the keys a request names (`req.keys` must not be empty).
pub fn resolve_lock(
    snap: &Snapshot<'_>,
    req: &ResolveLockRequest,
) -> Result<WriteOutcome<ResolveLockResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let result = req.keys.iter().try_for_each(|key| {
        resolve_key(
            &mut txn,
            &reader,
            key,
            req.start_version,
            req.commit_version,
        )
    });
    outcome(txn, result)
}

fn outcome(txn: MvccTxn, result: ActionResult<()>) -> Result<WriteOutcome<ResolveLockResponse>> {
    Ok(match split(result)? {
        Ok(()) => WriteOutcome::new(txn, ResolveLockResponse::default()),
        Err(e) => WriteOutcome::response_only(ResolveLockResponse {
            error: Some(e),
            ..Default::default()
        }),
    })
}

/// start_ts -> commit_ts (0 = roll back) of the txns a request resolves.
pub fn txn_statuses(req: &ResolveLockRequest) -> HashMap<u64, u64> {
    if req.start_version > 0 {
        HashMap::from([(req.start_version, req.commit_version)])
    } else {
        req.txn_infos.iter().map(|i| (i.txn, i.status)).collect()
    }
}

/// Up to `limit` keys of `[lower, upper)` locked by a txn of `statuses`,
/// fewer if resolving them would write more than about `max_bytes`.
pub fn scan_resolvable_keys(
    snap: &Snapshot<'_>,
    statuses: &HashMap<u64, u64>,
    lower: &[u8],
    upper: Option<&[u8]>,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>> {
    let reader = MvccReader::new(snap);
    let locks = reader.scan_locks(lower, upper, |l| statuses.contains_key(&l.ts), limit)?;
    let mut bytes = 0;
    let mut keys = Vec::with_capacity(locks.len());
    for (key, lock) in locks {
        // The lock deleted, a commit record (with a short value) written.
        bytes += 3 * (key.len() + 24) + lock.short_value.as_ref().map_or(0, Vec::len);
        if bytes > max_bytes && !keys.is_empty() {
            break;
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Resolves the locks on `keys` that belong to a txn of `statuses`; a key
/// no longer locked by one of them is left alone.
pub fn resolve_locks_of(
    snap: &Snapshot<'_>,
    statuses: &HashMap<u64, u64>,
    keys: &[Vec<u8>],
) -> Result<WriteOutcome<ResolveLockResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let mut result = Ok(());
    for key in keys {
        let Some(lock) = reader.load_lock(key)? else {
            continue;
        };
        let Some(&commit_ts) = statuses.get(&lock.ts) else {
            continue;
        };
        result = resolve_key(&mut txn, &reader, key, lock.ts, commit_ts);
        if result.is_err() {
            break;
        }
    }
    outcome(txn, result)
}

fn resolve_key(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
    commit_ts: u64,
) -> ActionResult<()> {
    if commit_ts == 0 {
        return match cleanup_key(txn, reader, key, start_ts, 0, false)? {
            Some(committed_at) => Err(ke::committed(start_ts, committed_at, key).into()),
            None => Ok(()),
        };
    }
    if commit_ts <= start_ts {
        return Err(ke::invalid_txn_tso(start_ts, commit_ts).into());
    }
    commit_key(txn, reader, key, start_ts, commit_ts)
}
