//! Tests of lock resolution: check_txn_status (every response shape),
//! cleanup, batch rollback, check_secondary_locks and resolve_lock.

use proto::kvrpcpb::{
    Action, CheckSecondaryLocksRequest, CheckSecondaryLocksResponse, CheckTxnStatusRequest,
    CheckTxnStatusResponse, Op, ResolveLockRequest, ResolveLockResponse, TxnInfo,
};

use super::test_util::*;
use crate::mvcc::WriteType;

fn status_req(
    pk: &[u8],
    lock_ts: u64,
    caller_start_ts: u64,
    current_ts: u64,
) -> CheckTxnStatusRequest {
    CheckTxnStatusRequest {
        primary_key: pk.to_vec(),
        lock_ts,
        caller_start_ts,
        current_ts,
        ..Default::default()
    }
}

/// Runs check_txn_status and asserts the client-accepted response shape.
fn check_status(t: &TestEngine, req: &CheckTxnStatusRequest) -> CheckTxnStatusResponse {
    let out = t.with_snap(|s| super::check_txn_status(s, &t.cm, req).unwrap());
    let r = t.apply(out);
    let shape = (r.commit_version, r.lock_ttl, r.lock_info.is_some());
    let ok = matches!(shape, (0, 0, false) | (1.., 0, false) | (0, 1.., true));
    assert!(r.error.is_some() || ok, "bad shape {shape:?}");
    assert!(Action::try_from(r.action).is_ok());
    r
}

fn action(r: &CheckTxnStatusResponse) -> Action {
    Action::try_from(r.action).unwrap()
}

#[test]
fn check_txn_status_live_lock_and_min_commit_ts_push() {
    let t = TestEngine::new();
    let ts = tso(100, 0);
    let mut req = prewrite_req(vec![mutation(Op::Put, b"pk", b"v")], b"pk", ts);
    req.min_commit_ts = ts + 1;
    t.must_prewrite(&req);
    let r = check_status(&t, &status_req(b"pk", ts, ts + 5, tso(101, 0)));
    assert_eq!((r.lock_ttl, action(&r)), (3000, Action::MinCommitTsPushed));
    assert_eq!(r.lock_info.unwrap().key, b"pk");
    assert_eq!(t.must_locked(b"pk", ts).min_commit_ts, tso(101, 0));
    // A caller below min_commit_ts needs no push.
    let r = check_status(&t, &status_req(b"pk", ts, ts + 2, tso(101, 0)));
    assert_eq!(action(&r), Action::MinCommitTsPushed);
    assert_eq!(t.must_locked(b"pk", ts).min_commit_ts, tso(101, 0));
    // A lock without min_commit_ts is never pushed.
    t.must_prewrite_put(b"q", b"v", b"q", ts);
    let r = check_status(&t, &status_req(b"q", ts, ts + 5, tso(101, 0)));
    assert_eq!(action(&r), Action::NoAction);
    assert_eq!(t.must_locked(b"q", ts).min_commit_ts, 0);
}

#[test]
fn check_txn_status_expired_lock_is_rolled_back() {
    let t = TestEngine::new();
    let ts = tso(100, 0);
    t.must_prewrite_put(b"pk", b"v", b"pk", ts);
    let r = check_status(&t, &status_req(b"pk", ts, 0, tso(3101, 0)));
    assert_eq!(action(&r), Action::TtlExpireRollback);
    t.must_unlocked(b"pk");
    t.must_get_rollback(b"pk", ts, false);
    // Asked again: rolled back, no action.
    let r = check_status(&t, &status_req(b"pk", ts, 0, tso(3101, 0)));
    assert_eq!(action(&r), Action::NoAction);
    // A ttl-0 LockInfo makes the client pass current_ts = MAX.
    t.must_prewrite_put(b"k2", b"v", b"k2", tso(200, 0));
    let r = check_status(&t, &status_req(b"k2", tso(200, 0), 0, u64::MAX));
    assert_eq!(action(&r), Action::TtlExpireRollback);
}

#[test]
fn check_txn_status_committed_and_missing() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"pk", b"v", b"pk", 10);
    t.must_commit(b"pk", 10, 15);
    assert_eq!(
        check_status(&t, &status_req(b"pk", 10, 0, 20)).commit_version,
        15
    );
    // No lock, no record.
    let r = check_status(&t, &status_req(b"pk", 12, 0, 20));
    let nf = r
        .error
        .expect("error")
        .txn_not_found
        .expect("txn_not_found");
    assert_eq!((nf.start_ts, nf.primary_key.as_slice()), (12, &b"pk"[..]));
    let mut req = status_req(b"pk", 12, 0, 20);
    req.rollback_if_not_exist = true;
    assert_eq!(
        action(&check_status(&t, &req)),
        Action::LockNotExistRollback
    );
    t.must_get_rollback(b"pk", 12, true);
    let late = prewrite_req(vec![mutation(Op::Put, b"pk", b"v")], b"pk", 12);
    assert!(t.prewrite_err(&late).conflict.is_some());
}

#[test]
fn check_txn_status_primary_mismatch() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"s", b"v", b"pk", 10);
    let mut req = status_req(b"s", 10, 0, 20);
    req.verify_is_primary = true;
    let e = check_status(&t, &req).error.expect("error");
    let info = e
        .primary_mismatch
        .expect("primary_mismatch")
        .lock_info
        .unwrap();
    assert_eq!(
        (info.key.as_slice(), info.primary_lock.as_slice()),
        (&b"s"[..], &b"pk"[..])
    );
    t.must_locked(b"s", 10);
}

#[test]
fn check_txn_status_async_commit_is_not_rolled_back() {
    let t = TestEngine::new();
    t.must_prewrite_put_async(b"pk", b"v", b"pk", &[b"s"], 10, 0);
    let r = check_status(&t, &status_req(b"pk", 10, 0, u64::MAX));
    assert_eq!(action(&r), Action::NoAction);
    assert!(r.lock_info.unwrap().use_async_commit);
    let mut req = status_req(b"pk", 10, 0, u64::MAX);
    req.force_sync_commit = true;
    assert_eq!(action(&check_status(&t, &req)), Action::TtlExpireRollback);
    t.must_unlocked(b"pk");
}

#[test]
fn check_txn_status_resolving_pessimistic_lock() {
    let t = TestEngine::new();
    t.must_pessimistic_lock(b"pk", b"pk", 10, 10);
    let mut req = status_req(b"pk", 10, 0, u64::MAX);
    req.resolving_pessimistic_lock = true;
    assert_eq!(
        action(&check_status(&t, &req)),
        Action::TtlExpirePessimisticRollback
    );
    t.must_unlocked(b"pk");
    t.must_no_write(b"pk", 10);
    req.rollback_if_not_exist = true;
    assert_eq!(
        action(&check_status(&t, &req)),
        Action::LockNotExistDoNothing
    );
    // Without the flag, an expired pessimistic primary leaves a protected rollback.
    t.must_pessimistic_lock(b"pk", b"pk", 20, 20);
    assert_eq!(
        action(&check_status(&t, &status_req(b"pk", 20, 0, u64::MAX))),
        Action::TtlExpireRollback
    );
    t.must_get_rollback(b"pk", 20, true);
}

#[test]
fn cleanup_committed_locked_and_missing() {
    let t = TestEngine::new();
    let ts = tso(100, 0);
    t.must_prewrite_put(b"k", b"v", b"k", ts);
    // Live lock with a current_ts: locked.
    assert!(t
        .cleanup(b"k", ts, tso(200, 0))
        .error
        .unwrap()
        .locked
        .is_some());
    // current_ts 0: roll back whatever the TTL.
    assert_eq!(t.cleanup(b"k", ts, 0), Default::default());
    t.must_unlocked(b"k");
    t.must_get_rollback(b"k", ts, false);
    t.must_prewrite_put(b"c", b"v", b"c", 10);
    t.must_commit(b"c", 10, 12);
    assert_eq!(t.cleanup(b"c", 10, 0).commit_version, 12);
    // Missing lock: a protected rollback.
    assert_eq!(t.cleanup(b"m", 10, 0), Default::default());
    t.must_get_rollback(b"m", 10, true);
}

#[test]
fn rollback_collapses_older_unprotected_rollbacks() {
    let t = TestEngine::new();
    t.must_rollback(b"k", 10);
    t.must_rollback(b"k", 20);
    t.must_no_write(b"k", 10);
    t.must_get_rollback(b"k", 20, false);
    // A committed key cannot be rolled back.
    t.must_prewrite_put(b"c", b"v", b"c", 30);
    t.must_commit(b"c", 30, 31);
    let req = proto::kvrpcpb::BatchRollbackRequest {
        start_version: 30,
        keys: vec![b"c".to_vec()],
        ..Default::default()
    };
    let out = t.with_snap(|s| super::batch_rollback(s, &req).unwrap());
    assert!(out.response.error.unwrap().abort.starts_with("Committed"));
    assert!(out.modifies.is_empty());
}

#[test]
fn overlapped_rollback_is_kept_in_commit_record() {
    let t = TestEngine::new();
    // Txn 10 holds a lock; txn 15 is rolled back (protected) meanwhile and
    // txn 10 then commits exactly at 15.
    t.must_prewrite_put(b"k", b"v", b"k", 10);
    let mut req = status_req(b"k", 15, 0, 20);
    req.rollback_if_not_exist = true;
    check_status(&t, &req);
    assert_eq!(t.must_locked(b"k", 10).rollback_ts, vec![15]);
    t.must_commit(b"k", 10, 15);
    assert!(
        t.must_written(b"k", 10, 15, WriteType::Put)
            .has_overlapped_rollback
    );
    assert_eq!(action(&check_status(&t, &req)), Action::NoAction);
}

#[test]
fn rollback_ts_survives_pessimistic_prewrite() {
    let t = TestEngine::new();
    t.must_pessimistic_lock(b"k", b"k", 10, 10);
    let mut req = status_req(b"k", 15, 0, 20);
    req.rollback_if_not_exist = true;
    check_status(&t, &req);
    assert_eq!(
        t.must_pessimistic_locked(b"k", 10, 10).rollback_ts,
        vec![15]
    );
    t.must_pessimistic_lock(b"k", b"k", 10, 12);
    assert_eq!(
        t.must_pessimistic_locked(b"k", 10, 12).rollback_ts,
        vec![15]
    );
    t.must_pessimistic_prewrite_put(b"k", b"v", b"k", 10, 12);
    assert_eq!(t.must_locked(b"k", 10).rollback_ts, vec![15]);
    t.must_commit(b"k", 10, 15);
    assert!(
        t.must_written(b"k", 10, 15, WriteType::Put)
            .has_overlapped_rollback
    );
}

fn check_secondaries(t: &TestEngine, keys: &[&[u8]], ts: u64) -> CheckSecondaryLocksResponse {
    let req = CheckSecondaryLocksRequest {
        keys: keys.iter().map(|k| k.to_vec()).collect(),
        start_version: ts,
        ..Default::default()
    };
    let out = t.with_snap(|s| super::check_secondary_locks(s, &t.cm, &req).unwrap());
    t.apply(out)
}

#[test]
fn check_secondary_locks_statuses() {
    let t = TestEngine::new();
    t.must_prewrite_put_async(b"a", b"v", b"a", &[b"b"], 10, 0);
    t.must_prewrite_put_async(b"b", b"v", b"a", &[b"b"], 10, 0);
    let r = check_secondaries(&t, &[b"a", b"b"], 10);
    assert_eq!((r.locks.len(), r.commit_ts), (2, 0));
    t.must_commit(b"b", 10, 20);
    assert_eq!(check_secondaries(&t, &[b"a", b"b"], 10).commit_ts, 20);
    // A missing secondary: rolled back for good.
    let r = check_secondaries(&t, &[b"x"], 30);
    assert_eq!(r, Default::default());
    t.must_get_rollback(b"x", 30, true);
    // A leftover pessimistic lock: unlocked and rolled back.
    t.must_pessimistic_lock(b"p", b"p", 40, 40);
    assert_eq!(check_secondaries(&t, &[b"p"], 40), Default::default());
    t.must_unlocked(b"p");
    t.must_get_rollback(b"p", 40, true);
}

/// Resolves as the storage layer does: the keys named, or the whole range
/// in batches of two keys.
fn resolve(t: &TestEngine, req: &ResolveLockRequest) -> ResolveLockResponse {
    if !req.keys.is_empty() {
        let out = t.with_snap(|s| super::resolve_lock(s, req).unwrap());
        return t.apply(out);
    }
    let statuses = super::txn_statuses(req);
    let mut from = Vec::new();
    for _ in 0..100 {
        let keys = t.with_snap(|s| {
            super::scan_resolvable_keys(s, &statuses, &from, None, 2, usize::MAX).unwrap()
        });
        let Some(last) = keys.last() else {
            return ResolveLockResponse::default();
        };
        from = [last.as_slice(), &[0]].concat();
        let out = t.with_snap(|s| super::resolve_locks_of(s, &statuses, &keys).unwrap());
        let resp = t.apply(out);
        if resp.error.is_some() {
            return resp;
        }
    }
    panic!("resolving never finished");
}

#[test]
fn resolve_lock_without_keys_commits_or_rolls_back_the_txn() {
    let t = TestEngine::new();
    for k in [b"a", b"b", b"c"] {
        t.must_prewrite_put(k, b"v", b"a", 10);
    }
    t.must_prewrite_put(b"d", b"v", b"d", 11);
    let req = ResolveLockRequest {
        start_version: 10,
        commit_version: 15,
        ..Default::default()
    };
    assert_eq!(resolve(&t, &req).error, None);
    for k in [b"a", b"b", b"c"] {
        t.must_written(k, 10, 15, WriteType::Put);
    }
    t.must_locked(b"d", 11);
    let req = ResolveLockRequest {
        start_version: 11,
        ..Default::default()
    };
    resolve(&t, &req);
    t.must_unlocked(b"d");
    t.must_get_rollback(b"d", 11, false);
}

#[test]
fn resolve_lock_with_keys_and_txn_infos() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"a", b"v", b"a", 10);
    t.must_prewrite_put(b"b", b"v", b"a", 10);
    let req = ResolveLockRequest {
        start_version: 10,
        commit_version: 12,
        keys: vec![b"a".to_vec()],
        ..Default::default()
    };
    resolve(&t, &req);
    t.must_written(b"a", 10, 12, WriteType::Put);
    t.must_locked(b"b", 10);
    t.must_prewrite_put(b"c", b"v", b"c", 20);
    let req = ResolveLockRequest {
        txn_infos: vec![
            TxnInfo {
                txn: 10,
                status: 12,
                ..Default::default()
            },
            TxnInfo {
                txn: 20,
                status: 0,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    resolve(&t, &req);
    t.must_written(b"b", 10, 12, WriteType::Put);
    t.must_unlocked(b"c");
    // Rolling back a committed key is refused and writes nothing.
    let req = ResolveLockRequest {
        start_version: 10,
        keys: vec![b"a".to_vec()],
        ..Default::default()
    };
    assert!(resolve(&t, &req)
        .error
        .unwrap()
        .abort
        .starts_with("Committed"));
}
