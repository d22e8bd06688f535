//! Durable raft state of one region replica, over the engine's `raft` CF.
//!
//! The log itself is raftkit's `CachedLog` (the cache raft-rs reads and the
//! records on disk, kept in step) under this store's key layout
//! ([`RegionLogKeys`]); this module adds what is a region's own: its apply
//! state and the size of its log. [`load`] rebuilds it at start,
//! [`PeerStorage::append`] and [`PeerStorage::set_hard_state`] stage writes
//! into the round's shared write batch, so one synced RocksDB write persists
//! the ready of every region.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raftkit::raft_log::{self, CachedLog, LogBatch, LogError, LogKeys};
use rocksdb::WriteBatch;

use super::local_keys::{self, ApplyState};
use crate::engine::{Engine, EngineError, Modify, CF_RAFT};
use proto::metapb;

/// Index and term a freshly bootstrapped region's log starts at (as TiKV).
pub const INIT_INDEX: u64 = 5;
pub const INIT_TERM: u64 = 5;

/// A replica's persisted raft state (log, hard state, region and apply state)
/// could not be read or written. Not to be confused with [`crate::storage::Error`],
/// what a client request fails with, nor with raft-rs's own `StorageError`.
#[derive(Debug, thiserror::Error)]
pub enum RaftStateError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("region {region_id}: corrupt {what}")]
    Corrupt { region_id: u64, what: &'static str },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("starting the snapshot workers: {0}")]
    Worker(#[source] std::io::Error),
    #[error("region {region_id}: encoding {what} failed: {source}")]
    Encode {
        region_id: u64,
        what: &'static str,
        source: protobuf::ProtobufError,
    },
    #[error("region {region_id}: {source}")]
    Log { region_id: u64, source: LogError },
}

/// Encodes a raft record bound for disk; an encoding failure is an error,
/// never an empty record.
pub fn encode_pb(
    msg: &impl protobuf::Message,
    region_id: u64,
    what: &'static str,
) -> Result<Vec<u8>, RaftStateError> {
    msg.write_to_bytes()
        .map_err(|source| RaftStateError::Encode {
            region_id,
            what,
            source,
        })
}

/// Where a region's log lives: `raft` column family keys under the region's prefix.
pub struct RegionLogKeys(pub u64);

impl LogKeys for RegionLogKeys {
    fn entry(&self, index: u64) -> Vec<u8> {
        local_keys::raft_log_key(self.0, index)
    }
    fn hard_state(&self) -> Vec<u8> {
        local_keys::raft_state_key(self.0)
    }
}

/// Stages a log's records as engine writes to the `raft` column family.
#[derive(Default)]
struct RaftCf(Vec<Modify>);

impl LogBatch for RaftCf {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.push(Modify::Put {
            cf: CF_RAFT,
            key,
            value,
        });
    }
    fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        self.0.push(Modify::DeleteRange {
            cf: CF_RAFT,
            start,
            end,
        });
    }
}

pub struct PeerStorage {
    pub region_id: u64,
    /// The raft log, its cache and the truncation point raft-rs reads.
    pub log: CachedLog<RegionLogKeys>,
    pub apply_state: ApplyState,
    pub hard_state: HardState,
    /// Data size of each entry in the log cache, by index, and their sum.
    sizes: std::collections::VecDeque<(u64, u64)>,
    bytes: u64,
}

/// The writes that create a new region replica on disk at the initial index.
pub fn bootstrap_writes(region: &metapb::Region) -> Result<Vec<Modify>, RaftStateError> {
    let hs = HardState {
        term: INIT_TERM,
        commit: INIT_INDEX,
        ..Default::default()
    };
    let apply = ApplyState {
        applied_index: INIT_INDEX,
        truncated_index: INIT_INDEX,
        truncated_term: INIT_TERM,
    };
    Ok(vec![
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::region_state_key(region.id),
            value: region.encode_to_vec(),
        },
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::raft_state_key(region.id),
            value: encode_pb(&hs, region.id, "hard state")?,
        },
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::apply_state_key(region.id),
            value: apply.encode(),
        },
    ])
}

/// The raft configuration `region`'s peer roles stand for (at restart, in snapshots). In a
/// joint state (some peer an incoming or demoting voter) the incoming voters are the voters
/// and incoming voters, the outgoing ones the voters and demoting voters, and the demoting
/// voters become learners when the state is left; it is only ever left on request.
pub fn conf_state_of(region: &metapb::Region) -> ConfState {
    use metapb::PeerRole;
    let joint = super::membership::in_joint(region);
    let mut cs = ConfState::default();
    for p in &region.peers {
        match p.role() {
            PeerRole::Voter => {
                cs.voters.push(p.id);
                if joint {
                    cs.voters_outgoing.push(p.id);
                }
            }
            PeerRole::IncomingVoter => cs.voters.push(p.id),
            PeerRole::DemotingVoter => {
                cs.voters_outgoing.push(p.id);
                cs.learners_next.push(p.id);
            }
            PeerRole::Learner => cs.learners.push(p.id),
        }
    }
    cs.auto_leave = false;
    cs
}

/// An empty log for a replica created to receive a snapshot.
pub fn empty(region_id: u64) -> PeerStorage {
    PeerStorage {
        region_id,
        log: CachedLog::new(RegionLogKeys(region_id)),
        apply_state: ApplyState::default(),
        hard_state: HardState::default(),
        sizes: Default::default(),
        bytes: 0,
    }
}

/// What a removed replica leaves behind so that late messages cannot bring it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The conf version at which this store knows the replica was removed: messages from that
    /// configuration or an older one are stale.
    pub conf_ver: u64,
    /// The removed replica's peer id (0 in tombstones written before it was kept): messages to
    /// it or an older one are stale, since a store added back gets a new, larger peer id.
    pub peer_id: u64,
}

impl Tombstone {
    /// Whether a message sent in configuration `conf_ver` to peer `to_peer_id` is stale.
    pub fn outdates(&self, conf_ver: u64, to_peer_id: u64) -> bool {
        conf_ver <= self.conf_ver || to_peer_id <= self.peer_id
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = self.conf_ver.to_be_bytes().to_vec();
        v.extend_from_slice(&self.peer_id.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Tombstone> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(v.get(i..i + 8)?.try_into().ok()?))
        };
        match v.len() {
            8 => Some(Tombstone {
                conf_ver: word(0)?,
                peer_id: 0,
            }),
            16 => Some(Tombstone {
                conf_ver: word(0)?,
                peer_id: word(8)?,
            }),
            _ => None,
        }
    }
}

/// Writes removing replica `peer_id`'s raft state and metadata, leaving a tombstone.
/// `removed_at` is the conf version at which another replica said this one was removed (0 when
/// it applied its own removal): a replica cut off while the region changed has an older view
/// than the configuration that removed it, and messages from in between are stale too.
pub fn destroy_writes(region: &metapb::Region, peer_id: u64, removed_at: u64) -> Vec<Modify> {
    let own = region.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
    let tombstone = Tombstone {
        conf_ver: own.max(removed_at),
        peer_id,
    };
    vec![
        Modify::DeleteRange {
            cf: CF_RAFT,
            start: local_keys::raft_log_key(region.id, 0),
            end: local_keys::raft_log_key(region.id, u64::MAX),
        },
        Modify::Delete {
            cf: CF_RAFT,
            key: local_keys::raft_state_key(region.id),
        },
        Modify::Delete {
            cf: CF_RAFT,
            key: local_keys::apply_state_key(region.id),
        },
        Modify::Delete {
            cf: CF_RAFT,
            key: local_keys::region_state_key(region.id),
        },
        Modify::Delete {
            cf: CF_RAFT,
            key: local_keys::snapshot_install_key(region.id),
        },
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::tombstone_key(region.id),
            value: tombstone.encode(),
        },
    ]
}

/// The tombstone this store's removed replica of `region_id` left, if any.
pub fn tombstone(engine: &Engine, region_id: u64) -> Result<Option<Tombstone>, RaftStateError> {
    Ok(engine
        .get_cf(CF_RAFT, &local_keys::tombstone_key(region_id))?
        .and_then(|v| Tombstone::decode(&v)))
}

/// The snapshot install a crash interrupted for `region_id`, if any.
pub fn pending_install(
    engine: &Engine,
    region_id: u64,
) -> Result<Option<super::snapshot::PendingInstall>, RaftStateError> {
    let Some(v) = engine.get_cf(CF_RAFT, &local_keys::snapshot_install_key(region_id))? else {
        return Ok(None);
    };
    super::snapshot::PendingInstall::decode(region_id, &v)
        .map(Some)
        .ok_or(RaftStateError::Corrupt {
            region_id,
            what: "pending snapshot install",
        })
}

/// Every region whose state is stored in the engine.
pub fn load_regions(engine: &Engine) -> Result<Vec<metapb::Region>, RaftStateError> {
    let mut cursor = engine.raw_cursor(CF_RAFT)?;
    cursor.seek(&[local_keys::REGION_STATE_PREFIX]);
    let mut regions = vec![];
    while cursor.valid()? {
        let Some(region_id) = local_keys::region_id_of_state_key(cursor.key()) else {
            break;
        };
        let region =
            metapb::Region::decode(cursor.value()).map_err(|_| RaftStateError::Corrupt {
                region_id,
                what: "region state",
            })?;
        regions.push(region);
        cursor.next();
    }
    Ok(regions)
}

/// Rebuilds the raft log cache of `region` from disk.
pub fn load(engine: &Engine, region: &metapb::Region) -> Result<PeerStorage, RaftStateError> {
    let region_id = region.id;
    let corrupt = |what| RaftStateError::Corrupt { region_id, what };
    let apply_state = engine
        .get_cf(CF_RAFT, &local_keys::apply_state_key(region_id))?
        .and_then(|v| ApplyState::decode(&v))
        .ok_or_else(|| corrupt("apply state"))?;
    let mut hard_state = match engine.get_cf(CF_RAFT, &local_keys::raft_state_key(region_id))? {
        Some(v) => HardState::parse_from_bytes(&v).map_err(|_| corrupt("raft state"))?,
        None => return Err(corrupt("missing raft state")),
    };
    // An entry may have been applied before its commit index reached disk.
    hard_state.commit = hard_state.commit.max(apply_state.applied_index);

    let mut base = SnapshotMetadata {
        index: apply_state.truncated_index,
        term: apply_state.truncated_term,
        ..Default::default()
    };
    base.set_conf_state(conf_state_of(region));

    let mut entries = vec![];
    let mut cursor = engine.raw_cursor(CF_RAFT)?;
    let end = local_keys::raft_log_key(region_id, u64::MAX);
    cursor.seek(&local_keys::raft_log_key(
        region_id,
        apply_state.truncated_index + 1,
    ));
    while cursor.valid()? && cursor.key() < end.as_slice() {
        let e: Entry = raft_log::decode("log entry", cursor.value())
            .map_err(|source| RaftStateError::Log { region_id, source })?;
        entries.push(e);
        cursor.next();
    }
    let sizes: std::collections::VecDeque<(u64, u64)> = entries
        .iter()
        .map(|e| (e.index, e.data.len() as u64))
        .collect();
    let bytes = sizes.iter().map(|(_, n)| n).sum();
    let log = CachedLog::restore(RegionLogKeys(region_id), &base, entries, hard_state.clone())
        .map_err(|source| RaftStateError::Log { region_id, source })?;
    Ok(PeerStorage {
        region_id,
        log,
        apply_state,
        hard_state,
        sizes,
        bytes,
    })
}

impl PeerStorage {
    /// The log cache raft-rs reads.
    pub fn mem(&self) -> &MemStorage {
        self.log.mem()
    }

    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// Bytes of entry data in the log cache.
    pub fn log_bytes(&self) -> u64 {
        self.bytes
    }

    /// Stages `f`'s log records into `wb`.
    fn stage<T>(
        &self,
        engine: &Engine,
        wb: &mut WriteBatch,
        f: impl FnOnce(&mut RaftCf) -> Result<T, LogError>,
    ) -> Result<T, RaftStateError> {
        let mut staged = RaftCf::default();
        let out = f(&mut staged).map_err(|source| RaftStateError::Log {
            region_id: self.region_id,
            source,
        })?;
        engine.fill_batch(wb, &staged.0)?;
        Ok(out)
    }

    /// Restarts the log after a received snapshot (its records into `wb`): the
    /// old entries go, and the log and apply state start at the snapshot.
    pub fn install(
        &mut self,
        snap: &Snapshot,
        engine: &Engine,
        wb: &mut WriteBatch,
    ) -> Result<(), RaftStateError> {
        self.stage(engine, wb, |b| self.log.install(b, snap))?;
        let meta = snap.get_metadata();
        self.apply_state = ApplyState {
            applied_index: meta.index,
            truncated_index: meta.index,
            truncated_term: meta.term,
        };
        self.sizes.clear();
        self.bytes = 0;
        Ok(())
    }

    fn track_sizes(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        while self.sizes.back().is_some_and(|(i, _)| *i >= first) {
            let (_, n) = self.sizes.pop_back().expect("back exists");
            self.bytes -= n;
        }
        for e in entries {
            self.sizes.push_back((e.index, e.data.len() as u64));
            self.bytes += e.data.len() as u64;
        }
    }

    /// Stages `entries` (which may overwrite a conflicting tail) into `wb`.
    pub fn append(
        &mut self,
        entries: &[Entry],
        engine: &Engine,
        wb: &mut WriteBatch,
    ) -> Result<(), RaftStateError> {
        self.stage(engine, wb, |b| self.log.append(b, entries))?;
        self.track_sizes(entries);
        Ok(())
    }

    pub fn set_hard_state(
        &mut self,
        hs: &HardState,
        engine: &Engine,
        wb: &mut WriteBatch,
    ) -> Result<(), RaftStateError> {
        self.stage(engine, wb, |b| self.log.set_hard_state(b, hs))?;
        self.hard_state = hs.clone();
        Ok(())
    }

    pub fn set_commit(
        &mut self,
        commit: u64,
        engine: &Engine,
        wb: &mut WriteBatch,
    ) -> Result<(), RaftStateError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs, engine, wb)
    }

    pub fn apply_state_modify(&self) -> Modify {
        Modify::Put {
            cf: CF_RAFT,
            key: local_keys::apply_state_key(self.region_id),
            value: self.apply_state.encode(),
        }
    }

    /// Drops log entries up to `index` (already applied) from memory and disk.
    pub fn compact_to(
        &mut self,
        index: u64,
        engine: &Engine,
        wb: &mut WriteBatch,
    ) -> Result<(), RaftStateError> {
        if index <= self.apply_state.truncated_index || index > self.apply_state.applied_index {
            return Ok(());
        }
        let Some(term) = self.stage(engine, wb, |b| self.log.compact(b, index + 1))? else {
            return Ok(());
        };
        while self.sizes.front().is_some_and(|(i, _)| *i <= index) {
            let (_, n) = self.sizes.pop_front().expect("front exists");
            self.bytes -= n;
        }
        self.apply_state.truncated_index = index;
        self.apply_state.truncated_term = term;
        engine.fill_batch(wb, &[self.apply_state_modify()])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            peers: vec![metapb::Peer {
                id: 2,
                store_id: 1,
                ..Default::default()
            }],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
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

    #[test]
    fn persisted_log_survives_reload_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .write(&bootstrap_writes(&region()).unwrap(), true)
            .unwrap();
        let mut ps = load(&engine, &region()).unwrap();
        assert_eq!(ps.last_index(), INIT_INDEX);
        let mut wb = WriteBatch::default();
        let es: Vec<_> = (6..=9).map(|i| entry(i, 6)).collect();
        ps.append(&es, &engine, &mut wb).unwrap();
        // A new leader overwrites 8 and 9 with a shorter tail.
        ps.append(&[entry(8, 7)], &engine, &mut wb).unwrap();
        ps.set_commit(8, &engine, &mut wb).unwrap();
        engine.write_batch(wb, true).unwrap();

        let ps = load(&engine, &region()).unwrap();
        assert_eq!(ps.last_index(), 8);
        assert_eq!(ps.mem().term(8).unwrap(), 7);
        assert_eq!(ps.hard_state.commit, 8);
        assert_eq!(load_regions(&engine).unwrap(), vec![region()]);

        let mut ps = ps;
        ps.apply_state.applied_index = 8;
        let mut wb = WriteBatch::default();
        ps.compact_to(7, &engine, &mut wb).unwrap();
        engine.write_batch(wb, true).unwrap();
        let ps = load(&engine, &region()).unwrap();
        assert_eq!(ps.mem().first_index().unwrap(), 8);
        assert_eq!(ps.apply_state.truncated_term, 6);
    }

    /// `cs` with every list sorted, to compare configurations.
    fn sorted(mut cs: ConfState) -> ConfState {
        cs.voters.sort_unstable();
        cs.learners.sort_unstable();
        cs.voters_outgoing.sort_unstable();
        cs.learners_next.sort_unstable();
        cs
    }

    fn peer(id: u64, store_id: u64, role: metapb::PeerRole) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            role: role as i32,
            ..Default::default()
        }
    }

    /// A raft node of peer 101 started from the configuration `region` stands for.
    fn node_of(region: &metapb::Region) -> raft::RawNode<MemStorage> {
        let cfg = raft::Config {
            id: 101,
            ..Default::default()
        };
        let storage = MemStorage::new_with_conf_state(conf_state_of(region));
        raft::RawNode::new(&cfg, storage, &crate::raftstore::logger::raft_logger()).unwrap()
    }

    fn running(node: &raft::RawNode<MemStorage>) -> ConfState {
        sorted(node.raft.prs().conf().to_conf_state())
    }

    #[test]
    fn conf_state_of_a_joint_region_is_what_raft_runs_and_restarts_with() {
        use crate::raftstore::membership;
        use metapb::PeerRole;
        use raft::prelude::ConfChangeType;
        let mut region = region();
        region.peers = vec![
            peer(101, 1, PeerRole::Voter),
            peer(102, 2, PeerRole::Voter),
            peer(103, 3, PeerRole::Voter),
            peer(104, 4, PeerRole::Learner),
            peer(105, 5, PeerRole::Learner),
        ];
        let plain = conf_state_of(&region);
        assert_eq!(plain.voters, vec![101, 102, 103]);
        assert_eq!(plain.learners, vec![104, 105]);
        assert!(plain.voters_outgoing.is_empty() && plain.learners_next.is_empty());
        let mut node = node_of(&region);
        assert_eq!(running(&node), sorted(plain));

        // Promote 104, demote 103, remove learner 105, add learner 106: raft's joint
        // configuration is exactly what the joint region's roles say.
        let changes = [
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (
                ConfChangeType::AddLearnerNode,
                peer(103, 3, PeerRole::Learner),
            ),
            (ConfChangeType::RemoveNode, peer(105, 5, PeerRole::Learner)),
            (
                ConfChangeType::AddLearnerNode,
                peer(106, 6, PeerRole::Learner),
            ),
        ];
        let joint = membership::enter_joint(&region, &changes).unwrap();
        let cs = node
            .apply_conf_change(&membership::conf_change_v2(&changes))
            .unwrap();
        let expected = ConfState {
            voters: vec![101, 102, 104],
            learners: vec![106],
            voters_outgoing: vec![101, 102, 103],
            learners_next: vec![103],
            auto_leave: false,
            ..Default::default()
        };
        assert_eq!(sorted(cs), expected);
        assert_eq!(sorted(conf_state_of(&joint)), expected);
        // A replica restarted (or built from a snapshot) in the joint state runs it again,
        // and can leave it.
        let mut restarted = node_of(&joint);
        assert_eq!(running(&restarted), expected);

        let left = membership::leave_joint(&joint).unwrap();
        let leave = membership::conf_change_v2(&[]);
        let expected = ConfState {
            voters: vec![101, 102, 104],
            learners: vec![103, 106],
            ..Default::default()
        };
        assert_eq!(sorted(node.apply_conf_change(&leave).unwrap()), expected);
        assert_eq!(
            sorted(restarted.apply_conf_change(&leave).unwrap()),
            expected
        );
        assert_eq!(sorted(conf_state_of(&left)), expected);
    }

    #[test]
    fn a_joint_region_is_reloaded_with_its_joint_configuration() {
        use metapb::PeerRole;
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let mut joint = region();
        joint.peers = vec![
            peer(2, 1, PeerRole::Voter),
            peer(3, 2, PeerRole::DemotingVoter),
            peer(4, 3, PeerRole::IncomingVoter),
        ];
        engine
            .write(&bootstrap_writes(&joint).unwrap(), true)
            .unwrap();
        assert_eq!(load_regions(&engine).unwrap(), vec![joint.clone()]);
        let ps = load(&engine, &joint).unwrap();
        let cs = ps.mem().initial_state().unwrap().conf_state;
        assert_eq!(
            sorted(cs),
            ConfState {
                voters: vec![2, 4],
                voters_outgoing: vec![2, 3],
                learners_next: vec![3],
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_tombstone_outdates_older_configurations_and_peer_ids_and_reads_its_old_form() {
        let t = Tombstone {
            conf_ver: 7,
            peer_id: 40,
        };
        assert_eq!(Tombstone::decode(&t.encode()), Some(t));
        assert!(t.outdates(7, 41), "same configuration");
        assert!(t.outdates(9, 40), "same peer");
        assert!(
            !t.outdates(8, 41),
            "a newer configuration adding the store back"
        );
        let old = Tombstone::decode(&7u64.to_be_bytes()).unwrap();
        assert_eq!(
            old,
            Tombstone {
                conf_ver: 7,
                peer_id: 0
            }
        );
        assert_eq!(Tombstone::decode(b"short"), None);
    }
}
