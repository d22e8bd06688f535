//! Pessimistic locks and the primary's heartbeat: `KvPessimisticLock`,
//! `KVPessimisticRollback`, `KvTxnHeartBeat` (TiKV's
//! `actions/acquire_pessimistic_lock.rs` and the matching commands).
//!
//! A pessimistic lock is a lock of type `S` carrying `for_update_ts`: it fails
//! with `conflict` if a commit newer than `for_update_ts` exists, `locked` if
//! another txn holds the key (returned at once: we do not wait, the client
//! resolves and retries), `already_exist` for an `Assertion::NotExist` key
//! with a value. Any failure writes nothing for the whole request.

use proto::kvrpcpb::{
    write_conflict::Reason, Assertion, PessimisticLockRequest, PessimisticLockResponse,
    PessimisticRollbackRequest, PessimisticRollbackResponse, TxnHeartBeatRequest,
    TxnHeartBeatResponse,
};

use super::error::{split, ActionResult};
use super::key_error::{self as ke, Conflict};
use super::prewrite_mutation::check_data_constraint;
use super::{ConcurrencyManager, Result, WriteOutcome};
use crate::engine::Snapshot;
use crate::mvcc::{Lock, LockType, MvccReader, MvccTxn, WriteType};

pub fn pessimistic_lock(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &PessimisticLockRequest,
) -> Result<WriteOutcome<PessimisticLockResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let mut found = Vec::with_capacity(req.mutations.len());
    for m in &req.mutations {
        let should_not_exist = m.assertion() == Assertion::NotExist;
        match split(acquire(
            &mut txn,
            &reader,
            cm,
            req,
            &m.key,
            should_not_exist,
        ))? {
            Ok(value) => found.push(value),
            Err(e) => {
                return Ok(WriteOutcome::response_only(PessimisticLockResponse {
                    errors: vec![e],
                    ..Default::default()
                }))
            }
        }
    }
    if req.return_values || req.check_existence {
        // Values were read at for_update_ts.
        cm.update_max_ts(req.for_update_ts);
    }
    let mut resp = PessimisticLockResponse::default();
    if req.return_values {
        resp.not_founds = found.iter().map(Option::is_none).collect();
        resp.values = found.into_iter().map(Option::unwrap_or_default).collect();
    } else if req.check_existence {
        resp.not_founds = found.iter().map(Option::is_none).collect();
    }
    Ok(WriteOutcome::new(txn, resp))
}

/// Locks `key`; returns its value at `for_update_ts` when asked for values
/// (or an empty value standing for "exists" when asked for existence).
fn acquire(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    cm: &ConcurrencyManager,
    req: &PessimisticLockRequest,
    key: &[u8],
    should_not_exist: bool,
) -> ActionResult<Option<Vec<u8>>> {
    if should_not_exist {
        cm.update_max_ts(req.for_update_ts);
    }
    if let Some(lock) = reader.load_lock(key)? {
        return relock(txn, reader, req, key, lock);
    }
    let want = req.return_values || req.check_existence;
    let mut value = check_latest_write(reader, req, key, should_not_exist, want)?;
    if !req.return_values {
        value = value.map(|_| Vec::new());
    }
    // Only meaningful when the caller asked to learn about the value.
    if req.lock_only_if_exists && want && value.is_none() {
        return Ok(None);
    }
    txn.put_lock(key, &new_lock(req));
    Ok(value)
}

/// Conflict, rolled-back and existence checks against the newest commit
/// record; returns the value at `for_update_ts` when `want` is set.
fn check_latest_write(
    reader: &MvccReader<'_, '_>,
    req: &PessimisticLockRequest,
    key: &[u8],
    should_not_exist: bool,
    want: bool,
) -> ActionResult<Option<Vec<u8>>> {
    let Some((commit_ts, write)) = reader.seek_write(key, u64::MAX)? else {
        return Ok(None);
    };
    let start_ts = req.start_version;
    if commit_ts > req.for_update_ts {
        return Err(ke::write_conflict(Conflict {
            start_ts,
            conflict_start_ts: write.start_ts,
            conflict_commit_ts: commit_ts,
            key,
            primary: &req.primary_lock,
            reason: Reason::PessimisticRetry,
        })
        .into());
    }
    check_rolled_back(reader, key, start_ts, commit_ts, &write)?;
    check_data_constraint(reader, should_not_exist, &write, commit_ts, key)?;
    if !want {
        return Ok(None);
    }
    Ok(match write.write_type {
        WriteType::Put => Some(reader.load_data(key, &write)?),
        WriteType::Delete => None,
        WriteType::Lock | WriteType::Rollback => reader.get(key, commit_ts.saturating_sub(1))?,
    })
}

fn new_lock(req: &PessimisticLockRequest) -> Lock {
    let mut lock = Lock::new(
        LockType::Pessimistic,
        req.primary_lock.clone(),
        req.start_version,
        req.lock_ttl,
    );
    lock.for_update_ts = req.for_update_ts;
    lock.min_commit_ts = req.min_commit_ts;
    lock
}

/// The key is already locked: by us (refresh `for_update_ts`) or by another.
fn relock(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    req: &PessimisticLockRequest,
    key: &[u8],
    lock: Lock,
) -> ActionResult<Option<Vec<u8>>> {
    if lock.ts != req.start_version {
        return Err(ke::locked(lock.to_lock_info(key)).into());
    }
    if !lock.is_pessimistic_lock() {
        return Err(ke::lock_type_not_match(req.start_version, key, false).into());
    }
    let value = if req.return_values || req.check_existence {
        reader.get(key, req.for_update_ts)?
    } else {
        None
    };
    if req.for_update_ts > lock.for_update_ts {
        let mut relocked = new_lock(req);
        relocked.rollback_ts = lock.rollback_ts;
        txn.put_lock(key, &relocked);
    }
    Ok(if req.return_values {
        value
    } else {
        value.map(|_| Vec::new())
    })
}

/// A pessimistic lock must not be taken for a txn already rolled back here.
fn check_rolled_back(
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    start_ts: u64,
    latest_ts: u64,
    latest: &crate::mvcc::Write,
) -> ActionResult<()> {
    let is_rollback =
        |w: &crate::mvcc::Write| w.write_type == WriteType::Rollback || w.has_overlapped_rollback;
    let rolled_back = if latest_ts == start_ts {
        is_rollback(latest)
    } else if latest_ts > start_ts {
        reader
            .seek_write(key, start_ts)?
            .is_some_and(|(ts, w)| ts == start_ts && is_rollback(&w))
    } else {
        false
    };
    if rolled_back {
        return Err(ke::pessimistic_lock_rolled_back(start_ts, key).into());
    }
    Ok(())
}

/// Removes this txn's pessimistic locks with `for_update_ts <= req's`.
pub fn pessimistic_rollback(
    snap: &Snapshot<'_>,
    req: &PessimisticRollbackRequest,
) -> Result<WriteOutcome<PessimisticRollbackResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    for key in &req.keys {
        if let Some(lock) = reader.load_lock(key)? {
            if lock.is_pessimistic_lock()
                && lock.ts == req.start_version
                && lock.for_update_ts <= req.for_update_ts
            {
                txn.unlock_key(key);
            }
        }
    }
    Ok(WriteOutcome::new(
        txn,
        PessimisticRollbackResponse::default(),
    ))
}

/// Extends the primary lock's TTL to `advise_lock_ttl` (never shortens it).
pub fn txn_heartbeat(
    snap: &Snapshot<'_>,
    req: &TxnHeartBeatRequest,
) -> Result<WriteOutcome<TxnHeartBeatResponse>> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let lock = match reader.load_lock(&req.primary_lock)? {
        Some(lock) if lock.ts == req.start_version => lock,
        _ => {
            return Ok(WriteOutcome::response_only(TxnHeartBeatResponse {
                error: Some(ke::txn_not_found(req.start_version, &req.primary_lock)),
                ..Default::default()
            }))
        }
    };
    let mut lock = lock;
    if lock.ttl < req.advise_lock_ttl {
        lock.ttl = req.advise_lock_ttl;
        txn.put_lock(&req.primary_lock, &lock);
    }
    Ok(WriteOutcome::new(
        txn,
        TxnHeartBeatResponse {
            lock_ttl: lock.ttl,
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use proto::kvrpcpb::{Assertion, Op, PessimisticRollbackRequest, TxnHeartBeatRequest};

    use crate::percolator::test_util::*;

    #[test]
    fn lock_conflict_locked_and_relock() {
        let t = TestEngine::new();
        t.must_prewrite_put(b"k", b"v", b"k", 5);
        t.must_commit(b"k", 5, 10);
        // A commit newer than for_update_ts.
        let resp = t.pessimistic_lock(&pessimistic_lock_req(&[b"k"], b"k", 8, 9));
        let c = resp.errors[0].conflict.as_ref().expect("conflict");
        assert_eq!((c.conflict_commit_ts, c.reason), (10, 2));
        t.must_pessimistic_lock(b"k", b"k", 8, 11);
        t.must_pessimistic_locked(b"k", 8, 11);
        // Re-locking with a newer for_update_ts updates it; an older one is a no-op.
        t.must_pessimistic_lock(b"k", b"k", 8, 15);
        t.must_pessimistic_lock(b"k", b"k", 8, 12);
        t.must_pessimistic_locked(b"k", 8, 15);
        // Another txn: locked, reported at once, nothing written.
        let resp = t.pessimistic_lock(&pessimistic_lock_req(&[b"a", b"k"], b"a", 20, 20));
        assert_eq!(resp.errors[0].locked.as_ref().unwrap().lock_version, 8);
        t.must_unlocked(b"a");
    }

    #[test]
    fn return_values_in_mutation_order() {
        let t = TestEngine::new();
        t.must_prewrite_put(b"b", b"vb", b"b", 5);
        t.must_commit(b"b", 5, 6);
        t.must_prewrite_put(b"c", &[3; 300], b"c", 5);
        t.must_commit(b"c", 5, 6);
        let mut req = pessimistic_lock_req(&[b"c", b"a", b"b"], b"c", 10, 10);
        req.return_values = true;
        let resp = t.pessimistic_lock(&req);
        assert!(resp.errors.is_empty());
        assert_eq!(resp.values, vec![vec![3; 300], vec![], b"vb".to_vec()]);
        assert_eq!(resp.not_founds, vec![false, true, false]);
        assert_eq!(t.cm.max_ts(), 10);
        // lock_only_if_exists skips absent keys.
        let mut req = pessimistic_lock_req(&[b"x", b"b2"], b"x", 15, 15);
        req.return_values = true;
        req.lock_only_if_exists = true;
        let resp = t.pessimistic_lock(&req);
        assert_eq!(resp.not_founds, vec![true, true]);
        t.must_unlocked(b"x");
        let mut req = pessimistic_lock_req(&[b"a", b"b"], b"c", 20, 20);
        req.check_existence = true;
        let resp = t.pessimistic_lock(&req);
        assert!(resp.errors[0].locked.is_some(), "still locked by txn 10");
        t.must_pessimistic_lock(b"d", b"d", 30, 30);
    }

    #[test]
    fn not_exist_assertion_and_rolled_back() {
        let t = TestEngine::new();
        t.must_prewrite_put(b"k", b"v", b"k", 5);
        t.must_commit(b"k", 5, 6);
        let mut req = pessimistic_lock_req(&[b"k"], b"k", 10, 10);
        req.mutations[0].assertion = Assertion::NotExist as i32;
        assert_eq!(
            t.pessimistic_lock(&req).errors[0]
                .already_exist
                .as_ref()
                .unwrap()
                .key,
            b"k"
        );
        t.must_rollback(b"r", 20);
        let resp = t.pessimistic_lock(&pessimistic_lock_req(&[b"r"], b"r", 20, 20));
        assert!(resp.errors[0]
            .abort
            .starts_with("PessimisticLockRolledBack"));
        // The rollback is found below a newer commit too.
        t.must_prewrite_put(b"r", b"v", b"r", 25);
        t.must_commit(b"r", 25, 26);
        let resp = t.pessimistic_lock(&pessimistic_lock_req(&[b"r"], b"r", 20, 30));
        assert!(resp.errors[0]
            .abort
            .starts_with("PessimisticLockRolledBack"));
    }

    #[test]
    fn pessimistic_rollback_respects_for_update_ts() {
        let t = TestEngine::new();
        t.must_pessimistic_lock(b"a", b"a", 10, 15);
        t.must_pessimistic_lock(b"b", b"a", 10, 15);
        t.must_prewrite_put(b"c", b"v", b"c", 10);
        let rollback = |fut: u64| {
            let req = PessimisticRollbackRequest {
                start_version: 10,
                for_update_ts: fut,
                keys: vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
                ..Default::default()
            };
            let out = t.with_snap(|s| super::pessimistic_rollback(s, &req).unwrap());
            t.apply(out)
        };
        rollback(14);
        t.must_pessimistic_locked(b"a", 10, 15);
        assert!(rollback(15).errors.is_empty());
        t.must_unlocked(b"a");
        t.must_unlocked(b"b");
        // Not a pessimistic lock: kept.
        t.must_locked(b"c", 10);
        t.must_no_write(b"a", 10);
    }

    #[test]
    fn heartbeat_extends_ttl() {
        let t = TestEngine::new();
        t.must_prewrite(&prewrite_req(
            vec![mutation(Op::Put, b"pk", b"v")],
            b"pk",
            10,
        ));
        let beat = |ttl: u64, ts: u64| {
            let req = TxnHeartBeatRequest {
                primary_lock: b"pk".to_vec(),
                start_version: ts,
                advise_lock_ttl: ttl,
                ..Default::default()
            };
            let out = t.with_snap(|s| super::txn_heartbeat(s, &req).unwrap());
            t.apply(out)
        };
        assert_eq!(beat(23000, 10).lock_ttl, 23000);
        assert_eq!(beat(5000, 10).lock_ttl, 23000, "never shortened");
        assert_eq!(t.must_locked(b"pk", 10).ttl, 23000);
        let e = beat(5000, 11).error.unwrap().txn_not_found.unwrap();
        assert_eq!(e.start_ts, 11);
    }
}
