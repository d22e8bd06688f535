//! `KvResolveLock`: commit or roll back the locks of txns whose fate is known
//! (TiKV's `commands/resolve_lock.rs` and `resolve_lock_lite.rs`).
//!
//! With `keys`, only those keys are resolved for `start_version`. Without, every
//! lock in the caller's range whose ts is `start_version` (or, when that is 0,
//! any txn of `txn_infos`) is resolved: `commit_version` / `status` 0 rolls
//! back, anything else commits at that ts.

use std::collections::HashMap;

use proto::kvrpcpb::{ResolveLockRequest, ResolveLockResponse};

use super::commit::commit_key;
use super::error::{split, ActionResult};
use super::key_error as ke;
use super::rollback::cleanup_key;
use super::{Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{MvccReader, MvccTxn};

pub fn resolve_lock(
    snap: &Snapshot<'_>,
    req: &ResolveLockRequest,
    lower: &[u8],
    upper: Option<&[u8]>,
) -> Result<WriteOutcome<ResolveLockResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let result = if req.keys.is_empty() {
        resolve_range(&mut txn, &reader, &txn_statuses(req), lower, upper)
    } else {
        resolve_keys(&mut txn, &reader, req)
    };
    Ok(match split(result)? {
        Ok(()) => WriteOutcome::new(txn, ResolveLockResponse::default()),
        Err(e) => WriteOutcome::response_only(ResolveLockResponse {
            error: Some(e),
            ..Default::default()
        }),
    })
}

/// start_ts -> commit_ts (0 = roll back).
fn txn_statuses(req: &ResolveLockRequest) -> HashMap<u64, u64> {
    if req.start_version > 0 {
        HashMap::from([(req.start_version, req.commit_version)])
    } else {
        req.txn_infos.iter().map(|i| (i.txn, i.status)).collect()
    }
}

fn resolve_keys(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    req: &ResolveLockRequest,
) -> ActionResult<()> {
    for key in &req.keys {
        resolve_key(txn, reader, key, req.start_version, req.commit_version)?;
    }
    Ok(())
}

fn resolve_range(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    statuses: &HashMap<u64, u64>,
    lower: &[u8],
    upper: Option<&[u8]>,
) -> ActionResult<()> {
    let locks = reader.scan_locks(lower, upper, |l| statuses.contains_key(&l.ts), 0)?;
    for (key, lock) in locks {
        resolve_key(txn, reader, &key, lock.ts, statuses[&lock.ts])?;
    }
    Ok(())
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
