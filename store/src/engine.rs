//! The storage engine: one RocksDB instance with TiKV's column families.
//!
//! `default`, `lock` and `write` hold MVCC data (see `mvcc`), `raft` holds raft
//! logs, raft state and region metadata. [`Engine`] is cheap to clone; reads go
//! through a consistent [`Snapshot`] and its [`Cursor`]s, writes go through a
//! list of [`Modify`] applied atomically by [`Engine::write`]. This is the
//! lowest layer: it knows nothing of regions, raft or transactions.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

pub type CfName = &'static str;
pub const CF_DEFAULT: CfName = "default";
pub const CF_LOCK: CfName = "lock";
pub const CF_WRITE: CfName = "write";
pub const CF_RAFT: CfName = "raft";
/// Column families that hold user data (raw and transactional).
pub const DATA_CFS: [CfName; 3] = [CF_DEFAULT, CF_LOCK, CF_WRITE];
pub const ALL_CFS: [CfName; 4] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("unknown column family {0:?}")]
    UnknownCf(String),
    #[error("write refused by fault injection")]
    Injected,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Maps a client-supplied column family name ("" = default) to ours.
pub fn cf_from_name(name: &str) -> Result<CfName> {
    match name {
        "" | "default" => Ok(CF_DEFAULT),
        "lock" => Ok(CF_LOCK),
        "write" => Ok(CF_WRITE),
        other => Err(EngineError::UnknownCf(other.to_string())),
    }
}

/// One mutation of the engine; a batch of them is applied atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modify {
    Put {
        cf: CfName,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: CfName,
        key: Vec<u8>,
    },
    /// Deletes `[start, end)`.
    DeleteRange {
        cf: CfName,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

impl Modify {
    /// Approximate encoded size, used to bound raft entries.
    pub fn size(&self) -> usize {
        match self {
            Modify::Put { key, value, .. } => key.len() + value.len() + 8,
            Modify::Delete { key, .. } => key.len() + 8,
            Modify::DeleteRange { start, end, .. } => start.len() + end.len() + 8,
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    db: Arc<DB>,
    /// Fault injection (tests, `debug.fault-injection`): every write fails.
    fail_writes: Arc<std::sync::atomic::AtomicBool>,
    /// Fault injection: milliseconds every synced write waits first, as on a slow disk.
    sync_delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Engine {
    /// Opens (creating if needed) the engine at `path` with every column family.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            let mut block = BlockBasedOptions::default();
            block.set_bloom_filter(10.0, false);
            cf_opts.set_block_based_table_factory(&block);
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Engine {
            db: Arc::new(db),
            fail_writes: Arc::default(),
            sync_delay_ms: Arc::default(),
        })
    }

    fn cf(&self, cf: CfName) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(cf)
            .ok_or_else(|| EngineError::UnknownCf(cf.to_string()))
    }

    pub fn get_cf(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// A consistent point-in-time view of every column family.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            engine: self,
            snap: self.db.snapshot(),
        }
    }

    /// Applies `modifies` atomically; `sync` waits for the WAL to reach disk.
    pub fn write(&self, modifies: &[Modify], sync: bool) -> Result<()> {
        let mut wb = WriteBatch::default();
        self.fill_batch(&mut wb, modifies)?;
        self.write_batch(wb, sync)
    }

    pub fn fill_batch(&self, wb: &mut WriteBatch, modifies: &[Modify]) -> Result<()> {
        for m in modifies {
            match m {
                Modify::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                Modify::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                Modify::DeleteRange { cf, start, end } => {
                    wb.delete_range_cf(self.cf(cf)?, start, end)
                }
            }
        }
        Ok(())
    }

    /// Makes every later write fail (as a full disk would), or stop failing.
    pub fn inject_write_failure(&self, fail: bool) {
        self.fail_writes
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cancels RocksDB's background work (flushes, compactions) and waits for what runs to
    /// stop; for shutdown, after the last write.
    pub fn stop_background_work(&self) {
        self.db.cancel_all_background_work(true);
    }

    /// Makes every later synced write wait `ms` milliseconds first, as an fsync on a slow or
    /// overloaded disk would (0: no wait). Synced writes happen on the raft threads, never on
    /// the async runtime's, so the wait holds up exactly what a slow fsync would.
    pub fn inject_sync_delay(&self, ms: u64) {
        self.sync_delay_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn write_batch(&self, wb: WriteBatch, sync: bool) -> Result<()> {
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::Injected);
        }
        if sync {
            let delay = self
                .sync_delay_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// A cursor over the live database (no snapshot); for the raft log.
    pub fn raw_cursor(&self, cf: CfName) -> Result<Cursor<'_>> {
        Ok(Cursor {
            it: self.db.raw_iterator_cf(self.cf(cf)?),
        })
    }

    /// Approximate bytes stored in `cf` for keys in `[start, end)`.
    pub fn approximate_size(&self, cf: CfName, start: &[u8], end: &[u8]) -> Result<u64> {
        let range = rocksdb::Range::new(start, end);
        let sizes = self.db.get_approximate_sizes_cf(self.cf(cf)?, &[range]);
        Ok(sizes.first().copied().unwrap_or(0))
    }
}

/// A consistent read view; all reads of one request go through one snapshot.
pub struct Snapshot<'a> {
    engine: &'a Engine,
    snap: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl<'a> Snapshot<'a> {
    pub fn get_cf(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snap.get_cf(self.engine.cf(cf)?, key)?)
    }

    /// A cursor over `cf`, limited to `[lower, upper)` when bounds are given.
    pub fn cursor(
        &self,
        cf: CfName,
        lower: Option<Vec<u8>>,
        upper: Option<Vec<u8>>,
    ) -> Result<Cursor<'_>> {
        let mut ro = ReadOptions::default();
        if let Some(l) = lower {
            ro.set_iterate_lower_bound(l);
        }
        if let Some(u) = upper {
            ro.set_iterate_upper_bound(u);
        }
        Ok(Cursor {
            it: self.snap.raw_iterator_cf_opt(self.engine.cf(cf)?, ro),
        })
    }
}

/// A positioned iterator. `valid()` must be checked before `key()`/`value()`.
pub struct Cursor<'a> {
    it: DBRawIteratorWithThreadMode<'a, DB>,
}

impl Cursor<'_> {
    pub fn seek(&mut self, key: &[u8]) {
        self.it.seek(key)
    }
    pub fn seek_for_prev(&mut self, key: &[u8]) {
        self.it.seek_for_prev(key)
    }
    pub fn seek_to_first(&mut self) {
        self.it.seek_to_first()
    }
    pub fn seek_to_last(&mut self) {
        self.it.seek_to_last()
    }
    pub fn next(&mut self) {
        self.it.next()
    }
    pub fn prev(&mut self) {
        self.it.prev()
    }
    /// Whether the cursor points at an entry; surfaces iterator I/O errors.
    pub fn valid(&self) -> Result<bool> {
        if self.it.valid() {
            return Ok(true);
        }
        self.it.status()?;
        Ok(false)
    }
    pub fn key(&self) -> &[u8] {
        self.it.key().unwrap_or_default()
    }
    pub fn value(&self) -> &[u8] {
        self.it.value().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_injected_sync_delay_holds_up_synced_writes_only_and_can_be_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let put = |k: &[u8]| Modify::Put {
            cf: CF_WRITE,
            key: k.to_vec(),
            value: b"v".to_vec(),
        };
        engine.inject_sync_delay(300);
        let started = std::time::Instant::now();
        engine.write(&[put(b"synced")], true).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
        // Unsynced writes (applies) never wait; the delay is on the fsync path only.
        let started = std::time::Instant::now();
        for i in 0..20u8 {
            engine.write(&[put(&[b'u', i])], false).unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(300 * 20));
        engine.inject_sync_delay(0);
        engine.write(&[put(b"after")], true).unwrap();
        assert_eq!(
            engine.get_cf(CF_WRITE, b"synced").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            engine.get_cf(CF_WRITE, b"after").unwrap(),
            Some(b"v".to_vec())
        );
    }

    #[test]
    fn write_snapshot_and_cursor_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let puts: Vec<Modify> = [b"a", b"b", b"c", b"d"]
            .iter()
            .map(|k| Modify::Put {
                cf: CF_WRITE,
                key: k.to_vec(),
                value: k.to_vec(),
            })
            .collect();
        engine.write(&puts, false).unwrap();
        let snap = engine.snapshot();
        engine
            .write(
                &[Modify::Delete {
                    cf: CF_WRITE,
                    key: b"b".to_vec(),
                }],
                false,
            )
            .unwrap();
        // The snapshot predates the delete.
        assert_eq!(snap.get_cf(CF_WRITE, b"b").unwrap(), Some(b"b".to_vec()));
        assert_eq!(engine.get_cf(CF_WRITE, b"b").unwrap(), None);
        let mut c = snap
            .cursor(CF_WRITE, Some(b"b".to_vec()), Some(b"d".to_vec()))
            .unwrap();
        c.seek_to_first();
        let mut seen = vec![];
        while c.valid().unwrap() {
            seen.push(c.key().to_vec());
            c.next();
        }
        assert_eq!(seen, vec![b"b".to_vec(), b"c".to_vec()]);
        engine
            .write(
                &[Modify::DeleteRange {
                    cf: CF_WRITE,
                    start: b"a".to_vec(),
                    end: b"c".to_vec(),
                }],
                true,
            )
            .unwrap();
        assert_eq!(engine.get_cf(CF_WRITE, b"a").unwrap(), None);
        assert_eq!(engine.get_cf(CF_WRITE, b"c").unwrap(), Some(b"c".to_vec()));
        assert!(cf_from_name("bogus").is_err());
    }
}
