//! Test helpers in TiKV's style: a real RocksDB engine in a temp dir, and
//! `must_*` helpers that build requests, run the public actions, apply their
//! modifies and panic on an unexpected outcome.

use proto::kvrpcpb::{
    self, Assertion, BatchRollbackRequest, CleanupRequest, CommitRequest, GetRequest, KeyError,
    Mutation, Op, PessimisticLockRequest, PrewriteRequest,
};
use tempfile::TempDir;

use super::{ConcurrencyManager, WriteOutcome};
use crate::engine::{Engine, Snapshot};
use crate::mvcc::{Lock, LockType, MvccReader, Write, WriteType};

pub(crate) struct TestEngine {
    pub engine: Engine,
    pub cm: ConcurrencyManager,
    _dir: TempDir,
}

pub(crate) fn mutation(op: Op, key: &[u8], value: &[u8]) -> Mutation {
    Mutation {
        op: op as i32,
        key: key.to_vec(),
        value: value.to_vec(),
        assertion: Assertion::None as i32,
    }
}

pub(crate) fn prewrite_req(mutations: Vec<Mutation>, pk: &[u8], ts: u64) -> PrewriteRequest {
    PrewriteRequest {
        mutations,
        primary_lock: pk.to_vec(),
        start_version: ts,
        lock_ttl: 3000,
        ..Default::default()
    }
}

/// A pessimistic prewrite: every key must hold its pessimistic lock.
pub(crate) fn pessimistic_prewrite_req(
    mutations: Vec<Mutation>,
    pk: &[u8],
    ts: u64,
    for_update_ts: u64,
) -> PrewriteRequest {
    let n = mutations.len();
    PrewriteRequest {
        for_update_ts,
        pessimistic_actions: vec![1; n],
        ..prewrite_req(mutations, pk, ts)
    }
}

pub(crate) fn pessimistic_lock_req(
    keys: &[&[u8]],
    pk: &[u8],
    ts: u64,
    for_update_ts: u64,
) -> PessimisticLockRequest {
    PessimisticLockRequest {
        mutations: keys
            .iter()
            .map(|k| mutation(Op::PessimisticLock, k, b""))
            .collect(),
        primary_lock: pk.to_vec(),
        start_version: ts,
        lock_ttl: 20000,
        for_update_ts,
        ..Default::default()
    }
}

impl TestEngine {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        TestEngine {
            engine,
            cm: ConcurrencyManager::new(1),
            _dir: dir,
        }
    }

    pub fn with_snap<T>(&self, f: impl FnOnce(&Snapshot<'_>) -> T) -> T {
        f(&self.engine.snapshot())
    }

    /// Applies a write outcome as the storage layer does and returns its response.
    pub fn apply<R>(&self, out: WriteOutcome<R>) -> R {
        self.engine.write(&out.modifies, false).unwrap();
        drop(out.guards);
        out.response
    }

    pub fn prewrite(&self, req: &PrewriteRequest) -> kvrpcpb::PrewriteResponse {
        let out = self.with_snap(|s| super::prewrite(s, &self.cm, req).unwrap());
        if !out.response.errors.is_empty() {
            assert!(out.modifies.is_empty(), "a failed prewrite writes nothing");
        }
        self.apply(out)
    }

    pub fn must_prewrite(&self, req: &PrewriteRequest) -> kvrpcpb::PrewriteResponse {
        let resp = self.prewrite(req);
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
        resp
    }

    pub fn prewrite_err(&self, req: &PrewriteRequest) -> KeyError {
        let resp = self.prewrite(req);
        resp.errors
            .into_iter()
            .next()
            .expect("prewrite should fail")
    }

    pub fn must_prewrite_put(&self, key: &[u8], value: &[u8], pk: &[u8], ts: u64) {
        self.must_prewrite(&prewrite_req(vec![mutation(Op::Put, key, value)], pk, ts));
    }

    pub fn must_prewrite_delete(&self, key: &[u8], pk: &[u8], ts: u64) {
        self.must_prewrite(&prewrite_req(vec![mutation(Op::Del, key, b"")], pk, ts));
    }

    pub fn must_prewrite_lock(&self, key: &[u8], pk: &[u8], ts: u64) {
        self.must_prewrite(&prewrite_req(vec![mutation(Op::Lock, key, b"")], pk, ts));
    }

    /// Async-commit prewrite with `max_ts` raised to `max_ts` first; returns
    /// the response's min_commit_ts.
    pub fn must_prewrite_put_async(
        &self,
        key: &[u8],
        value: &[u8],
        pk: &[u8],
        secondaries: &[&[u8]],
        ts: u64,
        max_ts: u64,
    ) -> u64 {
        self.cm.update_max_ts(max_ts);
        let mut req = prewrite_req(vec![mutation(Op::Put, key, value)], pk, ts);
        req.use_async_commit = true;
        req.secondaries = secondaries.iter().map(|s| s.to_vec()).collect();
        self.must_prewrite(&req).min_commit_ts
    }

    pub fn must_pessimistic_prewrite_put(
        &self,
        key: &[u8],
        value: &[u8],
        pk: &[u8],
        ts: u64,
        for_update_ts: u64,
    ) {
        let req =
            pessimistic_prewrite_req(vec![mutation(Op::Put, key, value)], pk, ts, for_update_ts);
        self.must_prewrite(&req);
    }

    pub fn commit(&self, key: &[u8], start_ts: u64, commit_ts: u64) -> kvrpcpb::CommitResponse {
        let req = CommitRequest {
            start_version: start_ts,
            keys: vec![key.to_vec()],
            commit_version: commit_ts,
            ..Default::default()
        };
        let out = self.with_snap(|s| super::commit(s, &self.cm, &req).unwrap());
        self.apply(out)
    }

    pub fn must_commit(&self, key: &[u8], start_ts: u64, commit_ts: u64) {
        let resp = self.commit(key, start_ts, commit_ts);
        assert_eq!(resp.error, None);
        assert_eq!(resp.commit_version, commit_ts);
    }

    pub fn commit_err(&self, key: &[u8], start_ts: u64, commit_ts: u64) -> KeyError {
        self.commit(key, start_ts, commit_ts)
            .error
            .expect("commit should fail")
    }

    pub fn must_rollback(&self, key: &[u8], start_ts: u64) {
        let req = BatchRollbackRequest {
            start_version: start_ts,
            keys: vec![key.to_vec()],
            ..Default::default()
        };
        let out = self.with_snap(|s| super::batch_rollback(s, &req).unwrap());
        assert_eq!(self.apply(out).error, None);
    }

    pub fn cleanup(&self, key: &[u8], start_ts: u64, current_ts: u64) -> kvrpcpb::CleanupResponse {
        let req = CleanupRequest {
            key: key.to_vec(),
            start_version: start_ts,
            current_ts,
            ..Default::default()
        };
        let out = self.with_snap(|s| super::cleanup(s, &self.cm, &req).unwrap());
        self.apply(out)
    }

    pub fn pessimistic_lock(
        &self,
        req: &PessimisticLockRequest,
    ) -> kvrpcpb::PessimisticLockResponse {
        let out = self.with_snap(|s| super::pessimistic_lock(s, &self.cm, req).unwrap());
        if !out.response.errors.is_empty() {
            assert!(out.modifies.is_empty(), "a failed lock writes nothing");
        }
        self.apply(out)
    }

    pub fn must_pessimistic_lock(&self, key: &[u8], pk: &[u8], ts: u64, for_update_ts: u64) {
        let resp = self.pessimistic_lock(&pessimistic_lock_req(&[key], pk, ts, for_update_ts));
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
    }

    pub fn get(&self, key: &[u8], ts: u64) -> kvrpcpb::GetResponse {
        let req = GetRequest {
            key: key.to_vec(),
            version: ts,
            ..Default::default()
        };
        self.with_snap(|s| super::kv_get(s, &self.cm, &req).unwrap())
    }

    pub fn must_get(&self, key: &[u8], ts: u64, value: &[u8]) {
        let resp = self.get(key, ts);
        assert_eq!(resp.error, None);
        assert!(!resp.not_found, "{key:?}@{ts} not found");
        assert_eq!(resp.value, value);
    }

    pub fn must_get_none(&self, key: &[u8], ts: u64) {
        let resp = self.get(key, ts);
        assert_eq!(resp.error, None);
        assert!(resp.not_found, "{key:?}@{ts} found {:?}", resp.value);
    }

    pub fn get_err(&self, key: &[u8], ts: u64) -> KeyError {
        self.get(key, ts).error.expect("get should fail")
    }

    pub fn lock(&self, key: &[u8]) -> Option<Lock> {
        self.with_snap(|s| MvccReader::new(s).load_lock(key).unwrap())
    }

    pub fn must_locked(&self, key: &[u8], start_ts: u64) -> Lock {
        let lock = self
            .lock(key)
            .unwrap_or_else(|| panic!("{key:?} not locked"));
        assert_eq!(lock.ts, start_ts);
        assert_ne!(lock.lock_type, LockType::Pessimistic);
        lock
    }

    pub fn must_pessimistic_locked(&self, key: &[u8], start_ts: u64, for_update_ts: u64) -> Lock {
        let lock = self
            .lock(key)
            .unwrap_or_else(|| panic!("{key:?} not locked"));
        assert_eq!((lock.ts, lock.for_update_ts), (start_ts, for_update_ts));
        assert_eq!(lock.lock_type, LockType::Pessimistic);
        lock
    }

    pub fn must_unlocked(&self, key: &[u8]) {
        assert_eq!(self.lock(key), None, "{key:?} still locked");
    }

    /// The commit record exactly at `commit_ts`, if any.
    pub fn write_at(&self, key: &[u8], commit_ts: u64) -> Option<Write> {
        self.with_snap(|s| {
            MvccReader::new(s)
                .seek_write(key, commit_ts)
                .unwrap()
                .filter(|(ts, _)| *ts == commit_ts)
                .map(|(_, w)| w)
        })
    }

    pub fn must_written(&self, key: &[u8], start_ts: u64, commit_ts: u64, ty: WriteType) -> Write {
        let w = self
            .write_at(key, commit_ts)
            .unwrap_or_else(|| panic!("no write at {commit_ts}"));
        assert_eq!((w.start_ts, w.write_type), (start_ts, ty));
        w
    }

    pub fn must_get_rollback(&self, key: &[u8], start_ts: u64, protected: bool) {
        let w = self.must_written(key, start_ts, start_ts, WriteType::Rollback);
        assert_eq!(w.protected, protected);
    }

    pub fn must_no_write(&self, key: &[u8], commit_ts: u64) {
        assert_eq!(self.write_at(key, commit_ts), None);
    }
}

/// A TSO timestamp from physical milliseconds and a logical counter.
pub(crate) fn tso(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << crate::mvcc::TSO_LOGICAL_BITS) | logical
}
