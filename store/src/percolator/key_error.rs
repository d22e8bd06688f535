//! Builders of the `kvrpcpb::KeyError`s a Percolator outcome becomes, filled
//! the way TiKV's `extract_key_error` fills them (which field is set, and the
//! `retryable` / `abort` strings kept for older clients).

use proto::kvrpcpb::{self, write_conflict::Reason, Assertion, KeyError, LockInfo, WriteConflict};

pub fn locked(info: LockInfo) -> KeyError {
    KeyError {
        locked: Some(info),
        ..Default::default()
    }
}

/// Waiting for a lock would close a cycle of waiting transactions.
pub fn deadlock(deadlock: kvrpcpb::Deadlock) -> KeyError {
    KeyError {
        deadlock: Some(deadlock),
        ..Default::default()
    }
}

pub struct Conflict<'a> {
    pub start_ts: u64,
    pub conflict_start_ts: u64,
    pub conflict_commit_ts: u64,
    pub key: &'a [u8],
    pub primary: &'a [u8],
    pub reason: Reason,
}

pub fn write_conflict(c: Conflict<'_>) -> KeyError {
    KeyError {
        // TiKV keeps the string for compatibility with older clients.
        retryable: format!(
            "WriteConflict {{ start_ts: {}, conflict_start_ts: {}, conflict_commit_ts: {}, key: {:?}, primary: {:?}, reason: {:?} }}",
            c.start_ts, c.conflict_start_ts, c.conflict_commit_ts, c.key, c.primary, c.reason
        ),
        conflict: Some(WriteConflict {
            start_ts: c.start_ts,
            conflict_ts: c.conflict_start_ts,
            key: c.key.to_vec(),
            primary: c.primary.to_vec(),
            conflict_commit_ts: c.conflict_commit_ts,
            reason: c.reason as i32,
        }),
        ..Default::default()
    }
}

pub fn already_exist(key: &[u8]) -> KeyError {
    KeyError {
        already_exist: Some(kvrpcpb::AlreadyExist { key: key.to_vec() }),
        ..Default::default()
    }
}

/// Commit found neither this txn's lock nor its commit record.
pub fn txn_lock_not_found(start_ts: u64, commit_ts: u64, key: &[u8]) -> KeyError {
    KeyError {
        retryable: format!(
            "TxnLockNotFound {{ start_ts: {start_ts}, commit_ts: {commit_ts}, key: {key:?} }}"
        ),
        ..Default::default()
    }
}

pub fn txn_not_found(start_ts: u64, primary: &[u8]) -> KeyError {
    KeyError {
        txn_not_found: Some(kvrpcpb::TxnNotFound {
            start_ts,
            primary_key: primary.to_vec(),
        }),
        ..Default::default()
    }
}

pub fn commit_ts_expired(
    start_ts: u64,
    commit_ts: u64,
    key: &[u8],
    min_commit_ts: u64,
) -> KeyError {
    KeyError {
        commit_ts_expired: Some(kvrpcpb::CommitTsExpired {
            start_ts,
            attempted_commit_ts: commit_ts,
            key: key.to_vec(),
            min_commit_ts,
        }),
        ..Default::default()
    }
}

pub struct AssertionFailure<'a> {
    pub start_ts: u64,
    pub key: &'a [u8],
    pub assertion: Assertion,
    pub existing_start_ts: u64,
    pub existing_commit_ts: u64,
}

pub fn assertion_failed(a: AssertionFailure<'_>) -> KeyError {
    KeyError {
        assertion_failed: Some(kvrpcpb::AssertionFailed {
            start_ts: a.start_ts,
            key: a.key.to_vec(),
            assertion: a.assertion as i32,
            existing_start_ts: a.existing_start_ts,
            existing_commit_ts: a.existing_commit_ts,
        }),
        ..Default::default()
    }
}

pub fn primary_mismatch(info: LockInfo) -> KeyError {
    KeyError {
        primary_mismatch: Some(kvrpcpb::PrimaryMismatch {
            lock_info: Some(info),
        }),
        ..Default::default()
    }
}

/// Any other failure TiKV reports as `abort` with its debug text.
pub fn abort(message: String) -> KeyError {
    KeyError {
        abort: message,
        ..Default::default()
    }
}

pub fn pessimistic_lock_not_found(start_ts: u64, key: &[u8]) -> KeyError {
    abort(format!(
        "PessimisticLockNotFound {{ start_ts: {start_ts}, key: {key:?} }}"
    ))
}

pub fn pessimistic_lock_rolled_back(start_ts: u64, key: &[u8]) -> KeyError {
    abort(format!(
        "PessimisticLockRolledBack {{ start_ts: {start_ts}, key: {key:?} }}"
    ))
}

pub fn lock_type_not_match(start_ts: u64, key: &[u8], pessimistic: bool) -> KeyError {
    abort(format!(
        "LockTypeNotMatch {{ start_ts: {start_ts}, key: {key:?}, pessimistic: {pessimistic} }}"
    ))
}

pub fn committed(start_ts: u64, commit_ts: u64, key: &[u8]) -> KeyError {
    abort(format!(
        "Committed {{ start_ts: {start_ts}, commit_ts: {commit_ts}, key: {key:?} }}"
    ))
}

pub fn invalid_txn_tso(start_ts: u64, commit_ts: u64) -> KeyError {
    abort(format!(
        "InvalidTxnTso {{ start_ts: {start_ts}, commit_ts: {commit_ts} }}"
    ))
}
