//! Snapshot-isolation reads: point gets and range scans that honour locks.
//!
//! [`ReadOpts`] holds the read timestamp and the client's lock hints
//! (`resolved_locks` are bypassed, `committed_locks` are read through: their
//! txn is known committed, so the lock's own value is the answer).
//! [`point_get`] reads one key; [`Scanner`] walks the lock and write CFs of a
//! range together, forward or backward, one user key at a time, and yields a
//! value or the blocking lock per key, as TiKV's scanners do.

use super::codec::{append_ts, prefix_end, split_ts, txn_range};
use super::reader::{decode_user_key, next_data_write, parse_lock, MvccReader};
use super::{Lock, LockType, Write, WriteType};
use crate::engine::{Cursor, CF_LOCK, CF_WRITE};
use crate::percolator::{Result, TxnError};
use proto::kvrpcpb::LockInfo;

/// How a transactional read treats locks.
#[derive(Debug, Clone, Default)]
pub struct ReadOpts {
    pub ts: u64,
    /// Lock start timestamps to ignore (`Context.resolved_locks`).
    pub bypass_locks: Vec<u64>,
    /// Lock start timestamps known committed (`Context.committed_locks`).
    pub access_locks: Vec<u64>,
    /// False under read-committed isolation: locks never block.
    pub check_locks: bool,
}

/// A read's answer for one key: its value (None = absent) or the lock that
/// blocks it.
pub type ReadResult = std::result::Result<Option<Vec<u8>>, Box<LockInfo>>;

/// Reads `key` at `opts.ts`; `want_value = false` returns an empty value for
/// a present key without loading it.
pub fn point_get(
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    opts: &ReadOpts,
    want_value: bool,
) -> Result<ReadResult> {
    let lock = if opts.check_locks {
        reader.load_lock(key)?
    } else {
        None
    };
    read_with_lock(reader, key, lock, opts, want_value)
}

fn read_with_lock(
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    lock: Option<Lock>,
    opts: &ReadOpts,
    want_value: bool,
) -> Result<ReadResult> {
    read_with_lock_or(reader, key, lock, opts, want_value, || {
        Ok(reader.data_write(key, opts.ts)?.map(|(_, w)| w))
    })
}

/// [`read_with_lock`], with `find` looking up the newest Put or Delete at `opts.ts` (a
/// scanner walks its own cursor for it).
fn read_with_lock_or(
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    lock: Option<Lock>,
    opts: &ReadOpts,
    want_value: bool,
    find: impl FnOnce() -> Result<Option<Write>>,
) -> Result<ReadResult> {
    if let Some(lock) = lock.filter(|_| opts.check_locks) {
        if let Err(info) = lock.check_ts_conflict(key, opts.ts, &opts.bypass_locks) {
            if !opts.access_locks.contains(&lock.ts) {
                return Ok(Err(info));
            }
            return Ok(Ok(value_from_lock(reader, key, &lock, want_value)?));
        }
    }
    match find()? {
        Some(w) if w.write_type == WriteType::Put => {
            let value = if want_value {
                reader.load_data(key, &w)?
            } else {
                Vec::new()
            };
            Ok(Ok(Some(value)))
        }
        _ => Ok(Ok(None)),
    }
}

/// The value a committed (but not yet resolved) Put/Delete lock stands for.
fn value_from_lock(
    reader: &MvccReader<'_, '_>,
    key: &[u8],
    lock: &Lock,
    want_value: bool,
) -> Result<Option<Vec<u8>>> {
    match (lock.lock_type, &lock.short_value) {
        (LockType::Put, _) if !want_value => Ok(Some(Vec::new())),
        (LockType::Put, Some(v)) => Ok(Some(v.clone())),
        (LockType::Put, None) => Ok(Some(reader.load_default(key, lock.ts)?)),
        _ => Ok(None),
    }
}

/// Versions a forward scan steps over with `next` before it seeks to the next key.
const STEPS_BEFORE_SEEK: usize = 4;

/// A range read over `[lower, upper)` in user-key space.
pub struct Scanner<'r, 'a, 's> {
    reader: &'r MvccReader<'a, 's>,
    opts: ReadOpts,
    lock_cursor: Cursor<'a>,
    write_cursor: Cursor<'a>,
    reverse: bool,
}

impl<'r, 'a, 's> Scanner<'r, 'a, 's> {
    pub fn new(
        reader: &'r MvccReader<'a, 's>,
        lower: &[u8],
        upper: Option<&[u8]>,
        opts: ReadOpts,
        reverse: bool,
    ) -> Result<Self> {
        let (start, end) = txn_range(lower, upper);
        let snap = reader.snapshot();
        let mut lock_cursor = snap.cursor(CF_LOCK, Some(start.clone()), Some(end.clone()))?;
        let mut write_cursor = snap.cursor(CF_WRITE, Some(start), Some(end))?;
        if reverse {
            lock_cursor.seek_to_last();
            write_cursor.seek_to_last();
        } else {
            lock_cursor.seek_to_first();
            write_cursor.seek_to_first();
        }
        Ok(Scanner {
            reader,
            opts,
            lock_cursor,
            write_cursor,
            reverse,
        })
    }

    /// The next user key in scan order with its read result; keys without a
    /// visible value are skipped.
    pub fn next_entry(&mut self, want_value: bool) -> Result<Option<(Vec<u8>, ReadResult)>> {
        while let Some((cur, has_lock, has_write)) = self.current()? {
            let lock = if has_lock {
                Some(parse_lock(&cur, self.lock_cursor.value())?)
            } else {
                None
            };
            let key = decode_user_key(&cur)?;
            let result = if has_write && !self.reverse {
                // The write cursor is on this key: look there, not through a new iterator.
                let (reader, opts, cursor) = (self.reader, &self.opts, &mut self.write_cursor);
                read_with_lock_or(reader, &key, lock, opts, want_value, || {
                    data_write_at(cursor, &cur, opts.ts)
                })?
            } else if has_write || lock.is_some() {
                read_with_lock(self.reader, &key, lock, &self.opts, want_value)?
            } else {
                Ok(None)
            };
            self.advance(&cur, has_lock, has_write);
            if !matches!(result, Ok(None)) {
                return Ok(Some((key, result)));
            }
        }
        Ok(None)
    }

    /// The lock-key of the next user key in scan order, and whether the lock
    /// and write cursors are on it.
    fn current(&self) -> Result<Option<(Vec<u8>, bool, bool)>> {
        let lk = if self.lock_cursor.valid()? {
            Some(self.lock_cursor.key())
        } else {
            None
        };
        let wk = if self.write_cursor.valid()? {
            let key = self.write_cursor.key();
            Some(split_ts(key).map_err(|_| corrupt_write(key))?.0)
        } else {
            None
        };
        let cur = match (lk, wk) {
            (None, None) => return Ok(None),
            (Some(k), None) | (None, Some(k)) => k,
            (Some(a), Some(b)) if (a < b) != self.reverse => a,
            (Some(_), Some(b)) => b,
        };
        Ok(Some((cur.to_vec(), lk == Some(cur), wk == Some(cur))))
    }

    fn advance(&mut self, cur: &[u8], has_lock: bool, has_write: bool) {
        if has_lock {
            if self.reverse {
                self.lock_cursor.prev();
            } else {
                self.lock_cursor.next();
            }
        }
        if has_write {
            if self.reverse {
                // Every version of `cur` sorts after `cur` itself.
                self.write_cursor.seek_for_prev(cur);
            } else {
                // Most keys have a version or two: step past them, seek only past many.
                for _ in 0..STEPS_BEFORE_SEEK {
                    if !self.write_cursor.valid().unwrap_or(false) {
                        return;
                    }
                    match split_ts(self.write_cursor.key()) {
                        Ok((prefix, _)) if prefix == cur => self.write_cursor.next(),
                        _ => return,
                    }
                }
                self.write_cursor.seek(&prefix_end(cur));
            }
        }
    }
}

/// The newest Put or Delete of the user key whose lock-key is `lock_key` with
/// `commit_ts <= ts`, read by moving `cursor` (on that key's versions, in a forward scan);
/// Lock and Rollback records are skipped. Where the cursor ends is the caller's to fix.
fn data_write_at(cursor: &mut Cursor<'_>, lock_key: &[u8], ts: u64) -> Result<Option<Write>> {
    // Usually the newest version is already visible: no seek then.
    let newest_visible = cursor.valid()? && {
        let key = cursor.key();
        let (prefix, commit_ts) = split_ts(key).map_err(|_| corrupt_write(key))?;
        prefix == lock_key && commit_ts <= ts
    };
    if !newest_visible {
        cursor.seek(&append_ts(lock_key.to_vec(), ts));
    }
    Ok(next_data_write(cursor, lock_key)?.map(|(_, w)| w))
}

fn corrupt_write(key: &[u8]) -> TxnError {
    TxnError::Corrupt {
        cf: CF_WRITE,
        key: key.to_vec(),
    }
}
