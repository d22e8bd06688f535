//! The commit command and the commit of one key (TiKV's `actions/commit.rs`).
//!
//! A key commits by replacing this txn's lock with a commit record at
//! `commit_ts`. Committing again is a no-op; a missing lock with no commit
//! record (rolled back, or never prewritten) is `TxnLockNotFound`; a
//! `commit_ts` below the lock's `min_commit_ts` is `commit_ts_expired`, which
//! makes the client retry with a newer timestamp.

use proto::kvrpcpb::{CommitRequest, CommitResponse};

use super::error::{split, ActionResult};
use super::key_error as ke;
use super::{ConcurrencyManager, Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{MvccReader, MvccTxn, Write, WriteType};

pub fn commit(
    snap: &Snapshot<'_>,
    _cm: &ConcurrencyManager,
    req: &CommitRequest,
) -> Result<WriteOutcome<CommitResponse>> {
    let (start_ts, commit_ts) = (req.start_version, req.commit_version);
    let error = |e| {
        WriteOutcome::response_only(CommitResponse {
            error: Some(e),
            ..Default::default()
        })
    };
    if commit_ts <= start_ts {
        return Ok(error(ke::invalid_txn_tso(start_ts, commit_ts)));
    }
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    for key in &req.keys {
        if let Err(e) = split(commit_key(&mut txn, &reader, key, start_ts, commit_ts))? {
            return Ok(error(e));
        }
    }
    Ok(WriteOutcome::new(
        txn,
        CommitResponse {
            commit_version: commit_ts,
            ..Default::default()
        },
    ))
}

/// Commits txn `start_ts` on `key` at `commit_ts`.
pub(crate) fn commit_key(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
    commit_ts: u64,
) -> ActionResult<()> {
    let lock = match reader.load_lock(key)? {
        Some(lock) if lock.ts == start_ts => lock,
        _ => {
            return match reader.txn_commit_record(key, start_ts)?.committed_ts() {
                Some(_) => Ok(()),
                None => Err(ke::txn_lock_not_found(start_ts, commit_ts, key).into()),
            };
        }
    };
    if commit_ts < lock.min_commit_ts {
        return Err(ke::commit_ts_expired(start_ts, commit_ts, key, lock.min_commit_ts).into());
    }
    let mut write = Write::new(
        WriteType::from_lock_type(lock.lock_type),
        start_ts,
        lock.short_value.clone(),
    );
    // Another txn rolled back at exactly this ts while our lock was here.
    write.has_overlapped_rollback = lock.rollback_ts.contains(&commit_ts);
    txn.put_write(key, commit_ts, &write);
    txn.unlock_key(key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::mvcc::WriteType;
    use crate::percolator::test_util::*;

    #[test]
    fn commit_put_delete_lock_and_recommit() {
        let t = TestEngine::new();
        let long = vec![b'v'; 300];
        t.must_prewrite_put(b"k1", &long, b"k1", 10);
        t.must_prewrite_lock(b"k2", b"k1", 10);
        t.must_prewrite_delete(b"k3", b"k1", 10);
        for k in [&b"k1"[..], b"k2", b"k3"] {
            t.must_locked(k, 10);
            t.must_commit(k, 10, 15);
            t.must_unlocked(k);
            // Idempotent.
            t.must_commit(k, 10, 15);
        }
        t.must_written(b"k1", 10, 15, WriteType::Put);
        t.must_written(b"k2", 10, 15, WriteType::Lock);
        t.must_written(b"k3", 10, 15, WriteType::Delete);
        t.must_get(b"k1", 20, &long);
        t.must_get_none(b"k1", 14);
    }

    #[test]
    fn commit_errors() {
        let t = TestEngine::new();
        // Not prewritten: TxnLockNotFound (retryable).
        assert!(!t.commit_err(b"k", 1, 2).retryable.is_empty());
        t.must_prewrite_put(b"k", b"v", b"k", 5);
        // start_ts mismatch.
        assert!(!t.commit_err(b"k", 4, 6).retryable.is_empty());
        // commit_ts must exceed start_ts.
        assert!(t.commit_err(b"k", 5, 5).abort.contains("InvalidTxnTso"));
        t.must_rollback(b"k", 5);
        assert!(!t.commit_err(b"k", 5, 6).retryable.is_empty());
    }

    #[test]
    fn commit_ts_expired_below_min_commit_ts() {
        let t = TestEngine::new();
        t.must_prewrite_put_async(b"k", b"v", b"k", &[], 10, 50);
        let min = t.must_locked(b"k", 10).min_commit_ts;
        assert_eq!(min, 51);
        let e = t.commit_err(b"k", 10, 30);
        let expired = e.commit_ts_expired.expect("commit_ts_expired");
        assert_eq!(
            (expired.min_commit_ts, expired.attempted_commit_ts),
            (51, 30)
        );
        t.must_commit(b"k", 10, 51);
        t.must_get(b"k", 60, b"v");
    }
}
