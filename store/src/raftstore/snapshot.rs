//! Raft snapshots of a region: what a lagging or new replica catches up from.
//!
//! [`PeerRaftStorage`] is the raft-rs `Storage` of a replica: the log comes
//! from its [`MemStorage`] cache, and a snapshot is built on demand from the
//! engine — every key the region owns in every data column family, at the
//! applied index (the raftstore applies synchronously, so the engine is at
//! exactly that index whenever raft asks). The snapshot data is the region
//! followed by the pairs, in the raft command encoding. [`apply_writes`]
//! turns a received snapshot into one atomic batch of engine writes.

use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError as RaftStorageError};

use super::cmd::RaftCmd;
use super::keys::{self, ApplyState};
use super::peer_storage::conf_state_of;
use crate::engine::{Engine, EngineError, Modify, CF_RAFT, DATA_CFS};
use crate::keys::region_data_ranges;
use proto::metapb;

/// What the snapshot builder needs to know of its replica.
pub struct SnapSource {
    pub engine: Engine,
    pub region: metapb::Region,
    pub applied_index: u64,
}

#[derive(Clone)]
pub struct PeerRaftStorage {
    pub mem: MemStorage,
    pub src: Arc<Mutex<SnapSource>>,
}

impl Storage for PeerRaftStorage {
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

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let src = self.src.lock();
        if src.applied_index < request_index {
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let term = self.mem.term(src.applied_index)?;
        let data = build_data(&src.engine, &src.region).map_err(|e| {
            tracing::error!(region_id = src.region.id, error = %e, "building snapshot failed");
            raft::Error::Store(RaftStorageError::SnapshotTemporarilyUnavailable)
        })?;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = src.applied_index;
        meta.term = term;
        meta.set_conf_state(conf_state_of(&src.region));
        tracing::info!(
            region_id = src.region.id,
            index = src.applied_index,
            bytes = snap.data.len(),
            "snapshot built"
        );
        Ok(snap)
    }
}

/// Encodes the region and every pair it owns.
pub fn build_data(engine: &Engine, region: &metapb::Region) -> Result<Vec<u8>, EngineError> {
    let snap = engine.snapshot();
    let mut puts = Vec::new();
    for (start, end) in region_data_ranges(region) {
        for cf in DATA_CFS {
            let mut c = snap.cursor(cf, Some(start.clone()), Some(end.clone()))?;
            c.seek_to_first();
            while c.valid()? {
                puts.push(Modify::Put {
                    cf,
                    key: c.key().to_vec(),
                    value: c.value().to_vec(),
                });
                c.next();
            }
        }
    }
    let region_bytes = region.encode_to_vec();
    let mut out = Vec::with_capacity(region_bytes.len() + 4);
    out.extend_from_slice(&(region_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&region_bytes);
    out.extend_from_slice(&RaftCmd::Write(puts).encode());
    Ok(out)
}

/// Splits snapshot data into the region and its pairs.
pub fn decode_data(data: &[u8]) -> Result<(metapb::Region, Vec<Modify>), String> {
    let len = data
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("snapshot too short")?;
    let region_bytes = data.get(4..4 + len).ok_or("snapshot region truncated")?;
    let region = metapb::Region::decode(region_bytes).map_err(|e| e.to_string())?;
    match RaftCmd::decode(&data[4 + len..]).map_err(|e| e.to_string())? {
        RaftCmd::Write(puts) => Ok((region, puts)),
        _ => Err("snapshot body is not a write".into()),
    }
}

/// Engine writes installing a snapshot at `(index, term)`: the old and new
/// ranges cleared, the pairs written, and the raft state reset to the
/// snapshot (the old log is dropped).
pub fn apply_writes(
    old: Option<&metapb::Region>,
    region: &metapb::Region,
    puts: Vec<Modify>,
    index: u64,
    term: u64,
    hs: &HardState,
) -> Vec<Modify> {
    let mut m = Vec::with_capacity(puts.len() + 16);
    for r in old.into_iter().chain(std::iter::once(region)) {
        for (start, end) in region_data_ranges(r) {
            for cf in DATA_CFS {
                m.push(Modify::DeleteRange {
                    cf,
                    start: start.clone(),
                    end: end.clone(),
                });
            }
        }
    }
    m.extend(puts);
    let apply = ApplyState {
        applied_index: index,
        truncated_index: index,
        truncated_term: term,
    };
    m.push(Modify::DeleteRange {
        cf: CF_RAFT,
        start: keys::raft_log_key(region.id, 0),
        end: keys::raft_log_key(region.id, u64::MAX),
    });
    m.push(Modify::Put {
        cf: CF_RAFT,
        key: keys::region_state_key(region.id),
        value: region.encode_to_vec(),
    });
    m.push(Modify::Put {
        cf: CF_RAFT,
        key: keys::apply_state_key(region.id),
        value: apply.encode(),
    });
    m.push(Modify::Put {
        cf: CF_RAFT,
        key: keys::raft_state_key(region.id),
        value: hs.write_to_bytes().unwrap_or_default(),
    });
    m
}

/// The conf state a snapshot carries must match its region.
pub fn conf_state_matches(snap: &Snapshot, region: &metapb::Region) -> bool {
    let mut a: ConfState = snap.get_metadata().get_conf_state().clone();
    let mut b = conf_state_of(region);
    a.voters.sort_unstable();
    b.voters.sort_unstable();
    a.learners.sort_unstable();
    b.learners.sort_unstable();
    a.voters == b.voters && a.learners == b.learners
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CF_WRITE;
    use crate::keys::RawSpace;

    #[test]
    fn snapshot_carries_only_the_region_and_installs_atomically() {
        let src_dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(src_dir.path()).unwrap();
        let region = metapb::Region {
            id: 3,
            start_key: proto::codec::encode_bytes(b"b"),
            end_key: proto::codec::encode_bytes(b"m"),
            ..Default::default()
        };
        let put = |k: &[u8]| Modify::Put {
            cf: CF_WRITE,
            key: RawSpace::V2.key(k),
            value: k.to_vec(),
        };
        engine
            .write(&[put(b"a"), put(b"c"), put(b"k"), put(b"m")], false)
            .unwrap();
        let data = build_data(&engine, &region).unwrap();
        let (decoded, puts) = decode_data(&data).unwrap();
        assert_eq!(decoded, region);
        assert_eq!(puts, vec![put(b"c"), put(b"k")]);
        assert!(decode_data(&data[..data.len() - 1]).is_err());

        let dst_dir = tempfile::tempdir().unwrap();
        let dst = Engine::open(dst_dir.path()).unwrap();
        // Stale data inside the range goes, data outside stays.
        dst.write(&[put(b"d"), put(b"z")], false).unwrap();
        let hs = HardState {
            term: 7,
            commit: 20,
            ..Default::default()
        };
        dst.write(&apply_writes(None, &region, puts, 20, 7, &hs), true)
            .unwrap();
        let get = |k: &[u8]| dst.get_cf(CF_WRITE, &RawSpace::V2.key(k)).unwrap();
        assert_eq!(get(b"c"), Some(b"c".to_vec()));
        assert_eq!(get(b"d"), None);
        assert_eq!(get(b"z"), Some(b"z".to_vec()));
        let apply = dst
            .get_cf(CF_RAFT, &keys::apply_state_key(3))
            .unwrap()
            .and_then(|v| ApplyState::decode(&v))
            .unwrap();
        assert_eq!((apply.applied_index, apply.truncated_term), (20, 7));
    }
}
