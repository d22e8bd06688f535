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
//! [`MetaRaftStorage`] is what raft-rs reads: the log kept in a [`MemStorage`] (placement's log
//! is small and compacted), with snapshots made on demand from the applied metadata.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};
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
    pub storage: MemStorage,
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
    let storage = MemStorage::new();
    if let Some(v) = get(SNAP_META)? {
        restore_snapshot_meta(&storage, &v)?;
    }
    let mut entries = read_log(store)?;
    let first = storage.first_index()?;
    entries.retain(|e| e.index >= first);
    let mut core = storage.wl();
    if !entries.is_empty() {
        core.append(&entries).map_err(|e| corrupt("~raft/log", e))?;
    }
    if let Some(v) = get(HARD_STATE)? {
        core.set_hardstate(HardState::parse_from_bytes(&v).map_err(|e| corrupt("~raft/hs", e))?);
    }
    core.set_conf_state(cs);
    drop(core);
    let applied = decode_applied(get(APPLIED)?)?;
    let snap_index = storage.first_index()?.saturating_sub(1);
    Ok(Restored {
        storage,
        applied: applied.max(snap_index),
        existed: true,
    })
}

/// Starts the raft state of a member whose directory holds none: from the initial snapshot
/// when `voters` is not empty, blank otherwise.
fn start_new(store: &MetaStore, voters: &[u64]) -> Result<Restored> {
    let storage = MemStorage::new();
    let mut applied = 0;
    if !voters.is_empty() {
        let (snap, hs) = write_initial_snapshot(store, voters)?;
        storage
            .wl()
            .apply_snapshot(snap)
            .map_err(|e| corrupt("~raft/snap", e))?;
        storage.wl().set_hardstate(hs);
        applied = 1;
    }
    Ok(Restored {
        storage,
        applied,
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

/// Applies the stored snapshot metadata `bytes` to `storage`.
fn restore_snapshot_meta(storage: &MemStorage, bytes: &[u8]) -> Result<()> {
    let meta = SnapshotMetadata::parse_from_bytes(bytes).map_err(|e| corrupt("~raft/snap", e))?;
    let mut snap = Snapshot::default();
    snap.set_metadata(meta);
    storage
        .wl()
        .apply_snapshot(snap)
        .map_err(|e| corrupt("~raft/snap", e))
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
pub fn append(storage: &MemStorage, batch: &mut WriteBatch, entries: &[Entry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let last = storage.last_index()?;
    for e in entries {
        batch.put(log_key(e.index), encode("~raft/log", e)?);
    }
    let new_last = entries[entries.len() - 1].index;
    if new_last < last {
        batch.delete_range(log_key(new_last + 1), log_key(last + 1));
    }
    storage
        .wl()
        .append(entries)
        .map_err(|source| Error::RaftLog {
            what: "log append",
            source,
        })
}

/// Records the hard state in `batch` and the cache.
pub fn set_hard_state(storage: &MemStorage, batch: &mut WriteBatch, hs: &HardState) -> Result<()> {
    batch.put(HARD_STATE, encode("~raft/hs", hs)?);
    storage.wl().set_hardstate(hs.clone());
    Ok(())
}

/// Records the configuration in `batch` and the cache.
pub fn set_conf_state(storage: &MemStorage, batch: &mut WriteBatch, cs: &ConfState) -> Result<()> {
    batch.put(CONF_STATE, encode("~raft/cs", cs)?);
    storage.wl().set_conf_state(cs.clone());
    Ok(())
}

/// Records the applied index in `batch`.
pub fn set_applied(batch: &mut WriteBatch, applied: u64) {
    batch.put(APPLIED, applied.to_be_bytes());
}

/// Installs a snapshot: its metadata replaces the log and the configuration.
pub fn install_snapshot(
    store: &MetaStore,
    storage: &MemStorage,
    batch: &mut WriteBatch,
    snap: &Snapshot,
) -> Result<()> {
    let meta = snap.get_metadata();
    let payload = proto::placementpb::MetaOps::decode(snap.get_data())
        .map_err(|e| corrupt("raft snapshot", e))?;
    store.replace_all(batch, &payload)?;
    let last = storage.last_index()?;
    batch.delete_range(log_key(0), log_key(last.max(meta.index) + 1));
    batch.put(SNAP_META, encode("~raft/snap", meta)?);
    batch.put(CONF_STATE, encode("~raft/cs", meta.get_conf_state())?);
    set_applied(batch, meta.index);
    storage
        .wl()
        .apply_snapshot(snap.clone())
        .map_err(|source| Error::RaftLog {
            what: "snapshot",
            source,
        })
}

/// Drops log entries before `index` (which must be applied) from disk and cache.
pub fn compact(storage: &MemStorage, store: &MetaStore, index: u64) -> Result<()> {
    let first = storage.first_index()?;
    if index <= first {
        return Ok(());
    }
    let term = storage.term(index - 1)?;
    let mut meta = SnapshotMetadata {
        index: index - 1,
        term,
        ..Default::default()
    };
    meta.set_conf_state(storage.initial_state()?.conf_state);
    let mut batch = WriteBatch::default();
    batch.delete_range(log_key(0), log_key(index));
    batch.put(SNAP_META, encode("~raft/snap", &meta)?);
    store.write_batch(batch, false)?;
    storage
        .wl()
        .compact(index)
        .map_err(|source| Error::RaftLog {
            what: "compaction",
            source,
        })
}

/// The storage raft-rs reads: the cached log, and snapshots of the applied metadata.
pub struct MetaRaftStorage {
    pub mem: MemStorage,
    pub store: MetaStore,
    pub applied: Arc<AtomicU64>,
}

impl Storage for MetaRaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// Built on the raft thread, which is also the one applying: the dump is exactly the
    /// state at the applied index.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = self.applied.load(Ordering::Acquire);
        let term = self.mem.term(applied)?;
        let data = self
            .store
            .dump()
            .map_err(|e| raft::Error::Store(raft::StorageError::Other(Box::new(e))))?;
        let mut snap = Snapshot::default();
        snap.set_data(data.encode_to_vec().into());
        let meta = snap.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.mem.initial_state()?.conf_state);
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
