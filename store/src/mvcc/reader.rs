//! Reads of MVCC records over one engine snapshot.
//!
//! [`MvccReader`] answers the questions every Percolator action asks: the lock
//! on a key, the newest commit record at or below a timestamp, the value
//! visible at a timestamp, and what became of a given txn on a key
//! ([`TxnCommitRecord`], TiKV's `get_txn_commit_record`). All keys here are
//! user keys; the engine-key layout stays in `codec`.

use std::ops::ControlFlow;

use super::codec::{lock_key, prefix_end, split_ts, txn_range, user_key_of, versioned_key};
use super::{Lock, Write, WriteType};
use crate::engine::{Cursor, Snapshot, CF_DEFAULT, CF_LOCK, CF_WRITE};
use crate::percolator::{Result, TxnError};

/// What the write CF says about txn `start_ts` on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnCommitRecord {
    /// The txn's own commit or rollback record.
    Single { commit_ts: u64, write: Write },
    /// Another txn's commit record at `commit_ts == start_ts` also stands for
    /// this txn's rollback.
    OverlappedRollback { commit_ts: u64 },
    /// No record. `overlapped` is another txn's commit record sitting at
    /// `commit_ts == start_ts`, where a rollback record would go.
    None { overlapped: Option<Write> },
}

impl TxnCommitRecord {
    /// The commit ts if the txn committed (a non-rollback record).
    pub fn committed_ts(&self) -> Option<u64> {
        match self {
            TxnCommitRecord::Single { commit_ts, write }
                if write.write_type != WriteType::Rollback =>
            {
                Some(*commit_ts)
            }
            _ => None,
        }
    }

    /// Whether a rollback of the txn is recorded.
    pub fn is_rolled_back(&self) -> bool {
        match self {
            TxnCommitRecord::Single { write, .. } => write.write_type == WriteType::Rollback,
            TxnCommitRecord::OverlappedRollback { .. } => true,
            TxnCommitRecord::None { .. } => false,
        }
    }
}

pub struct MvccReader<'a, 's> {
    snap: &'a Snapshot<'s>,
}

impl<'a, 's> MvccReader<'a, 's> {
    pub fn new(snap: &'a Snapshot<'s>) -> Self {
        MvccReader { snap }
    }

    pub fn snapshot(&self) -> &'a Snapshot<'s> {
        self.snap
    }

    pub fn load_lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        let lk = lock_key(key);
        match self.snap.get_cf(CF_LOCK, &lk)? {
            Some(v) => Ok(Some(parse_lock(&lk, &v)?)),
            None => Ok(None),
        }
    }

    /// Calls `f` on the commit records of `key`, newest first, starting at the
    /// newest one with `commit_ts <= ts`, until it returns `Break`.
    pub fn for_each_write<F>(&self, key: &[u8], ts: u64, mut f: F) -> Result<()>
    where
        F: FnMut(u64, Write) -> ControlFlow<()>,
    {
        let lk = lock_key(key);
        let upper = prefix_end(&lk);
        let mut cursor = self.snap.cursor(CF_WRITE, Some(lk.clone()), Some(upper))?;
        cursor.seek(&versioned_key(key, ts));
        while cursor.valid()? {
            let (commit_ts, write) = parse_write_entry(&cursor)?;
            if f(commit_ts, write).is_break() {
                break;
            }
            cursor.next();
        }
        Ok(())
    }

    /// The newest commit record of `key` with `commit_ts <= ts`, any type.
    pub fn seek_write(&self, key: &[u8], ts: u64) -> Result<Option<(u64, Write)>> {
        let mut found = None;
        self.for_each_write(key, ts, |commit_ts, write| {
            found = Some((commit_ts, write));
            ControlFlow::Break(())
        })?;
        Ok(found)
    }

    /// The newest Put or Delete of `key` with `commit_ts <= ts`; Lock and
    /// Rollback records are skipped.
    pub fn data_write(&self, key: &[u8], ts: u64) -> Result<Option<(u64, Write)>> {
        let lk = lock_key(key);
        let upper = prefix_end(&lk);
        let mut cursor = self.snap.cursor(CF_WRITE, Some(lk.clone()), Some(upper))?;
        cursor.seek(&versioned_key(key, ts));
        next_data_write(&mut cursor, &lk)
    }

    /// The value of `key` visible at `ts`, ignoring locks.
    pub fn get(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>> {
        match self.data_write(key, ts)? {
            Some((_, w)) if w.write_type == WriteType::Put => Ok(Some(self.load_data(key, &w)?)),
            _ => Ok(None),
        }
    }

    /// The value a Put record stands for: inlined, or in the default CF.
    pub fn load_data(&self, key: &[u8], write: &Write) -> Result<Vec<u8>> {
        match &write.short_value {
            Some(v) => Ok(v.clone()),
            None => self.load_default(key, write.start_ts),
        }
    }

    /// The long value prewritten by txn `start_ts`.
    pub fn load_default(&self, key: &[u8], start_ts: u64) -> Result<Vec<u8>> {
        let dk = versioned_key(key, start_ts);
        self.snap.get_cf(CF_DEFAULT, &dk)?.ok_or(TxnError::Corrupt {
            cf: CF_DEFAULT,
            key: dk,
        })
    }

    /// What became of txn `start_ts` on `key` (TiKV's `get_txn_commit_record`).
    pub fn txn_commit_record(&self, key: &[u8], start_ts: u64) -> Result<TxnCommitRecord> {
        let mut record = TxnCommitRecord::None { overlapped: None };
        self.for_each_write(key, u64::MAX, |commit_ts, write| {
            if commit_ts < start_ts {
                return ControlFlow::Break(());
            }
            if write.start_ts == start_ts {
                record = TxnCommitRecord::Single { commit_ts, write };
                return ControlFlow::Break(());
            }
            if commit_ts == start_ts {
                record = if write.has_overlapped_rollback {
                    TxnCommitRecord::OverlappedRollback { commit_ts }
                } else {
                    TxnCommitRecord::None {
                        overlapped: Some(write),
                    }
                };
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(record)
    }

    /// Locks in the user-key range `[lower, upper)` accepted by `filter`, in
    /// key order, at most `limit` of them (0 = no limit).
    pub fn scan_locks<F>(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
        mut filter: F,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Lock)>>
    where
        F: FnMut(&Lock) -> bool,
    {
        let (start, end) = txn_range(lower, upper);
        let mut cursor = self.snap.cursor(CF_LOCK, Some(start), Some(end))?;
        cursor.seek_to_first();
        let mut locks = Vec::new();
        let mut budget = crate::percolator::ResponseBudget::default();
        while cursor.valid()? && (limit == 0 || locks.len() < limit) {
            let lock = parse_lock(cursor.key(), cursor.value())?;
            if filter(&lock) {
                budget.charge(cursor.key().len() + cursor.value().len())?;
                locks.push((decode_user_key(cursor.key())?, lock));
            }
            cursor.next();
        }
        Ok(locks)
    }
}

pub(crate) fn parse_lock(engine_key: &[u8], value: &[u8]) -> Result<Lock> {
    Lock::parse(value).map_err(|_| TxnError::Corrupt {
        cf: CF_LOCK,
        key: engine_key.to_vec(),
    })
}

/// `(commit_ts, Write)` of the write-CF entry under `cursor`.
/// From where `cursor` stands, the first Put or Delete among the versions of the key whose
/// lock-key is `lock_key` (Lock and Rollback records are skipped), with its commit ts; `None`
/// once the cursor leaves that key's versions. The scanner uses it on its own cursor.
pub(crate) fn next_data_write(
    cursor: &mut Cursor<'_>,
    lock_key: &[u8],
) -> Result<Option<(u64, Write)>> {
    while cursor.valid()? {
        let (prefix, _) = split_ts(cursor.key()).map_err(|_| TxnError::Corrupt {
            cf: CF_WRITE,
            key: cursor.key().to_vec(),
        })?;
        if prefix != lock_key {
            return Ok(None);
        }
        let (commit_ts, write) = parse_write_entry(cursor)?;
        if write.is_data() {
            return Ok(Some((commit_ts, write)));
        }
        cursor.next();
    }
    Ok(None)
}

pub(crate) fn parse_write_entry(cursor: &Cursor<'_>) -> Result<(u64, Write)> {
    let corrupt = || TxnError::Corrupt {
        cf: CF_WRITE,
        key: cursor.key().to_vec(),
    };
    let (_, commit_ts) = split_ts(cursor.key()).map_err(|_| corrupt())?;
    let write = Write::parse(cursor.value()).map_err(|_| corrupt())?;
    Ok((commit_ts, write))
}

/// The user key of a lock-CF key (or the lock-key part of a versioned key).
pub(crate) fn decode_user_key(engine_key: &[u8]) -> Result<Vec<u8>> {
    user_key_of(engine_key).map_err(|source| TxnError::BadKey {
        key: engine_key.to_vec(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::percolator::test_util::*;

    #[test]
    fn visibility_newest_version_at_or_below_ts() {
        let t = TestEngine::new();
        t.must_prewrite_put(b"k", b"v1", b"k", 5);
        t.must_commit(b"k", 5, 10);
        t.must_prewrite_lock(b"k", b"k", 12);
        t.must_commit(b"k", 12, 13);
        t.must_rollback(b"k", 14);
        t.must_prewrite_delete(b"k", b"k", 15);
        t.must_commit(b"k", 15, 20);
        t.must_prewrite_put(b"k", b"v3", b"k", 25);
        t.must_commit(b"k", 25, 30);
        t.must_get_none(b"k", 9);
        t.must_get(b"k", 10, b"v1");
        // Lock and Rollback records do not hide the older Put.
        t.must_get(b"k", 14, b"v1");
        t.must_get_none(b"k", 20);
        t.must_get_none(b"k", 29);
        t.must_get(b"k", 30, b"v3");
        t.must_get(b"k", u64::MAX, b"v3");
        t.with_snap(|s| {
            let r = MvccReader::new(s);
            assert_eq!(r.seek_write(b"k", 14).unwrap().unwrap().0, 14);
            assert_eq!(r.data_write(b"k", 14).unwrap().unwrap().0, 10);
            assert_eq!(r.seek_write(b"k", 4).unwrap(), None);
            assert_eq!(r.seek_write(b"other", u64::MAX).unwrap(), None);
        });
    }

    #[test]
    fn locks_block_reads_only_when_visible() {
        let t = TestEngine::new();
        t.must_prewrite_put(b"k", b"v", b"k", 10);
        t.must_get_none(b"k", 9);
        let info = t.get_err(b"k", 10).locked.expect("locked");
        assert_eq!((info.lock_version, info.key.as_slice()), (10, &b"k"[..]));
        t.must_commit(b"k", 10, 11);
        // Lock-type and pessimistic locks never block.
        t.must_prewrite_lock(b"k", b"k", 20);
        t.must_get(b"k", 25, b"v");
        t.must_pessimistic_lock(b"p", b"p", 30, 30);
        t.must_get_none(b"p", 35);
    }

    #[test]
    fn txn_commit_record_shapes() {
        let t = TestEngine::new();
        t.must_prewrite_put(b"k", b"v", b"k", 5);
        t.must_commit(b"k", 5, 10);
        t.must_rollback(b"k", 12);
        t.with_snap(|s| {
            let r = MvccReader::new(s);
            let rec = r.txn_commit_record(b"k", 5).unwrap();
            assert_eq!(rec.committed_ts(), Some(10));
            assert!(r.txn_commit_record(b"k", 12).unwrap().is_rolled_back());
            // Txn 10 has no record, but txn 5's commit sits at ts 10.
            match r.txn_commit_record(b"k", 10).unwrap() {
                TxnCommitRecord::None {
                    overlapped: Some(w),
                } => assert_eq!(w.start_ts, 5),
                other => panic!("{other:?}"),
            }
            let none = r.txn_commit_record(b"k", 11).unwrap();
            assert_eq!(none, TxnCommitRecord::None { overlapped: None });
        });
    }

    #[test]
    fn scan_locks_filters_and_limits() {
        let t = TestEngine::new();
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            t.must_prewrite_put(*k, b"v", b"a", 10 + i as u64);
        }
        t.with_snap(|s| {
            let r = MvccReader::new(s);
            let keys = |lo: &[u8], hi: Option<&[u8]>, max_ts: u64, limit| {
                r.scan_locks(lo, hi, |l| l.ts <= max_ts, limit)
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(b"", None, 100, 0).len(), 4);
            assert_eq!(
                keys(b"b", Some(b"d"), 100, 0),
                vec![b"b".to_vec(), b"c".to_vec()]
            );
            assert_eq!(keys(b"", None, 11, 0).len(), 2);
            assert_eq!(keys(b"", None, 100, 3).len(), 3);
        });
    }
}
