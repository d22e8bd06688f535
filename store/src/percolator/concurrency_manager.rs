//! [`ConcurrencyManager`]: the store-wide `max_ts` and the in-memory lock table
//! of async-commit and 1PC prewrites (TiKV's `components/concurrency_manager`).
//!
//! An async-commit txn commits at `max(min_commit_ts)` with no further round
//! trip, so no reader at a timestamp >= that may have missed its locks. Readers
//! bump `max_ts` to their read ts and then check the memory table; a prewrite
//! computes `min_commit_ts = max_ts + 1` and publishes its lock in the table
//! under the same mutex ([`ConcurrencyManager::lock_key`]). Whichever comes
//! second sees the other. The prewrite's [`KeyHandleGuard`]s travel in
//! `WriteOutcome::guards`; the caller drops them only after the lock is
//! applied to the engine, so a reader always finds it in one place or the
//! other. Reads must do their check before taking their engine snapshot.
//!
//! Writers of the same key are serialized by the caller's latches, so the
//! table holds at most one lock per key.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::mvcc::Lock;

#[derive(Debug, Default)]
struct LockTable {
    next_id: u64,
    /// user key -> (guard id, lock)
    locks: BTreeMap<Vec<u8>, (u64, Lock)>,
}

/// Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct ConcurrencyManager {
    max_ts: Arc<AtomicU64>,
    table: Arc<Mutex<LockTable>>,
}

/// Keeps one in-memory lock published until dropped.
#[derive(Debug)]
#[must_use = "dropping the guard unpublishes the in-memory lock"]
pub struct KeyHandleGuard {
    table: Arc<Mutex<LockTable>>,
    key: Vec<u8>,
    id: u64,
}

impl KeyHandleGuard {
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl Drop for KeyHandleGuard {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        if table
            .locks
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            table.locks.remove(&self.key);
        }
    }
}

impl ConcurrencyManager {
    pub fn new(initial_ts: u64) -> Self {
        ConcurrencyManager {
            max_ts: Arc::new(AtomicU64::new(initial_ts)),
            table: Arc::default(),
        }
    }

    pub fn max_ts(&self) -> u64 {
        self.max_ts.load(Ordering::SeqCst)
    }

    /// Raises `max_ts` to `ts`. `u64::MAX` (a "latest" read) is ignored, as in
    /// TiKV, so it cannot block every later async commit.
    pub fn update_max_ts(&self, ts: u64) {
        if ts != u64::MAX {
            self.max_ts.fetch_max(ts, Ordering::SeqCst);
        }
    }

    /// Under the table mutex: reads `max_ts`, lets `make` build the lock from
    /// it (None = publish nothing) and publishes it for `key`.
    pub fn lock_key<F>(&self, key: &[u8], make: F) -> Option<KeyHandleGuard>
    where
        F: FnOnce(u64) -> Option<Lock>,
    {
        let mut table = self.table.lock();
        let lock = make(self.max_ts())?;
        table.next_id += 1;
        let id = table.next_id;
        table.locks.insert(key.to_vec(), (id, lock));
        Some(KeyHandleGuard {
            table: self.table.clone(),
            key: key.to_vec(),
            id,
        })
    }

    /// Runs `check` on the in-memory lock of `key`, if any.
    pub fn read_key_check<E, F>(&self, key: &[u8], check: F) -> Result<(), E>
    where
        F: FnOnce(&Lock) -> Result<(), E>,
    {
        let table = self.table.lock();
        match table.locks.get(key) {
            Some((_, lock)) => check(lock),
            None => Ok(()),
        }
    }

    /// Runs `check` on every in-memory lock in `[lower, upper)` (None =
    /// unbounded), stopping at the first error.
    pub fn read_range_check<E, F>(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
        mut check: F,
    ) -> Result<(), E>
    where
        F: FnMut(&[u8], &Lock) -> Result<(), E>,
    {
        let table = self.table.lock();
        let upper = match upper {
            Some(u) if u <= lower => return Ok(()),
            Some(u) => Bound::Excluded(u),
            None => Bound::Unbounded,
        };
        let range = table
            .locks
            .range::<[u8], _>((Bound::Included(lower), upper));
        for (key, (_, lock)) in range {
            check(key, lock)?;
        }
        Ok(())
    }

    /// The number of published in-memory locks (for tests and metrics).
    pub fn memory_lock_count(&self) -> usize {
        self.table.lock().locks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::LockType;

    fn lock(ts: u64) -> Lock {
        Lock::new(LockType::Put, b"pk".to_vec(), ts, 100)
    }

    #[test]
    fn max_ts_only_grows() {
        let cm = ConcurrencyManager::new(10);
        cm.update_max_ts(5);
        assert_eq!(cm.max_ts(), 10);
        cm.update_max_ts(20);
        cm.update_max_ts(u64::MAX);
        assert_eq!(cm.max_ts(), 20);
    }

    #[test]
    fn guard_publishes_until_dropped() {
        let cm = ConcurrencyManager::new(7);
        let mut seen_max = 0;
        let guard = cm
            .lock_key(b"k", |max_ts| {
                seen_max = max_ts;
                Some(lock(1))
            })
            .unwrap();
        assert_eq!(seen_max, 7);
        assert_eq!(guard.key(), b"k");
        let hit = cm.read_key_check(b"k", |l| Err(l.ts));
        assert_eq!(hit, Err(1));
        assert_eq!(cm.read_key_check(b"other", |l| Err(l.ts)), Ok(()));
        assert!(cm.lock_key(b"x", |_| None).is_none());
        drop(guard);
        assert_eq!(cm.read_key_check(b"k", |l| Err(l.ts)), Ok(()));
        assert_eq!(cm.memory_lock_count(), 0);
    }

    #[test]
    fn stale_guard_does_not_remove_newer_lock() {
        let cm = ConcurrencyManager::new(0);
        let old = cm.lock_key(b"k", |_| Some(lock(1))).unwrap();
        let new = cm.lock_key(b"k", |_| Some(lock(2))).unwrap();
        drop(old);
        assert_eq!(cm.read_key_check(b"k", |l| Err(l.ts)), Err(2));
        drop(new);
        assert_eq!(cm.memory_lock_count(), 0);
    }

    #[test]
    fn range_check_bounds() {
        let cm = ConcurrencyManager::new(0);
        let _g: Vec<_> = [b"a", b"c", b"e"]
            .iter()
            .map(|k| cm.lock_key(*k, |_| Some(lock(1))).unwrap())
            .collect();
        let keys = |lo: &[u8], hi: Option<&[u8]>| {
            let mut seen = vec![];
            cm.read_range_check::<(), _>(lo, hi, |k, _| {
                seen.push(k.to_vec());
                Ok(())
            })
            .unwrap();
            seen
        };
        assert_eq!(keys(b"b", Some(b"e")), vec![b"c".to_vec()]);
        assert_eq!(keys(b"a", None).len(), 3);
        assert!(keys(b"e", Some(b"a")).is_empty());
        assert_eq!(
            cm.read_range_check(b"", None, |k, _| Err(k.to_vec())),
            Err(b"a".to_vec())
        );
    }
}
