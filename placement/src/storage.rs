//! Metadata persistence in RocksDB: [`MetaStore`] encodes [`MetaWrite`]s into atomic write
//! batches and reads everything back as [`StoredMeta`] at startup.
//!
//! Layout (one default column family in `{data-dir}/meta`):
//!
//! | key | value |
//! |---|---|
//! | `m/cluster_id`, `m/member_id`, `m/alloc_id`, `m/gc_safe_point` | u64, big endian |
//! | `m/tso` | i64 ms, big endian |
//! | `m/cluster` | `metapb.Cluster` (present = bootstrapped) |
//! | `s/{id:020}` | `metapb.Store` |
//! | `r/{id:020}` | [`RegionRecord`] |
//! | `sp/{service}` | [`ServiceSafePoint`] |
//! | `k/{id:010}` | `keyspacepb.KeyspaceMeta` |
//! | `m/schedulers` | [`SchedulerRecord`] |
//! | `m/config` | [`ConfigRecord`] |
//!
//! Keys starting with `~` belong to the member itself (its raft log and state, see
//! [`crate::member::log`]) and `m/member_id` names the member: neither is part of the
//! replicated metadata, so neither appears in [`MetaStore::dump`] nor is touched by
//! [`MetaStore::replace_all`].
//!
//! The calls here block on disk; the server only makes them from the raft thread of
//! [`crate::member`] and once at startup.

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use proto::placementpb::{MetaOp, MetaOps};
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::meta::{
    ConfigRecord, MetaWrite, RegionRecord, SchedulerRecord, ServiceSafePoint, StoredMeta,
};

const CLUSTER_ID: &[u8] = b"m/cluster_id";
const MEMBER_ID: &[u8] = b"m/member_id";
const CLUSTER: &[u8] = b"m/cluster";
const TSO: &[u8] = b"m/tso";
const ALLOC_ID: &[u8] = b"m/alloc_id";
const GC_SAFE_POINT: &[u8] = b"m/gc_safe_point";
const SCHEDULERS: &[u8] = b"m/schedulers";
const CONFIG: &[u8] = b"m/config";
const STORE_PREFIX: &str = "s/";
const REGION_PREFIX: &str = "r/";
const SERVICE_PREFIX: &str = "sp/";
const KEYSPACE_PREFIX: &str = "k/";

/// Prefix of the member's own keys (raft log and state).
pub const LOCAL_PREFIX: &[u8] = b"~";

/// The metadata database. Cheap to clone: clones share the database and its [`Faults`].
#[derive(Clone)]
pub struct MetaStore {
    db: Arc<DB>,
    faults: Arc<Faults>,
}

impl MetaStore {
    /// Opens (creating if needed) the database under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(4);
        let db = DB::open(&opts, data_dir.join("meta"))?;
        Ok(MetaStore {
            db: Arc::new(db),
            faults: Arc::default(),
        })
    }

    /// The failures tests can inject into this database's writes.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// The underlying database, for the member's raft log.
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Writes a batch atomically; `sync` waits for the WAL to reach the disk.
    pub fn write(&self, writes: &[MetaWrite], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        apply_ops(&mut batch, &to_ops(writes));
        self.write_batch(batch, sync)
    }

    /// Writes a prepared batch.
    pub fn write_batch(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        self.faults.check_write()?;
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Every replicated record, as the ops that recreate it (a raft snapshot's payload).
    pub fn dump(&self) -> Result<MetaOps> {
        let mut ops = Vec::new();
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, v) = item?;
            if is_replicated(&k) {
                ops.push(MetaOp {
                    key: k.to_vec(),
                    value: v.to_vec(),
                    delete: false,
                });
            }
        }
        Ok(MetaOps { ops })
    }

    /// Adds to `batch` what replaces every replicated record by those of `snapshot`.
    pub fn replace_all(&self, batch: &mut WriteBatch, snapshot: &MetaOps) -> Result<()> {
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, _) = item?;
            if is_replicated(&k) {
                batch.delete(&k);
            }
        }
        for op in snapshot.ops.iter().filter(|op| is_replicated(&op.key)) {
            batch.put(&op.key, &op.value);
        }
        Ok(())
    }

    /// Reads everything back.
    pub fn load(&self) -> Result<StoredMeta> {
        Ok(StoredMeta {
            cluster_id: self.get_u64(CLUSTER_ID)?,
            member_id: self.get_u64(MEMBER_ID)?,
            cluster: self.get_msg(CLUSTER)?,
            stores: self.scan(STORE_PREFIX)?,
            regions: self.scan::<RegionRecord>(REGION_PREFIX)?,
            tso_limit: self.get_u64(TSO)?.unwrap_or(0) as i64,
            id_limit: self.get_u64(ALLOC_ID)?.unwrap_or(0),
            gc_safe_point: self.get_u64(GC_SAFE_POINT)?.unwrap_or(0),
            service_safe_points: self.scan::<ServiceSafePoint>(SERVICE_PREFIX)?,
            keyspaces: self.scan(KEYSPACE_PREFIX)?,
            schedulers: self.get_msg::<SchedulerRecord>(SCHEDULERS)?,
            config: self.get_msg::<ConfigRecord>(CONFIG)?,
        })
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        let Some(v) = self.db.get(key)? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| Error::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!("expected 8 bytes, found {}", v.len()),
        })?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    fn get_msg<M: Message + Default>(&self, key: &[u8]) -> Result<Option<M>> {
        self.db.get(key)?.map(|v| decode(key, &v)).transpose()
    }

    fn scan<M: Message + Default>(&self, prefix: &str) -> Result<Vec<M>> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        for item in self.db.iterator(mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }
}

fn decode<M: Message + Default>(key: &[u8], value: &[u8]) -> Result<M> {
    M::decode(value).map_err(|e| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Whether a key is part of the replicated metadata.
fn is_replicated(key: &[u8]) -> bool {
    !key.starts_with(LOCAL_PREFIX) && key != MEMBER_ID
}

/// Adds `ops` to `batch`.
pub fn apply_ops(batch: &mut WriteBatch, ops: &MetaOps) {
    for op in &ops.ops {
        if op.delete {
            batch.delete(&op.key);
        } else {
            batch.put(&op.key, &op.value);
        }
    }
}

/// The key-value changes that persist `writes`, in order.
pub fn to_ops(writes: &[MetaWrite]) -> MetaOps {
    let mut ops = Vec::with_capacity(writes.len());
    for w in writes {
        let (key, value) = encode(w);
        ops.push(MetaOp {
            key,
            delete: value.is_none(),
            value: value.unwrap_or_default(),
        });
    }
    MetaOps { ops }
}

fn encode(w: &MetaWrite) -> (Vec<u8>, Option<Vec<u8>>) {
    fn put(k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.into(), Some(v.into()))
    }
    fn delete(k: impl Into<Vec<u8>>) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.into(), None)
    }
    match w {
        MetaWrite::ClusterId(id) => put(CLUSTER_ID, id.to_be_bytes().to_vec()),
        MetaWrite::MemberId(id) => put(MEMBER_ID, id.to_be_bytes().to_vec()),
        MetaWrite::Cluster(c) => put(CLUSTER, c.encode_to_vec()),
        MetaWrite::Store(s) => put(format!("{STORE_PREFIX}{:020}", s.id), s.encode_to_vec()),
        MetaWrite::DeleteStore(id) => delete(format!("{STORE_PREFIX}{id:020}")),
        MetaWrite::Schedulers(s) => put(SCHEDULERS, s.encode_to_vec()),
        MetaWrite::Config(c) => put(CONFIG, c.encode_to_vec()),
        MetaWrite::Region(r) => {
            let id = r.region.as_ref().map_or(0, |r| r.id);
            put(format!("{REGION_PREFIX}{id:020}"), r.encode_to_vec())
        }
        MetaWrite::DeleteRegion(id) => delete(format!("{REGION_PREFIX}{id:020}")),
        MetaWrite::TsoLimit(ms) => put(TSO, (*ms as u64).to_be_bytes().to_vec()),
        MetaWrite::IdLimit(id) => put(ALLOC_ID, id.to_be_bytes().to_vec()),
        MetaWrite::GcSafePoint(sp) => put(GC_SAFE_POINT, sp.to_be_bytes().to_vec()),
        MetaWrite::ServiceSafePoint(sp) => put(
            format!("{SERVICE_PREFIX}{}", sp.service_id),
            sp.encode_to_vec(),
        ),
        MetaWrite::DeleteServiceSafePoint(id) => delete(format!("{SERVICE_PREFIX}{id}")),
        MetaWrite::Keyspace(k) => put(format!("{KEYSPACE_PREFIX}{:010}", k.id), k.encode_to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{keyspacepb, metapb};

    #[test]
    fn every_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let region = metapb::Region {
            id: 5,
            region_epoch: Some(metapb::RegionEpoch::default()),
            ..Default::default()
        };
        let writes = vec![
            MetaWrite::ClusterId(7),
            MetaWrite::MemberId(8),
            MetaWrite::Cluster(metapb::Cluster {
                id: 7,
                max_peer_count: 3,
            }),
            MetaWrite::Store(metapb::Store {
                id: 1,
                address: "a".into(),
                ..Default::default()
            }),
            MetaWrite::Store(metapb::Store {
                id: 2,
                address: "b".into(),
                ..Default::default()
            }),
            MetaWrite::DeleteStore(2),
            MetaWrite::Config(ConfigRecord {
                max_store_down_time_ms: 5000,
                ..Default::default()
            }),
            MetaWrite::Schedulers(SchedulerRecord {
                names: vec!["evict-leader-scheduler-1".into()],
            }),
            MetaWrite::Region(RegionRecord {
                region: Some(region.clone()),
                leader: None,
            }),
            MetaWrite::Region(RegionRecord {
                region: Some(metapb::Region { id: 6, ..region }),
                leader: None,
            }),
            MetaWrite::DeleteRegion(6),
            MetaWrite::TsoLimit(123_456),
            MetaWrite::IdLimit(1000),
            MetaWrite::GcSafePoint(99),
            MetaWrite::ServiceSafePoint(ServiceSafePoint {
                service_id: "cdc".into(),
                safe_point: 3,
                expire_at: 4,
            }),
            MetaWrite::Keyspace(keyspacepb::KeyspaceMeta {
                id: 1,
                name: "a".into(),
                ..Default::default()
            }),
        ];
        {
            let store = MetaStore::open(dir.path()).unwrap();
            store.write(&writes, true).unwrap();
        }
        let loaded = MetaStore::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(loaded.cluster_id, Some(7));
        assert_eq!(loaded.member_id, Some(8));
        assert_eq!(loaded.cluster.unwrap().max_peer_count, 3);
        assert_eq!(loaded.stores.len(), 1, "store 2 was deleted");
        assert_eq!(
            loaded.schedulers.unwrap().names,
            ["evict-leader-scheduler-1"]
        );
        assert_eq!(loaded.config.unwrap().max_store_down_time_ms, 5000);
        assert_eq!(loaded.regions.len(), 1, "region 6 was deleted");
        assert_eq!(loaded.tso_limit, 123_456);
        assert_eq!(loaded.id_limit, 1000);
        assert_eq!(loaded.gc_safe_point, 99);
        assert_eq!(loaded.service_safe_points[0].service_id, "cdc");
        assert_eq!(loaded.keyspaces[0].name, "a");
    }

    #[test]
    fn empty_directory_loads_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = MetaStore::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(loaded, StoredMeta::default());
    }
}
