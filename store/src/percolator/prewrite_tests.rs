//! Tests of prewrite: conflicts, locks, constraints, idempotence, async
//! commit, 1PC, pessimistic prewrite and assertions.

use proto::kvrpcpb::{write_conflict::Reason, Assertion, AssertionLevel, Op};

use super::test_util::*;
use crate::mvcc::WriteType;

#[test]
fn write_conflict_with_newer_commit() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"k", b"v1", b"k", 5);
    t.must_commit(b"k", 5, 10);
    let e = t.prewrite_err(&prewrite_req(vec![mutation(Op::Put, b"k", b"v2")], b"k", 8));
    let c = e.conflict.expect("conflict");
    assert_eq!(
        (c.start_ts, c.conflict_ts, c.conflict_commit_ts),
        (8, 5, 10)
    );
    assert_eq!(c.reason, Reason::Optimistic as i32);
    assert!(!e.retryable.is_empty());
    t.must_unlocked(b"k");
    t.must_prewrite_put(b"k", b"v2", b"k", 12);
}

#[test]
fn locked_by_other_txn_writes_nothing() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"b", b"v", b"b", 10);
    let req = prewrite_req(
        vec![
            mutation(Op::Put, b"a", b"x"),
            mutation(Op::Put, b"b", b"x"),
            mutation(Op::Put, b"c", b"x"),
        ],
        b"a",
        12,
    );
    let resp = t.prewrite(&req);
    assert_eq!(resp.errors.len(), 1);
    let info = resp.errors[0].locked.as_ref().expect("locked");
    assert_eq!(
        (info.lock_version, info.key.as_slice(), info.lock_ttl),
        (10, &b"b"[..], 3000)
    );
    t.must_unlocked(b"a");
    t.must_unlocked(b"c");
}

#[test]
fn insert_and_check_not_exists() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"k", b"v", b"k", 5);
    t.must_commit(b"k", 5, 10);
    // A Lock record on top does not hide the Put.
    t.must_prewrite_lock(b"k", b"k", 11);
    t.must_commit(b"k", 11, 12);
    for op in [Op::Insert, Op::CheckNotExists] {
        let e = t.prewrite_err(&prewrite_req(vec![mutation(op, b"k", b"v")], b"k", 15));
        assert_eq!(e.already_exist.expect("already exists").key, b"k");
    }
    t.must_prewrite_delete(b"k", b"k", 20);
    t.must_commit(b"k", 20, 21);
    t.must_prewrite(&prewrite_req(
        vec![mutation(Op::CheckNotExists, b"k", b"")],
        b"k",
        25,
    ));
    t.must_unlocked(b"k");
    t.must_prewrite(&prewrite_req(
        vec![mutation(Op::Insert, b"k", b"new")],
        b"k",
        25,
    ));
    t.must_commit(b"k", 25, 26);
    t.must_get(b"k", 30, b"new");
}

#[test]
fn duplicate_prewrite_is_idempotent() {
    let t = TestEngine::new();
    let req = prewrite_req(vec![mutation(Op::Put, b"k", &[7; 300])], b"k", 10);
    t.must_prewrite(&req);
    let lock = t.must_locked(b"k", 10);
    assert_eq!(lock.short_value, None, "long value lives in the default CF");
    t.must_prewrite(&req);
    assert_eq!(t.must_locked(b"k", 10), lock);
    t.must_commit(b"k", 10, 11);
    t.must_get(b"k", 11, &[7; 300]);
}

#[test]
fn rollback_blocks_late_prewrite() {
    let t = TestEngine::new();
    t.must_rollback(b"k", 10);
    let e = t.prewrite_err(&prewrite_req(vec![mutation(Op::Put, b"k", b"v")], b"k", 10));
    assert_eq!(
        e.conflict.expect("conflict").reason,
        Reason::SelfRolledBack as i32
    );
    // A long value prewritten and rolled back leaves nothing behind.
    t.must_prewrite_put(b"l", &[1; 400], b"l", 20);
    t.must_rollback(b"l", 20);
    t.must_unlocked(b"l");
    t.with_snap(|s| {
        assert!(crate::mvcc::MvccReader::new(s)
            .load_default(b"l", 20)
            .is_err())
    });
}

#[test]
fn async_commit_min_commit_ts() {
    let t = TestEngine::new();
    let min = t.must_prewrite_put_async(b"pk", b"v", b"pk", &[b"s"], 10, 50);
    assert_eq!(min, 51);
    let lock = t.must_locked(b"pk", 10);
    assert!(lock.use_async_commit);
    assert_eq!(
        (lock.min_commit_ts, lock.secondaries.clone()),
        (51, vec![b"s".to_vec()])
    );
    // Secondaries carry the flag but not the list; max_ts moved on meanwhile.
    let min2 = t.must_prewrite_put_async(b"s", b"v", b"pk", &[b"s"], 10, 70);
    assert_eq!(min2, 71);
    let s = t.must_locked(b"s", 10);
    assert!(s.use_async_commit && s.secondaries.is_empty());
    // A retry returns the stored min_commit_ts.
    assert_eq!(
        t.must_prewrite_put_async(b"pk", b"v", b"pk", &[b"s"], 10, 90),
        51
    );
    // for_update_ts also bounds it from below.
    let mut req = pessimistic_prewrite_req(vec![mutation(Op::Put, b"p", b"v")], b"p", 100, 200);
    req.pessimistic_actions = vec![0];
    req.use_async_commit = true;
    assert_eq!(t.must_prewrite(&req).min_commit_ts, 201);
}

#[test]
fn async_commit_falls_back_past_max_commit_ts() {
    let t = TestEngine::new();
    t.cm.update_max_ts(50);
    let mut req = prewrite_req(vec![mutation(Op::Put, b"k", b"v")], b"k", 10);
    req.use_async_commit = true;
    req.max_commit_ts = 20;
    let resp = t.must_prewrite(&req);
    assert_eq!(resp.min_commit_ts, 0);
    assert!(!t.must_locked(b"k", 10).use_async_commit);
}

#[test]
fn one_pc_commits_directly_and_retries_succeed() {
    let t = TestEngine::new();
    t.cm.update_max_ts(40);
    let mut req = prewrite_req(
        vec![
            mutation(Op::Put, b"a", b"1"),
            mutation(Op::Del, b"b", b""),
            mutation(Op::Lock, b"c", b""),
        ],
        b"a",
        10,
    );
    req.try_one_pc = true;
    let resp = t.must_prewrite(&req);
    assert_eq!((resp.one_pc_commit_ts, resp.min_commit_ts), (41, 41));
    for k in [b"a", b"b", b"c"] {
        t.must_unlocked(k);
    }
    t.must_written(b"a", 10, 41, WriteType::Put);
    t.must_written(b"b", 10, 41, WriteType::Delete);
    t.must_written(b"c", 10, 41, WriteType::Lock);
    t.must_get(b"a", 41, b"1");
    t.must_get_none(b"a", 40);
    assert_eq!(t.cm.memory_lock_count(), 0);
    // The response was lost; the retry reports the same commit.
    assert_eq!(t.must_prewrite(&req).one_pc_commit_ts, 41);
}

#[test]
fn pessimistic_prewrite_replaces_pessimistic_lock() {
    let t = TestEngine::new();
    t.must_pessimistic_lock(b"k", b"k", 10, 12);
    t.must_pessimistic_prewrite_put(b"k", b"v", b"k", 10, 12);
    let lock = t.must_locked(b"k", 10);
    assert_eq!((lock.for_update_ts, lock.ttl), (12, 20000));
    t.must_commit(b"k", 10, 13);
    t.must_get(b"k", 13, b"v");
    // 1PC of a pessimistic txn removes its pessimistic lock.
    t.must_pessimistic_lock(b"k", b"k", 20, 20);
    let mut req = pessimistic_prewrite_req(vec![mutation(Op::Put, b"k", b"w")], b"k", 20, 20);
    req.try_one_pc = true;
    assert!(t.must_prewrite(&req).one_pc_commit_ts > 20);
    t.must_unlocked(b"k");
}

#[test]
fn pessimistic_prewrite_without_lock() {
    let t = TestEngine::new();
    // No lock, nothing newer: the lock is amended.
    t.must_pessimistic_prewrite_put(b"a", b"v", b"a", 10, 10);
    t.must_locked(b"a", 10);
    // No lock and a newer commit: PessimisticLockNotFound.
    t.must_prewrite_put(b"b", b"v", b"b", 15);
    t.must_commit(b"b", 15, 16);
    let req = pessimistic_prewrite_req(vec![mutation(Op::Put, b"b", b"x")], b"b", 12, 12);
    assert!(t
        .prewrite_err(&req)
        .abort
        .starts_with("PessimisticLockNotFound"));
    // Another txn's lock on a checked key: PessimisticLockNotFound too.
    let req = pessimistic_prewrite_req(vec![mutation(Op::Put, b"a", b"x")], b"a", 30, 30);
    assert!(t
        .prewrite_err(&req)
        .abort
        .starts_with("PessimisticLockNotFound"));
    // On an unchecked key: locked, with ttl 0 so the client resolves at once.
    let mut req = pessimistic_prewrite_req(vec![mutation(Op::Put, b"a", b"x")], b"a", 30, 30);
    req.pessimistic_actions = vec![0];
    assert_eq!(t.prewrite_err(&req).locked.expect("locked").lock_ttl, 0);
}

#[test]
fn optimistic_prewrite_over_pessimistic_lock_is_rejected() {
    let t = TestEngine::new();
    t.must_pessimistic_lock(b"k", b"k", 10, 10);
    let e = t.prewrite_err(&prewrite_req(vec![mutation(Op::Put, b"k", b"v")], b"k", 10));
    assert!(e.abort.starts_with("LockTypeNotMatch"));
}

#[test]
fn assertions() {
    let t = TestEngine::new();
    t.must_prewrite_put(b"k", b"v", b"k", 5);
    t.must_commit(b"k", 5, 10);
    let assert_req = |key: &[u8], assertion: Assertion| {
        let mut m = mutation(Op::Put, key, b"x");
        m.assertion = assertion as i32;
        let mut req = prewrite_req(vec![m], key, 20);
        req.assertion_level = AssertionLevel::Fast as i32;
        req
    };
    let e = t.prewrite_err(&assert_req(b"k", Assertion::NotExist));
    let failed = e.assertion_failed.expect("assertion failed");
    assert_eq!(
        (failed.existing_start_ts, failed.existing_commit_ts),
        (5, 10)
    );
    let e = t.prewrite_err(&assert_req(b"absent", Assertion::Exist));
    assert_eq!(
        e.assertion_failed
            .expect("assertion failed")
            .existing_commit_ts,
        0
    );
    t.must_prewrite(&assert_req(b"k", Assertion::Exist));
    t.must_prewrite(&assert_req(b"absent", Assertion::NotExist));
}

#[test]
fn invalid_op_is_rejected() {
    let t = TestEngine::new();
    let e = t.prewrite_err(&prewrite_req(
        vec![mutation(Op::Rollback, b"k", b"")],
        b"k",
        5,
    ));
    assert!(!e.abort.is_empty());
    let mut m = mutation(Op::Put, b"k", b"");
    m.op = 99;
    assert!(!t
        .prewrite_err(&prewrite_req(vec![m], b"k", 5))
        .abort
        .is_empty());
}
