//! The member's raft log and state in the metadata database, under keys starting with `~`:
//!
//! | key | value |
//! |---|---|
//! | `~raft/hs` | `eraftpb.HardState` |
//! | `~raft/cs` | `eraftpb.ConfState` |
//! | `~raft/snap` | `eraftpb.SnapshotMetadata` of the last compaction or installed snapshot |
//! | `~raft/applied` | u64, big endian |
//! | `~raft/log/{index:020}` | `eraftpb.Entry` |
//!
//! The log is raftkit's `CachedLog` (a `MemStorage` cache raft-rs reads and these records,
//! kept in step; placement's log is small and compacted) under these keys ([`MetaLogKeys`]);
//! the rest of the table is placement's own. [`MetaRaftStorage`] is what raft-rs reads: the
//! log, with snapshots made on demand from the applied metadata ([`MetaSnapshots`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::Storage as _;
use raftkit::raft_log::SnapshotSource;
use raftkit::raft_log::{CachedLog, LogBatch, LogError, LogKeys, LogReader, LogStorage};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::error::{Error, Result};
use crate::storage::MetaStore;

const HARD_STATE: &[u8] = b"~raft/hs";
const CONF_STATE: &[u8] = b"~raft/cs";
const SNAP_META: &[u8] = b"~raft/snap";
const APPLIED: &[u8] = b"~raft/applied";
const LOG_PREFIX: &str = "~raft/log/";

fn log_key(index: u64) -> String {
    format!("{LOG_PREFIX}{index:020}")
}

/// Where the member's log lives in the metadata database.
pub struct MetaLogKeys;

impl LogKeys for MetaLogKeys {
    fn entry(&self, index: u64) -> Vec<u8> {
        log_key(index).into_bytes()
    }
    fn hard_state(&self) -> Vec<u8> {
        HARD_STATE.to_vec()
    }
}

/// The member's log.
pub type MetaLog = CachedLog<MetaLogKeys>;

/// A metadata write batch taking the log's records.
struct MetaBatch<'a>(&'a mut WriteBatch);

impl LogBatch for MetaBatch<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.put(key, value);
    }
    fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        self.0.delete_range(start, end);
    }
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Encode { what, source } => Error::Encode {
                key: format!("~raft ({what})"),
                source,
            },
            LogError::Corrupt { what, source } => corrupt(&format!("~raft ({what})"), source),
            LogError::CompactBeyondLog { .. } => Error::RaftLog {
                what: "compaction",
                source: raft::Error::Store(raft::StorageError::Unavailable),
            },
            LogError::Cache(source) => Error::RaftLog {
                what: "log cache",
                source,
            },
        }
    }
}

/// Encodes a raft record for the disk. A record that cannot be encoded fails the write: an
/// empty one would read back as another state (no vote, no commit, an empty entry).
fn encode(key: &str, record: &impl protobuf::Message) -> Result<Vec<u8>> {
    encoded(key, record.write_to_bytes())
}

fn encoded(key: &str, bytes: protobuf::ProtobufResult<Vec<u8>>) -> Result<Vec<u8>> {
    bytes.map_err(|source| Error::Encode {
        key: key.to_owned(),
        source,
    })
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// Whether the directory already holds this member's raft state.
pub fn has_state(store: &MetaStore) -> Result<bool> {
    Ok(store.db().get(CONF_STATE)?.is_some())
}

/// What a restarted member finds on disk.
pub struct Restored {
    pub log: MetaLog,
    pub applied: u64,
    /// False when the directory held no raft state (a new member).
    pub existed: bool,
}

/// Loads the raft state, or starts one with `voters` when there is none and `voters` is
/// not empty (an empty list leaves a blank member that waits for a snapshot).
pub fn restore(store: &MetaStore, voters: &[u64]) -> Result<Restored> {
    let db = store.db();
    let get = |key: &[u8]| db.get(key).map_err(Error::from);
    let Some(cs_bytes) = get(CONF_STATE)? else {
        return start_new(store, voters);
    };
    let cs = ConfState::parse_from_bytes(&cs_bytes).map_err(|e| corrupt("~raft/cs", e))?;
    let base = match get(SNAP_META)? {
        Some(v) => SnapshotMetadata::parse_from_bytes(&v).map_err(|e| corrupt("~raft/snap", e))?,
        None => SnapshotMetadata::default(),
    };
    let hs = match get(HARD_STATE)? {
        Some(v) => HardState::parse_from_bytes(&v).map_err(|e| corrupt("~raft/hs", e))?,
        None => HardState::default(),
    };
    let log = CachedLog::restore(MetaLogKeys, &base, read_log(store)?, hs)?;
    log.mem().wl().set_conf_state(cs);
    let applied = decode_applied(get(APPLIED)?)?;
    Ok(Restored {
        log,
        applied: applied.max(base.index),
        existed: true,
    })
}

/// Starts the raft state of a member whose directory holds none: from the initial snapshot
/// when `voters` is not empty, blank otherwise.
fn start_new(store: &MetaStore, voters: &[u64]) -> Result<Restored> {
    if voters.is_empty() {
        return Ok(Restored {
            log: CachedLog::new(MetaLogKeys),
            applied: 0,
            existed: false,
        });
    }
    let (snap, hs) = write_initial_snapshot(store, voters)?;
    Ok(Restored {
        log: CachedLog::restore(MetaLogKeys, snap.get_metadata(), Vec::new(), hs)?,
        applied: 1,
        existed: false,
    })
}

/// Persists the initial snapshot holding `voters` and its hard state, and returns both.
fn write_initial_snapshot(store: &MetaStore, voters: &[u64]) -> Result<(Snapshot, HardState)> {
    // Every initial member starts from the same snapshot at index 1 holding the
    // configuration, so a member added later always catches up from a snapshot and
    // learns the configuration from it rather than from a log that lacks it.
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.set_conf_state(ConfState::from((voters.to_vec(), vec![])));
    let mut batch = WriteBatch::default();
    batch.put(SNAP_META, encode("~raft/snap", meta)?);
    batch.put(CONF_STATE, encode("~raft/cs", meta.get_conf_state())?);
    let hs = HardState {
        term: 1,
        commit: 1,
        ..Default::default()
    };
    batch.put(HARD_STATE, encode("~raft/hs", &hs)?);
    set_applied(&mut batch, 1);
    store.write_batch(batch, true)?;
    Ok((snap, hs))
}

/// Reads every stored log entry, in index order.
fn read_log(store: &MetaStore) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mode = IteratorMode::From(LOG_PREFIX.as_bytes(), Direction::Forward);
    for item in store.db().iterator(mode) {
        let (k, v) = item?;
        if !k.starts_with(LOG_PREFIX.as_bytes()) {
            break;
        }
        entries.push(Entry::parse_from_bytes(&v).map_err(|e| corrupt("~raft/log", e))?);
    }
    Ok(entries)
}

/// Decodes the stored applied index (big endian), 0 when none is stored.
fn decode_applied(stored: Option<Vec<u8>>) -> Result<u64> {
    match stored {
        Some(v) => {
            Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(
                |_| corrupt("~raft/applied", "expected 8 bytes"),
            )?))
        }
        None => Ok(0),
    }
}

/// Adds new log entries (replacing any conflicting suffix) to `batch` and the cache.
pub fn append(log: &MetaLog, batch: &mut WriteBatch, entries: &[Entry]) -> Result<()> {
    Ok(log.append(&mut MetaBatch(batch), entries)?)
}

/// Records the hard state in `batch` and the cache.
pub fn set_hard_state(log: &MetaLog, batch: &mut WriteBatch, hs: &HardState) -> Result<()> {
    Ok(log.set_hard_state(&mut MetaBatch(batch), hs)?)
}

/// Records the configuration in `batch` and the cache.
pub fn set_conf_state(log: &MetaLog, batch: &mut WriteBatch, cs: &ConfState) -> Result<()> {
    batch.put(CONF_STATE, encode("~raft/cs", cs)?);
    log.mem().wl().set_conf_state(cs.clone());
    Ok(())
}

/// Records the applied index in `batch`.
pub fn set_applied(batch: &mut WriteBatch, applied: u64) {
    batch.put(APPLIED, applied.to_be_bytes());
}

/// Installs a snapshot: its metadata replaces the log and the configuration.
pub fn install_snapshot(
    store: &MetaStore,
    log: &MetaLog,
    batch: &mut WriteBatch,
    snap: &Snapshot,
) -> Result<()> {
    let meta = snap.get_metadata();
    let payload = proto::placementpb::MetaOps::decode(snap.get_data())
        .map_err(|e| corrupt("raft snapshot", e))?;
    log.install(&mut MetaBatch(batch), snap)?;
    store.replace_all(batch, &payload)?;
    batch.put(SNAP_META, encode("~raft/snap", meta)?);
    batch.put(CONF_STATE, encode("~raft/cs", meta.get_conf_state())?);
    set_applied(batch, meta.index);
    Ok(())
}

/// Drops log entries before `index` (which must be applied) from cache and disk.
pub fn compact(log: &MetaLog, store: &MetaStore, index: u64) -> Result<()> {
    let mut batch = WriteBatch::default();
    let Some(term) = log.compact(&mut MetaBatch(&mut batch), index)? else {
        return Ok(());
    };
    let mut meta = SnapshotMetadata {
        index: index - 1,
        term,
        ..Default::default()
    };
    meta.set_conf_state(log.mem().initial_state()?.conf_state);
    batch.put(SNAP_META, encode("~raft/snap", &meta)?);
    store.write_batch(batch, false)?;
    Ok(())
}

/// Where placement's raft-rs `Storage` gets its snapshots: the applied metadata.
pub struct MetaSnapshots {
    pub store: MetaStore,
    pub applied: Arc<AtomicU64>,
}

/// The storage raft-rs reads: the cached log, and snapshots of the applied metadata.
pub type MetaRaftStorage = LogStorage<MetaSnapshots>;

impl SnapshotSource for MetaSnapshots {
    /// Built on the raft thread, which is also the one applying: the dump is exactly the
    /// state at the applied index.
    fn snapshot(&self, log: &LogReader, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = self.applied.load(Ordering::Acquire);
        let term = log.term(applied)?;
        let data = self
            .store
            .dump()
            .map_err(|e| raft::Error::Store(raft::StorageError::Other(Box::new(e))))?;
        let mut snap = Snapshot::default();
        snap.set_data(data.encode_to_vec().into());
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(log.initial_state()?.conf_state);
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_that_cannot_be_encoded_fails_the_write() {
        let failed = Err(protobuf::ProtobufError::MessageNotInitialized {
            message: "HardState",
        });
        let err = encoded("~raft/hs", failed).unwrap_err().to_string();
        assert!(err.contains("~raft/hs"), "{err}");
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 9,
            ..Default::default()
        };
        let bytes = encode("~raft/hs", &hs).unwrap();
        assert_eq!(HardState::parse_from_bytes(&bytes).unwrap(), hs);
    }
}
