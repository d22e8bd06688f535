//! A replica's raft-rs `Storage`, and the raft-state side of installing a
//! received snapshot.
//!
//! [`PeerRaftStorage`] serves the log from the replica's cache (raftkit's
//! `CachedLog`, kept by `peer_storage`). When raft asks for a snapshot,
//! [`RegionSnapshots`] hands back the one the generation worker last built (`snap::worker`) if that is still recent
//! enough (at or after the log's truncation point), else queues a build and
//! answers `SnapshotTemporarilyUnavailable`: raft asks again on the
//! follower's next heartbeat answer. Nothing here reads region data.
//!
//! [`install_writes`] are the raft-state writes a ready carrying a received
//! snapshot adds to the round's synced log batch, beside the log's reset to
//! the snapshot (`PeerStorage::install`): the new region and apply state,
//! and a [`PendingInstall`] marker. The data itself is installed by the apply
//! worker, which removes the marker when done; a restart finds a leftover
//! marker and installs again from the kept file.

use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use prost::Message as _;
use raft::prelude::{HardState, Snapshot};
use raft::StorageError as RaftStorageError;
use raftkit::raft_log::{LogReader, LogStorage, SnapshotSource};

use super::local_keys::{self, ApplyState};
use super::peer_storage::{encode_pb, RaftStateError};
use super::snap::worker::{GenState, GenTask, SnapSource};
use super::snap::{SnapDescriptor, SnapKey};
use crate::engine::{Modify, CF_RAFT};
use proto::metapb;

/// Where a replica's raft-rs `Storage` ([`PeerRaftStorage`]) gets its snapshots: the one the
/// generation worker built last, or a new build.
pub struct RegionSnapshots {
    pub src: Arc<Mutex<SnapSource>>,
    pub gen: Arc<Mutex<GenState>>,
    pub gen_tx: Sender<GenTask>,
}

/// A replica's raft-rs `Storage`: the log from its cache, snapshots from [`RegionSnapshots`].
pub type PeerRaftStorage = LogStorage<RegionSnapshots>;

fn temporarily_unavailable<T>() -> raft::Result<T> {
    Err(raft::Error::Store(
        RaftStorageError::SnapshotTemporarilyUnavailable,
    ))
}

impl SnapshotSource for RegionSnapshots {
    /// Never an error but `SnapshotTemporarilyUnavailable`: raft-rs panics on
    /// any other.
    fn snapshot(&self, log: &LogReader, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let (truncated, _) = log.truncated();
        let mut gen = self.gen.lock();
        match &*gen {
            GenState::Generating => return temporarily_unavailable(),
            GenState::Ready(snap, _) => {
                let meta = snap.get_metadata();
                let cs = meta.get_conf_state();
                // The receiver must be in it (raft refuses one that does not
                // name it; a demoting voter is named among the outgoing voters),
                // and it goes on from the log after it.
                let names_it = cs.voters.contains(&to)
                    || cs.learners.contains(&to)
                    || cs.voters_outgoing.contains(&to);
                if names_it && meta.index >= request_index && meta.index >= truncated {
                    return Ok((**snap).clone());
                }
            }
            GenState::Idle => {}
        }
        if self.src.lock().applied_index < request_index {
            return temporarily_unavailable();
        }
        *gen = GenState::Generating;
        drop(gen);
        let task = GenTask {
            source: self.src.clone(),
            state: self.gen.clone(),
        };
        if self.gen_tx.send(task).is_err() {
            *self.gen.lock() = GenState::Idle;
        }
        temporarily_unavailable()
    }
}

/// Which snapshot a replica is installing, persisted as its marker.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingInstall {
    pub key: SnapKey,
    /// The replica's region before the snapshot (its data goes too).
    pub old: Option<metapb::Region>,
    pub desc: SnapDescriptor,
}

impl PendingInstall {
    pub fn encode(&self) -> Vec<u8> {
        let old = self.old.as_ref().map(|r| r.encode_to_vec());
        let mut out = Vec::new();
        out.extend_from_slice(&self.key.term.to_be_bytes());
        out.extend_from_slice(&self.key.index.to_be_bytes());
        match old {
            Some(o) => {
                out.push(1);
                out.extend_from_slice(&(o.len() as u32).to_be_bytes());
                out.extend_from_slice(&o);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.desc.encode());
        out
    }

    pub fn decode(region_id: u64, v: &[u8]) -> Option<Self> {
        let u64_at = |i: usize| Some(u64::from_be_bytes(v.get(i..i + 8)?.try_into().ok()?));
        let key = SnapKey {
            region_id,
            term: u64_at(0)?,
            index: u64_at(8)?,
        };
        let (old, rest) = match v.get(16)? {
            0 => (None, v.get(17..)?),
            1 => {
                let len = u32::from_be_bytes(v.get(17..21)?.try_into().ok()?) as usize;
                let old = metapb::Region::decode(v.get(21..21 + len)?).ok()?;
                (Some(old), v.get(21 + len..)?)
            }
            _ => return None,
        };
        let desc = SnapDescriptor::decode(rest).ok()?;
        Some(PendingInstall { key, old, desc })
    }
}

/// The raft-state writes of a ready that carries a received snapshot besides
/// the log's own reset (`PeerStorage::install`): the new region, apply state
/// and hard state, and the pending-install marker.
pub fn install_writes(
    pending: &PendingInstall,
    hs: &HardState,
) -> Result<Vec<Modify>, RaftStateError> {
    let region = &pending.desc.region;
    let apply = ApplyState {
        applied_index: pending.key.index,
        truncated_index: pending.key.index,
        truncated_term: pending.key.term,
    };
    Ok(vec![
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::region_state_key(region.id),
            value: region.encode_to_vec(),
        },
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::apply_state_key(region.id),
            value: apply.encode(),
        },
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::raft_state_key(region.id),
            value: encode_pb(hs, region.id, "hard state")?,
        },
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::snapshot_install_key(region.id),
            value: pending.encode(),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::snap::SnapMeta;

    #[test]
    fn pending_install_round_trips() {
        let desc = SnapDescriptor {
            region: metapb::Region {
                id: 4,
                end_key: b"k".to_vec(),
                ..Default::default()
            },
            meta: SnapMeta {
                size: 10,
                crc32: 3,
                count: 2,
            },
        };
        for old in [
            None,
            Some(metapb::Region {
                id: 4,
                ..Default::default()
            }),
        ] {
            let p = PendingInstall {
                key: SnapKey {
                    region_id: 4,
                    term: 6,
                    index: 77,
                },
                old,
                desc: desc.clone(),
            };
            assert_eq!(PendingInstall::decode(4, &p.encode()), Some(p));
        }
        assert_eq!(PendingInstall::decode(4, b"short"), None);
    }
}
