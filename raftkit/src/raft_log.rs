//! A raft log on disk with raft-rs's [`MemStorage`] as its cache: written once for the
//! store's regions and placement's member group.
//!
//! raft-rs reads a log through its `Storage` trait. Both users keep the entries since the
//! last compaction in a [`MemStorage`] and the same records on disk; what differs is where
//! the records go and how a snapshot is made. So:
//!
//! - [`CachedLog`] is the write side: [`CachedLog::append`], [`CachedLog::set_hard_state`],
//!   [`CachedLog::compact`] and [`CachedLog::install`] stage the disk records into the caller's
//!   write batch ([`LogBatch`]) under the caller's key layout ([`LogKeys`]) and change the
//!   cache in step; [`CachedLog::restore`] rebuilds the cache from what the caller read back.
//!   The store puts every region's log in its engine's `raft` column family and persists
//!   the ready of all regions in one synced write; placement keeps its one log beside its
//!   metadata.
//! - [`LogStorage`] is the read side raft-rs is given: the log answers from a [`LogReader`]
//!   (which also remembers the term at the compaction point, which `MemStorage` forgets), and
//!   snapshots come from the caller's [`SnapshotSource`].

use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::{Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

/// Where a log's records live on disk.
pub trait LogKeys {
    /// The key of the entry at `index`; keys sort as their indexes do.
    fn entry(&self, index: u64) -> Vec<u8>;
    /// The key of the hard state.
    fn hard_state(&self) -> Vec<u8>;
}

/// A write batch of the caller's engine, taking a log's records.
pub trait LogBatch {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    /// Deletes every key in `[start, end)`.
    fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>);
}

/// A log record could not be written or read, or the cache refused a change.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A record could not be encoded; it is never written empty, which would read back as
    /// another state (no vote, no commit, an empty entry).
    #[error("encoding the raft {what} failed: {source}")]
    Encode {
        what: &'static str,
        source: protobuf::ProtobufError,
    },
    /// A record read back does not decode.
    #[error("corrupt raft {what}: {source}")]
    Corrupt {
        what: &'static str,
        source: protobuf::ProtobufError,
    },
    /// Compaction asked to drop entries the log does not have yet.
    #[error("cannot compact the raft log before {first_kept}: its last entry is {last}")]
    CompactBeyondLog { first_kept: u64, last: u64 },
    /// The cache refused a change (an out-of-date snapshot, a gap in the entries).
    #[error("raft log cache: {0}")]
    Cache(#[from] raft::Error),
}

/// Encodes a record bound for disk.
pub fn encode(what: &'static str, record: &impl protobuf::Message) -> Result<Vec<u8>, LogError> {
    record
        .write_to_bytes()
        .map_err(|source| LogError::Encode { what, source })
}

/// Decodes a record read back from disk.
pub fn decode<M: protobuf::Message>(what: &'static str, bytes: &[u8]) -> Result<M, LogError> {
    M::parse_from_bytes(bytes).map_err(|source| LogError::Corrupt { what, source })
}

/// The log as raft-rs reads it; clones share it.
#[derive(Clone, Default)]
pub struct LogReader {
    mem: MemStorage,
    /// `(index, term)` of the last entry compacted away (or the snapshot the log starts
    /// after): raft needs that term to send the entries after it, and `MemStorage` forgets it
    /// when it compacts.
    truncated: Arc<Mutex<(u64, u64)>>,
}

impl LogReader {
    /// The cache itself (its hard state and configuration).
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// `(index, term)` the log starts after.
    pub fn truncated(&self) -> (u64, u64) {
        *self.truncated.lock()
    }

    pub fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    pub fn term(&self, idx: u64) -> raft::Result<u64> {
        let (index, term) = self.truncated();
        if idx == index {
            return Ok(term);
        }
        self.mem.term(idx)
    }

    pub fn first_index(&self) -> raft::Result<u64> {
        let (index, _) = self.truncated();
        Ok(self.mem.first_index()?.max(index + 1))
    }
}

/// Makes the snapshots raft-rs asks for: the store's from a region's data, placement's from
/// its metadata.
pub trait SnapshotSource {
    /// As [`Storage::snapshot`]; `log` is the log it is asked beside.
    fn snapshot(&self, log: &LogReader, request_index: u64, to: u64) -> raft::Result<Snapshot>;
}

/// The `Storage` raft-rs is given: the log from a [`LogReader`], snapshots from `S`.
pub struct LogStorage<S> {
    pub log: LogReader,
    pub snapshots: S,
}

impl<S: SnapshotSource> Storage for LogStorage<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.log.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.log.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.snapshots.snapshot(&self.log, request_index, to)
    }
}

/// A raft log kept on disk under `K`'s keys, with its cache.
pub struct CachedLog<K> {
    reader: LogReader,
    keys: K,
}

impl<K: LogKeys> CachedLog<K> {
    /// An empty log (a replica that waits for a snapshot).
    pub fn new(keys: K) -> Self {
        CachedLog {
            reader: LogReader::default(),
            keys,
        }
    }

    /// Rebuilds the cache from what the caller read back: the log starts after `base` (the
    /// last compaction or installed snapshot, with the configuration to start from; index 0
    /// for a log that never compacted) and holds `entries` (those up to `base` are skipped)
    /// and the hard state `hs`.
    pub fn restore(
        keys: K,
        base: &SnapshotMetadata,
        mut entries: Vec<Entry>,
        hs: HardState,
    ) -> Result<Self, LogError> {
        let log = CachedLog::new(keys);
        let mut core = log.reader.mem.wl();
        if base.index > 0 {
            let mut snap = Snapshot::default();
            snap.set_metadata(base.clone());
            core.apply_snapshot(snap)?;
        } else {
            core.set_conf_state(base.get_conf_state().clone());
        }
        entries.retain(|e| e.index > base.index);
        if !entries.is_empty() {
            core.append(&entries)?;
        }
        core.set_hardstate(hs);
        drop(core);
        *log.reader.truncated.lock() = (base.index, base.term);
        Ok(log)
    }

    /// The read side, for raft-rs's [`LogStorage`].
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// The cache.
    pub fn mem(&self) -> &MemStorage {
        &self.reader.mem
    }

    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// `(index, term)` the log starts after.
    pub fn truncated(&self) -> (u64, u64) {
        self.reader.truncated()
    }

    pub fn last_index(&self) -> u64 {
        self.reader.mem.last_index().unwrap_or(0)
    }

    /// Stages `entries` into `batch` and the cache; a new leader's entries replace the
    /// conflicting tail of ours, on disk too.
    pub fn append(&self, batch: &mut dyn LogBatch, entries: &[Entry]) -> Result<(), LogError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let last_before = self.last_index();
        for e in entries {
            batch.put(self.keys.entry(e.index), encode("log entry", e)?);
        }
        if last.index < last_before {
            batch.delete_range(
                self.keys.entry(last.index + 1),
                self.keys.entry(last_before + 1),
            );
        }
        self.reader.mem.wl().append(entries)?;
        Ok(())
    }

    /// Stages the hard state into `batch` and the cache.
    pub fn set_hard_state(&self, batch: &mut dyn LogBatch, hs: &HardState) -> Result<(), LogError> {
        batch.put(self.keys.hard_state(), encode("hard state", hs)?);
        self.reader.mem.wl().set_hardstate(hs.clone());
        Ok(())
    }

    /// Drops the entries before `first_kept` (applied ones: the caller's to check) from the
    /// cache at once and from disk with `batch`. Returns the term of the last one dropped, or
    /// `None` when the log already starts there or later.
    pub fn compact(
        &self,
        batch: &mut dyn LogBatch,
        first_kept: u64,
    ) -> Result<Option<u64>, LogError> {
        let first = self.reader.first_index()?;
        if first_kept <= first {
            return Ok(None);
        }
        let last = self.last_index();
        if first_kept > last + 1 {
            return Err(LogError::CompactBeyondLog { first_kept, last });
        }
        let term = self.reader.term(first_kept - 1)?;
        batch.delete_range(self.keys.entry(0), self.keys.entry(first_kept));
        self.reader.mem.wl().compact(first_kept)?;
        *self.reader.truncated.lock() = (first_kept - 1, term);
        Ok(Some(term))
    }

    /// Restarts the log after `snap`: every stored entry goes (from disk with `batch`), and
    /// the cache takes the snapshot's index, term and configuration.
    pub fn install(&self, batch: &mut dyn LogBatch, snap: &Snapshot) -> Result<(), LogError> {
        let meta = snap.get_metadata();
        let end = self.last_index().max(meta.index) + 1;
        // The cache first: it refuses a snapshot older than the log, and then nothing is staged.
        self.reader.mem.wl().apply_snapshot(snap.clone())?;
        batch.delete_range(self.keys.entry(0), self.keys.entry(end));
        *self.reader.truncated.lock() = (meta.index, meta.term);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use raft::eraftpb::ConfState;

    use super::*;

    /// A unit-test engine: a sorted map, the batch applied by [`Disk::write`].
    #[derive(Default)]
    struct Disk(BTreeMap<Vec<u8>, Vec<u8>>);

    enum Op {
        Put(Vec<u8>, Vec<u8>),
        DeleteRange(Vec<u8>, Vec<u8>),
    }

    #[derive(Default)]
    struct Batch(Vec<Op>);

    impl LogBatch for Batch {
        fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
            self.0.push(Op::Put(key, value));
        }
        fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
            self.0.push(Op::DeleteRange(start, end));
        }
    }

    impl Disk {
        fn write(&mut self, batch: Batch) {
            for op in batch.0 {
                match op {
                    Op::Put(key, value) => {
                        self.0.insert(key, value);
                    }
                    Op::DeleteRange(start, end) => self.0.retain(|k, _| !(k >= &start && k < &end)),
                }
            }
        }

        /// What a restart reads back.
        fn restore(&self, base: &SnapshotMetadata) -> CachedLog<Keys> {
            let entries = self
                .0
                .iter()
                .filter(|(k, _)| k.starts_with(b"log/"))
                .map(|(_, v)| decode("log entry", v).unwrap())
                .collect();
            let hs = self
                .0
                .get(b"hs".as_slice())
                .map(|v| decode("hard state", v).unwrap())
                .unwrap_or_default();
            CachedLog::restore(Keys, base, entries, hs).unwrap()
        }

        fn indexes(&self) -> Vec<u64> {
            self.0
                .iter()
                .filter(|(k, _)| k.starts_with(b"log/"))
                .map(|(_, v)| decode::<Entry>("log entry", v).unwrap().index)
                .collect()
        }
    }

    struct Keys;

    impl LogKeys for Keys {
        fn entry(&self, index: u64) -> Vec<u8> {
            format!("log/{index:020}").into_bytes()
        }
        fn hard_state(&self) -> Vec<u8> {
            b"hs".to_vec()
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    fn base(index: u64, term: u64) -> SnapshotMetadata {
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        meta
    }

    #[test]
    fn appends_survive_a_restart_and_a_new_leader_replaces_the_tail() {
        let mut disk = Disk::default();
        let log = CachedLog::restore(Keys, &base(5, 5), Vec::new(), HardState::default()).unwrap();
        let mut batch = Batch::default();
        log.append(
            &mut batch,
            &(6..=10).map(|i| entry(i, 5)).collect::<Vec<_>>(),
        )
        .unwrap();
        let hs = HardState {
            term: 6,
            vote: 2,
            commit: 7,
            ..Default::default()
        };
        log.set_hard_state(&mut batch, &hs).unwrap();
        disk.write(batch);
        // A new leader's entries from 8 on replace 8..=10.
        let mut batch = Batch::default();
        log.append(&mut batch, &[entry(8, 6)]).unwrap();
        disk.write(batch);
        assert_eq!(disk.indexes(), [6, 7, 8]);
        assert_eq!(log.last_index(), 8);

        let back = disk.restore(&base(5, 5));
        let r = back.reader();
        assert_eq!((r.first_index().unwrap(), back.last_index()), (6, 8));
        assert_eq!(r.term(5).unwrap(), 5);
        assert_eq!(r.term(8).unwrap(), 6);
        assert_eq!(r.initial_state().unwrap().hard_state, hs);
        assert_eq!(r.initial_state().unwrap().conf_state.voters, [1, 2, 3]);
    }

    #[test]
    fn compaction_keeps_the_term_at_the_cut_and_refuses_to_run_ahead() {
        let mut disk = Disk::default();
        let log = CachedLog::restore(Keys, &base(5, 5), Vec::new(), HardState::default()).unwrap();
        let mut batch = Batch::default();
        let entries: Vec<Entry> = (6..=10)
            .map(|i| entry(i, if i < 9 { 5 } else { 7 }))
            .collect();
        log.append(&mut batch, &entries).unwrap();
        assert_eq!(log.compact(&mut batch, 9).unwrap(), Some(5));
        disk.write(batch);
        assert_eq!(disk.indexes(), [9, 10]);
        let r = log.reader();
        assert_eq!(r.first_index().unwrap(), 9);
        // raft needs the term before the first entry to send it.
        assert_eq!(r.term(8).unwrap(), 5);
        assert_eq!(log.truncated(), (8, 5));
        assert_eq!(log.compact(&mut Batch::default(), 9).unwrap(), None);
        let err = log.compact(&mut Batch::default(), 12).unwrap_err();
        assert!(
            matches!(
                err,
                LogError::CompactBeyondLog {
                    first_kept: 12,
                    last: 10
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_snapshot_restarts_the_log_on_disk_and_in_the_cache() {
        let mut disk = Disk::default();
        let log = CachedLog::new(Keys);
        let mut batch = Batch::default();
        log.append(&mut batch, &[entry(1, 1), entry(2, 1)]).unwrap();
        disk.write(batch);
        let mut snap = Snapshot::default();
        snap.set_metadata(base(20, 3));
        let mut batch = Batch::default();
        log.install(&mut batch, &snap).unwrap();
        disk.write(batch);
        assert!(disk.indexes().is_empty());
        let r = log.reader();
        assert_eq!((r.first_index().unwrap(), log.last_index()), (21, 20));
        assert_eq!(r.term(20).unwrap(), 3);
        // An older snapshot is refused by the cache.
        snap.set_metadata(base(10, 2));
        let mut batch = Batch::default();
        assert!(log.install(&mut batch, &snap).is_err());
        assert!(batch.0.is_empty(), "nothing staged for a refused snapshot");
    }

    #[test]
    fn a_log_that_never_compacted_restores_from_index_zero() {
        let mut disk = Disk::default();
        let log = CachedLog::new(Keys);
        let mut batch = Batch::default();
        log.append(&mut batch, &[entry(1, 1), entry(2, 2)]).unwrap();
        disk.write(batch);
        let back = disk.restore(&base(0, 0));
        let r = back.reader();
        assert_eq!((r.first_index().unwrap(), back.last_index()), (1, 2));
        assert_eq!(r.initial_state().unwrap().conf_state.voters, [1, 2, 3]);
    }

    #[test]
    fn records_that_do_not_decode_are_corrupt() {
        let err = decode::<HardState>("hard state", b"\xff\xff").unwrap_err();
        assert!(
            err.to_string().starts_with("corrupt raft hard state"),
            "{err}"
        );
    }
}
