//! Garbage collection of old versions and whole-range deletion.
//!
//! [`gc_keys`] keeps, for each key, every record newer than the safe point
//! plus the newest Put at or below it (what a read at the safe point sees);
//! it drops older versions with their long values, Lock and Rollback records
//! below the safe point, and a Delete at or below the safe point along with
//! everything older. Locks are left alone: clients resolve them before GC.
//! A region is collected in bounded batches: [`scan_write_keys`] picks the
//! next keys, the caller latches them and runs [`gc_keys`] on them.
//! [`delete_range`] removes all transactional data of a user-key range.

use std::ops::ControlFlow;

use proto::kvrpcpb::DeleteRangeRequest;

use super::Result;
use crate::engine::{Modify, Snapshot, CF_DEFAULT, CF_LOCK, CF_WRITE};
use crate::mvcc::codec::{prefix_end, split_ts, txn_range};
use crate::mvcc::reader::decode_user_key;
use crate::mvcc::{MvccReader, MvccTxn, Write, WriteType};

/// Up to `limit` user keys with commit records in `[lower, upper)`, in
/// order: the next batch a region-wide GC works on.
pub fn scan_write_keys(
    snap: &Snapshot<'_>,
    lower: &[u8],
    upper: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Vec<u8>>> {
    let (start, end) = txn_range(lower, upper);
    let mut cursor = snap.cursor(CF_WRITE, Some(start), Some(end))?;
    cursor.seek_to_first();
    let mut keys = Vec::new();
    while keys.len() < limit && cursor.valid()? {
        let (prefix, _) = split_ts(cursor.key()).map_err(|_| super::TxnError::Corrupt {
            cf: CF_WRITE,
            key: cursor.key().to_vec(),
        })?;
        let prefix = prefix.to_vec();
        keys.push(decode_user_key(&prefix)?);
        cursor.seek(&prefix_end(&prefix));
    }
    Ok(keys)
}

/// What one GC batch produced.
#[derive(Debug, Default)]
pub struct GcBatch {
    pub modifies: Vec<Modify>,
    /// The key the batch stopped inside (its `limit` was reached there); the
    /// next batch starts again at it. None: every key was collected.
    pub resume: Option<Vec<u8>>,
}

/// The modifies that garbage-collect `keys` at `safe_point`: at most `limit`
/// records, about `max_bytes` of writes. Collecting is idempotent: what was
/// dropped is gone, so running a batch again after applying it makes
/// progress.
pub fn gc_keys(
    snap: &Snapshot<'_>,
    safe_point: u64,
    keys: &[Vec<u8>],
    limit: usize,
    max_bytes: usize,
) -> Result<GcBatch> {
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new();
    let mut dropped = 0;
    for key in keys {
        // Each record dropped deletes a versioned key, and maybe its value.
        let per_record = 2 * (key.len() + 24);
        let room = limit
            .saturating_sub(dropped)
            .min((max_bytes / per_record).max(1));
        let n = gc_key(&mut txn, &reader, key, safe_point, room)?;
        dropped += n;
        if n >= room {
            return Ok(GcBatch {
                modifies: txn.into_modifies(),
                resume: Some(key.clone()),
            });
        }
    }
    Ok(GcBatch {
        modifies: txn.into_modifies(),
        resume: None,
    })
}

/// Collects the garbage of one key, at most `limit` records; returns how
/// many records it drops.
fn gc_key(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    safe_point: u64,
    limit: usize,
) -> Result<usize> {
    let mut dropped = 0;
    let mut kept_data = false;
    reader.for_each_write(key, safe_point, |commit_ts, write| {
        let drop = match write.write_type {
            _ if kept_data => true,
            WriteType::Put => {
                kept_data = true;
                false
            }
            WriteType::Delete => {
                kept_data = true;
                true
            }
            WriteType::Lock | WriteType::Rollback => true,
        };
        if drop {
            drop_version(txn, key, commit_ts, &write);
            dropped += 1;
        }
        if dropped >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(dropped)
}

fn drop_version(txn: &mut MvccTxn, key: &[u8], commit_ts: u64, write: &Write) {
    txn.delete_write(key, commit_ts);
    if write.write_type == WriteType::Put && write.short_value.is_none() {
        txn.delete_value(key, write.start_ts);
    }
}

/// Deletes every lock, commit record and value of user keys in
/// `[start_key, end_key)` (empty end = to the end of the key space). A
/// `notify_only` request deletes nothing, as in TiKV.
pub fn delete_range(req: &DeleteRangeRequest) -> Vec<Modify> {
    if req.notify_only {
        return Vec::new();
    }
    let upper = (!req.end_key.is_empty()).then_some(req.end_key.as_slice());
    let (start, end) = txn_range(&req.start_key, upper);
    if start >= end {
        return Vec::new();
    }
    [CF_DEFAULT, CF_LOCK, CF_WRITE]
        .into_iter()
        .map(|cf| Modify::DeleteRange {
            cf,
            start: start.clone(),
            end: end.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::percolator::test_util::*;

    fn put(t: &TestEngine, k: &[u8], v: &[u8], start: u64, commit: u64) {
        t.must_prewrite_put(k, v, k, start);
        t.must_commit(k, start, commit);
    }

    fn keys(t: &TestEngine) -> Vec<Vec<u8>> {
        t.with_snap(|s| scan_write_keys(s, b"", None, usize::MAX).unwrap())
    }

    fn run_gc(t: &TestEngine, safe_point: u64) {
        let batch =
            t.with_snap(|s| gc_keys(s, safe_point, &keys(t), usize::MAX, usize::MAX).unwrap());
        assert_eq!(batch.resume, None);
        t.engine.write(&batch.modifies, false).unwrap();
    }

    #[test]
    fn gc_keeps_what_the_safe_point_sees() {
        let t = TestEngine::new();
        let long = vec![b'x'; 300];
        put(&t, b"a", &long, 5, 6);
        put(&t, b"a", b"v2", 10, 11);
        t.must_rollback(b"a", 12);
        put(&t, b"a", b"v3", 20, 21);
        put(&t, b"b", b"v", 5, 6);
        t.must_prewrite_delete(b"b", b"b", 10);
        t.must_commit(b"b", 10, 11);
        t.must_prewrite_lock(b"c", b"c", 5);
        t.must_commit(b"c", 5, 6);
        run_gc(&t, 15);
        t.must_get(b"a", 15, b"v2");
        t.must_get(b"a", 21, b"v3");
        t.must_no_write(b"a", 6);
        t.must_no_write(b"a", 12);
        t.with_snap(|s| {
            assert!(crate::mvcc::MvccReader::new(s)
                .load_default(b"a", 5)
                .is_err())
        });
        // A delete at or below the safe point goes with everything older.
        t.must_no_write(b"b", 11);
        t.must_no_write(b"b", 6);
        t.must_no_write(b"c", 6);
        // Nothing left to collect.
        assert!(t
            .with_snap(|s| gc_keys(s, 15, &keys(&t), usize::MAX, usize::MAX).unwrap())
            .modifies
            .is_empty());
    }

    #[test]
    fn gc_limit_and_range() {
        let t = TestEngine::new();
        for k in [b"a", b"b", b"c"] {
            put(&t, k, b"1", 5, 6);
            put(&t, k, b"2", 7, 8);
        }
        let first = t.with_snap(|s| gc_keys(s, 10, &keys(&t), 1, usize::MAX).unwrap());
        assert_eq!(first.modifies.len(), 1);
        assert_eq!(first.resume, Some(b"a".to_vec()));
        let ranged = t.with_snap(|s| scan_write_keys(s, b"b", Some(b"c"), 10).unwrap());
        assert_eq!(ranged, vec![b"b".to_vec()]);
        assert_eq!(
            t.with_snap(|s| scan_write_keys(s, b"", None, 2).unwrap()),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn delete_range_removes_all_txn_data() {
        let t = TestEngine::new();
        for k in [b"a", b"b", b"c"] {
            put(&t, k, &[1; 300], 5, 6);
        }
        t.must_prewrite_put(b"b", b"v", b"b", 10);
        let req = DeleteRangeRequest {
            start_key: b"b".to_vec(),
            end_key: b"c".to_vec(),
            ..Default::default()
        };
        t.engine.write(&delete_range(&req), false).unwrap();
        t.must_unlocked(b"b");
        t.must_get_none(b"b", 20);
        t.must_get(b"a", 20, &[1; 300]);
        t.must_get(b"c", 20, &[1; 300]);
        let all = DeleteRangeRequest::default();
        assert_eq!(delete_range(&all).len(), 3);
        t.engine.write(&delete_range(&all), false).unwrap();
        t.must_get_none(b"c", 20);
    }
}
