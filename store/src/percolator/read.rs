//! Transactional reads: `KvGet`, `KvBatchGet`, `KvScan`, `KvScanLock`.
//!
//! A snapshot-isolation read at `version` first bumps `max_ts` and checks the
//! in-memory locks of async-commit / 1PC prewrites ([`read_check_keys`],
//! [`read_check_range`]); TiKV does this *before* taking the engine snapshot,
//! and a caller that can should too (the `kv_*` functions repeat the check,
//! which is harmless). Then locks in the engine that block the read are
//! reported as `KeyError.locked`, per pair for batch get and scan. Read
//! committed (`isolation_level = RC`) ignores locks; `resolved_locks` are
//! bypassed and `committed_locks` are read through, as in TiKV.

use proto::kvrpcpb::{
    BatchGetRequest, BatchGetResponse, Context, GetRequest, GetResponse, IsolationLevel, KeyError,
    KvPair, ScanLockRequest, ScanLockResponse, ScanRequest, ScanResponse,
};

use super::key_error::locked;
use super::{ConcurrencyManager, ResponseBudget, Result};
use crate::engine::Snapshot;
use crate::mvcc::scanner::{point_get, ReadOpts, ReadResult};
use crate::mvcc::{MvccReader, Scanner};

fn read_opts(ctx: Option<&Context>, ts: u64) -> ReadOpts {
    let default = Context::default();
    let ctx = ctx.unwrap_or(&default);
    ReadOpts {
        ts,
        bypass_locks: ctx.resolved_locks.clone(),
        access_locks: ctx.committed_locks.clone(),
        check_locks: ctx.isolation_level() != IsolationLevel::Rc,
    }
}

/// Bumps `max_ts` to `ts` and checks the in-memory locks of `keys`. Call
/// before taking the snapshot of a point read.
pub fn read_check_keys<'k>(
    cm: &ConcurrencyManager,
    ctx: Option<&Context>,
    ts: u64,
    keys: impl IntoIterator<Item = &'k [u8]>,
) -> std::result::Result<(), Box<KeyError>> {
    let opts = prepare(cm, ctx, ts);
    if !opts.check_locks {
        return Ok(());
    }
    for key in keys {
        cm.read_key_check(key, |lock| {
            lock.check_ts_conflict(key, ts, &opts.bypass_locks)
                .map_err(|info| Box::new(locked(*info)))
        })?;
    }
    Ok(())
}

/// Bumps `max_ts` to `ts` and checks the in-memory locks in `[lower, upper)`.
/// Call before taking the snapshot of a range read.
pub fn read_check_range(
    cm: &ConcurrencyManager,
    ctx: Option<&Context>,
    ts: u64,
    lower: &[u8],
    upper: Option<&[u8]>,
) -> std::result::Result<(), Box<KeyError>> {
    let opts = prepare(cm, ctx, ts);
    if !opts.check_locks {
        return Ok(());
    }
    cm.read_range_check(lower, upper, |key, lock| {
        lock.check_ts_conflict(key, ts, &opts.bypass_locks)
            .map_err(|info| Box::new(locked(*info)))
    })
}

/// Every read at `ts`, a `stale_read` one included, raises `max_ts`: this
/// store serves stale reads as ordinary leader reads (it keeps no resolved
/// ts that would make a lower safe point possible), and an async-commit or
/// 1PC prewrite must then commit above the read, or the read repeated would
/// see new data.
fn prepare(cm: &ConcurrencyManager, ctx: Option<&Context>, ts: u64) -> ReadOpts {
    cm.update_max_ts(ts);
    read_opts(ctx, ts)
}

pub fn kv_get(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &GetRequest,
) -> Result<GetResponse> {
    let ctx = req.context.as_ref();
    let mut resp = GetResponse::default();
    if let Err(e) = read_check_keys(cm, ctx, req.version, [req.key.as_slice()]) {
        resp.error = Some(*e);
        return Ok(resp);
    }
    let reader = MvccReader::new(snap);
    match point_get(&reader, &req.key, &read_opts(ctx, req.version), true)? {
        Ok(Some(value)) => resp.value = value,
        Ok(None) => resp.not_found = true,
        Err(info) => resp.error = Some(locked(*info)),
    }
    Ok(resp)
}

pub fn kv_batch_get(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &BatchGetRequest,
) -> Result<BatchGetResponse> {
    let ctx = req.context.as_ref();
    let keys = req.keys.iter().map(Vec::as_slice);
    if let Err(e) = read_check_keys(cm, ctx, req.version, keys) {
        // TiKV also sets a pair carrying the error, for older clients.
        return Ok(BatchGetResponse {
            pairs: vec![error_pair(Vec::new(), (*e).clone())],
            error: Some(*e),
            ..Default::default()
        });
    }
    let reader = MvccReader::new(snap);
    let opts = read_opts(ctx, req.version);
    let mut pairs = Vec::new();
    let mut budget = ResponseBudget::default();
    for key in &req.keys {
        let result = point_get(&reader, key, &opts, true)?;
        let pair = to_pair(key.clone(), result);
        budget.charge(pair.as_ref().map_or(0, pair_size))?;
        pairs.extend(pair);
    }
    Ok(BatchGetResponse {
        pairs,
        ..Default::default()
    })
}

fn to_pair(key: Vec<u8>, result: ReadResult) -> Option<KvPair> {
    match result {
        Ok(Some(value)) => Some(KvPair {
            key,
            value,
            ..Default::default()
        }),
        Ok(None) => None,
        Err(info) => Some(error_pair(key, locked(*info))),
    }
}

fn pair_size(p: &KvPair) -> usize {
    p.key.len() + p.value.len()
}

fn error_pair(key: Vec<u8>, error: KeyError) -> KvPair {
    KvPair {
        key,
        error: Some(error),
        ..Default::default()
    }
}

/// Scans `[lower, upper)` (already clipped to the region; a reverse request's
/// bounds already swapped by the caller) in the request's direction.
pub fn kv_scan(
    snap: &Snapshot<'_>,
    cm: &ConcurrencyManager,
    req: &ScanRequest,
    lower: &[u8],
    upper: Option<&[u8]>,
) -> Result<ScanResponse> {
    let ctx = req.context.as_ref();
    if let Err(e) = read_check_range(cm, ctx, req.version, lower, upper) {
        return Ok(ScanResponse {
            error: Some(*e),
            ..Default::default()
        });
    }
    let mut pairs = Vec::new();
    let limit = req.limit as usize;
    if limit == 0 || upper.is_some_and(|u| u <= lower) {
        return Ok(ScanResponse::default());
    }
    let reader = MvccReader::new(snap);
    let opts = read_opts(ctx, req.version);
    let mut scanner = Scanner::new(&reader, lower, upper, opts, req.reverse)?;
    let mut budget = ResponseBudget::default();
    while pairs.len() < limit {
        let Some((key, result)) = scanner.next_entry(!req.key_only)? else {
            break;
        };
        let pair = to_pair(key, result);
        budget.charge(pair.as_ref().map_or(0, pair_size))?;
        pairs.extend(pair);
    }
    Ok(ScanResponse {
        pairs,
        ..Default::default()
    })
}

/// Locks with `ts <= max_version` in `[lower, upper)`, at most `limit`
/// (0 = all).
pub fn kv_scan_lock(
    snap: &Snapshot<'_>,
    req: &ScanLockRequest,
    lower: &[u8],
    upper: Option<&[u8]>,
) -> Result<ScanLockResponse> {
    if upper.is_some_and(|u| u <= lower) {
        return Ok(ScanLockResponse::default());
    }
    let reader = MvccReader::new(snap);
    let max_version = req.max_version;
    let locks = reader.scan_locks(lower, upper, |l| l.ts <= max_version, req.limit as usize)?;
    Ok(ScanLockResponse {
        locks: locks
            .into_iter()
            .map(|(key, lock)| lock.to_lock_info(&key))
            .collect(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use proto::kvrpcpb::{IsolationLevel, Op};

    use super::*;
    use crate::percolator::test_util::*;

    fn setup() -> TestEngine {
        let t = TestEngine::new();
        for (k, v) in [
            (b"a", b"1"),
            (b"b", b"2"),
            (b"c", b"3"),
            (b"d", b"4"),
            (b"e", b"5"),
        ] {
            t.must_prewrite_put(k, v, k, 5);
            t.must_commit(k, 5, 10);
        }
        t.must_prewrite_delete(b"c", b"c", 15);
        t.must_commit(b"c", 15, 20);
        t.must_prewrite_put(b"d", b"4x", b"d", 25);
        t.must_prewrite_put(b"f", b"6", b"d", 26);
        t
    }

    fn scan(t: &TestEngine, req: &ScanRequest, lower: &[u8], upper: Option<&[u8]>) -> Vec<String> {
        let resp = t.with_snap(|s| kv_scan(s, &t.cm, req, lower, upper).unwrap());
        assert_eq!(resp.error, None);
        resp.pairs
            .into_iter()
            .map(|p| match p.error {
                Some(e) => format!(
                    "{}!{}",
                    String::from_utf8(p.key).unwrap(),
                    e.locked.unwrap().lock_version
                ),
                None => format!(
                    "{}={}",
                    String::from_utf8(p.key).unwrap(),
                    String::from_utf8(p.value).unwrap()
                ),
            })
            .collect()
    }

    fn scan_req(ts: u64, limit: u32, reverse: bool) -> ScanRequest {
        ScanRequest {
            version: ts,
            limit,
            reverse,
            ..Default::default()
        }
    }

    #[test]
    fn scan_forward_and_reverse_with_limit_and_locks() {
        let t = setup();
        let fwd = scan(&t, &scan_req(30, 100, false), b"", None);
        assert_eq!(fwd, ["a=1", "b=2", "d!25", "e=5", "f!26"]);
        assert_eq!(scan(&t, &scan_req(30, 2, false), b"", None), ["a=1", "b=2"]);
        assert_eq!(
            scan(&t, &scan_req(30, 2, false), b"b", Some(b"e")),
            ["b=2", "d!25"]
        );
        let rev = scan(&t, &scan_req(30, 100, true), b"", None);
        assert_eq!(rev, ["f!26", "e=5", "d!25", "b=2", "a=1"]);
        assert_eq!(
            scan(&t, &scan_req(30, 3, true), b"", Some(b"e")),
            ["d!25", "b=2", "a=1"]
        );
        assert_eq!(
            scan(&t, &scan_req(30, 0, false), b"", None),
            Vec::<String>::new()
        );
        // Before the delete and the locks.
        let old = scan(&t, &scan_req(12, 100, false), b"", None);
        assert_eq!(old, ["a=1", "b=2", "c=3", "d=4", "e=5"]);
        let mut key_only = scan_req(12, 100, true);
        key_only.key_only = true;
        assert_eq!(scan(&t, &key_only, b"b", Some(b"d")), ["c=", "b="]);
    }

    /// A forward scan finds each key's visible version on its own write cursor; a reverse
    /// scan looks it up as a point get does. Both agree at every timestamp, past lock and
    /// rollback records, deletes, and long values kept in the default CF.
    #[test]
    fn forward_and_reverse_scans_agree_across_versions() {
        let t = TestEngine::new();
        let long = "v".repeat(300);
        t.must_prewrite_put(b"a", long.as_bytes(), b"a", 5);
        t.must_commit(b"a", 5, 10);
        t.must_prewrite_lock(b"a", b"a", 15);
        t.must_commit(b"a", 15, 20);
        t.must_rollback(b"a", 24);
        t.must_prewrite_put(b"a", b"new", b"a", 28);
        t.must_commit(b"a", 28, 30);
        t.must_prewrite_put(b"b", b"1", b"b", 6);
        t.must_commit(b"b", 6, 12);
        t.must_prewrite_delete(b"b", b"b", 16);
        t.must_commit(b"b", 16, 18);
        t.must_prewrite_put(b"c", b"3", b"c", 35);
        t.must_commit(b"c", 35, 40);
        let a_long = format!("a={long}");
        let want: [(u64, Vec<&str>); 6] = [
            (9, vec![]),
            (11, vec![&a_long]),
            (13, vec![&a_long, "b=1"]),
            (27, vec![&a_long]),
            (31, vec!["a=new"]),
            (45, vec!["a=new", "c=3"]),
        ];
        for (ts, want) in want {
            let fwd = scan(&t, &scan_req(ts, 100, false), b"", None);
            let mut rev = scan(&t, &scan_req(ts, 100, true), b"", None);
            rev.reverse();
            assert_eq!(fwd, want, "forward at {ts}");
            assert_eq!(rev, want, "reverse at {ts}");
        }
    }

    #[test]
    fn scan_honours_isolation_and_lock_hints() {
        let t = setup();
        let mut req = scan_req(30, 100, false);
        req.context = Some(Context {
            isolation_level: IsolationLevel::Rc as i32,
            ..Default::default()
        });
        assert_eq!(scan(&t, &req, b"", None), ["a=1", "b=2", "d=4", "e=5"]);
        req.context = Some(Context {
            resolved_locks: vec![25],
            committed_locks: vec![26],
            ..Default::default()
        });
        assert_eq!(
            scan(&t, &req, b"", None),
            ["a=1", "b=2", "d=4", "e=5", "f=6"]
        );
    }

    #[test]
    fn batch_get_reports_pairs_and_locks() {
        let t = setup();
        let req = BatchGetRequest {
            keys: vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec(), b"zz".to_vec()],
            version: 30,
            ..Default::default()
        };
        let resp = t.with_snap(|s| kv_batch_get(s, &t.cm, &req).unwrap());
        assert_eq!(resp.error, None);
        assert_eq!(resp.pairs.len(), 2);
        assert_eq!(
            (resp.pairs[0].key.as_slice(), resp.pairs[0].value.as_slice()),
            (&b"a"[..], &b"1"[..])
        );
        assert_eq!(
            resp.pairs[1]
                .error
                .as_ref()
                .unwrap()
                .locked
                .as_ref()
                .unwrap()
                .key,
            b"d"
        );
        assert_eq!(t.cm.max_ts(), 30, "reads bump max_ts");
    }

    #[test]
    fn memory_locks_block_reads_until_applied() {
        let t = TestEngine::new();
        t.cm.update_max_ts(50);
        let mut req = prewrite_req(vec![mutation(Op::Put, b"k", b"v")], b"k", 10);
        req.use_async_commit = true;
        let out = t.with_snap(|s| crate::percolator::prewrite(s, &t.cm, &req).unwrap());
        assert_eq!(out.response.min_commit_ts, 51);
        assert_eq!(out.guards.len(), 1);
        // Not applied yet: only the memory table knows the lock.
        assert!(t.get_err(b"k", 60).locked.is_some());
        assert!(read_check_range(&t.cm, None, 60, b"a", Some(b"z")).is_err());
        assert!(read_check_keys(&t.cm, None, 40, [&b"k"[..]]).is_ok());
        t.apply(out);
        assert_eq!(t.cm.memory_lock_count(), 0);
        assert!(t.get_err(b"k", 60).locked.is_some(), "now from the engine");
        t.must_get_none(b"k", 50);
    }

    #[test]
    fn stale_read_still_pushes_max_ts_so_async_commit_lands_above_it() {
        let t = TestEngine::new();
        let stale = Context {
            stale_read: true,
            ..Default::default()
        };
        let req = GetRequest {
            context: Some(stale),
            key: b"k".to_vec(),
            version: 100,
        };
        let resp = t.with_snap(|s| kv_get(s, &t.cm, &req).unwrap());
        assert!(resp.not_found);
        let mut prewrite = prewrite_req(vec![mutation(Op::Put, b"k", b"v")], b"k", 10);
        prewrite.use_async_commit = true;
        let out = t.with_snap(|s| crate::percolator::prewrite(s, &t.cm, &prewrite).unwrap());
        assert!(
            out.response.min_commit_ts > 100,
            "async commit at {} would rewrite what the stale read at 100 saw",
            out.response.min_commit_ts
        );
    }

    #[test]
    fn a_scan_over_the_response_budget_fails_clearly() {
        let t = TestEngine::new();
        let big = vec![b'v'; 1 << 20];
        let n = crate::percolator::MAX_READ_RESPONSE_BYTES / big.len() + 2;
        for i in 0..n {
            let key = format!("k{i:03}");
            t.must_prewrite_put(key.as_bytes(), &big, key.as_bytes(), 5);
            t.must_commit(key.as_bytes(), 5, 6);
        }
        let req = scan_req(10, u32::MAX, false);
        let err = t
            .with_snap(|s| kv_scan(s, &t.cm, &req, b"", None))
            .unwrap_err();
        assert!(
            matches!(err, crate::percolator::TxnError::ResponseTooLarge { .. }),
            "{err}"
        );
        let mut key_only = scan_req(10, u32::MAX, false);
        key_only.key_only = true;
        let keys = t.with_snap(|s| kv_scan(s, &t.cm, &key_only, b"", None).unwrap());
        assert_eq!(keys.pairs.len(), n);
    }

    #[test]
    fn scan_lock_by_max_version_and_limit() {
        let t = setup();
        let lock_scan = |max_version, limit| {
            let req = ScanLockRequest {
                max_version,
                limit,
                ..Default::default()
            };
            let resp = t.with_snap(|s| kv_scan_lock(s, &req, b"", None).unwrap());
            resp.locks.into_iter().map(|l| l.key).collect::<Vec<_>>()
        };
        assert_eq!(lock_scan(100, 0), [b"d".to_vec(), b"f".to_vec()]);
        assert_eq!(lock_scan(25, 0), [b"d".to_vec()]);
        assert_eq!(lock_scan(100, 1), [b"d".to_vec()]);
        assert!(lock_scan(24, 0).is_empty());
    }
}
