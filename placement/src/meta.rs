//! Metadata records and the write commands that connect the pure core to the disk.
//!
//! The cluster core ([`crate::cluster::ClusterView`]), the timestamp oracle and the id
//! allocator never touch RocksDB. They describe what must become durable as [`MetaWrite`]
//! values; [`crate::storage`] encodes them into one atomic RocksDB batch, and on restart the
//! same records are loaded back and re-applied to an empty core ([`StoredMeta`]). Records that
//! have no kvproto message of their own ([`RegionRecord`], [`ServiceSafePoint`]) are prost
//! messages defined here.

use proto::{keyspacepb, metapb};

/// A region as persisted: its metadata plus the last leader seen, so that a restarted
/// placement can route clients before the first heartbeat arrives.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegionRecord {
    #[prost(message, optional, tag = "1")]
    pub region: Option<metapb::Region>,
    #[prost(message, optional, tag = "2")]
    pub leader: Option<metapb::Peer>,
}

/// A service GC safe point (TiDB, BR, CDC each keep one).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ServiceSafePoint {
    #[prost(string, tag = "1")]
    pub service_id: String,
    #[prost(uint64, tag = "2")]
    pub safe_point: u64,
    /// Unix seconds after which the safe point no longer holds GC back; `i64::MAX` = never.
    #[prost(int64, tag = "3")]
    pub expire_at: i64,
}

/// The schedulers enabled through the HTTP API, by PD name (`balance-leader-scheduler`,
/// `evict-leader-scheduler-4`). Absent from disk means the default set.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SchedulerRecord {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
}

/// Settings changed at runtime through `POST /pd/api/v1/config`, over the config file's.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfigRecord {
    /// Replaces `location-labels` when `has_location_labels`.
    #[prost(string, repeated, tag = "1")]
    pub location_labels: Vec<String>,
    #[prost(bool, tag = "2")]
    pub has_location_labels: bool,
    /// Replaces `max-store-down-time` when not 0. Milliseconds.
    #[prost(uint64, tag = "3")]
    pub max_store_down_time_ms: u64,
    /// Replaces `isolation-level` when `has_isolation_level` (empty turns it off).
    #[prost(string, tag = "4")]
    pub isolation_level: String,
    #[prost(bool, tag = "5")]
    pub has_isolation_level: bool,
}

/// One durable change. A batch of them is written atomically.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaWrite {
    /// The cluster id, written once when the data directory is created.
    ClusterId(u64),
    /// This member's id, written once with the cluster id.
    MemberId(u64),
    /// Cluster metadata; its presence marks the cluster bootstrapped.
    Cluster(metapb::Cluster),
    /// Insert or replace a store.
    Store(metapb::Store),
    /// Forget a store (a purged tombstone).
    DeleteStore(u64),
    /// Replace the runtime config overrides.
    Config(ConfigRecord),
    /// Replace the list of enabled schedulers.
    Schedulers(SchedulerRecord),
    /// Insert or replace a region.
    Region(RegionRecord),
    /// Forget a region (merged away or replaced by a split).
    DeleteRegion(u64),
    /// TSO high-water mark in physical milliseconds: no timestamp at or above it was issued.
    TsoLimit(i64),
    /// Id high-water mark: no id above it was issued.
    IdLimit(u64),
    /// The cluster GC safe point.
    GcSafePoint(u64),
    /// Insert or replace a service safe point.
    ServiceSafePoint(ServiceSafePoint),
    /// Remove a service safe point.
    DeleteServiceSafePoint(String),
    /// Insert or replace a keyspace.
    Keyspace(keyspacepb::KeyspaceMeta),
}

/// Everything read back from disk at startup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredMeta {
    pub cluster_id: Option<u64>,
    pub member_id: Option<u64>,
    pub cluster: Option<metapb::Cluster>,
    pub stores: Vec<metapb::Store>,
    pub regions: Vec<RegionRecord>,
    pub tso_limit: i64,
    pub id_limit: u64,
    pub gc_safe_point: u64,
    pub service_safe_points: Vec<ServiceSafePoint>,
    pub keyspaces: Vec<keyspacepb::KeyspaceMeta>,
    pub schedulers: Option<SchedulerRecord>,
    pub config: Option<ConfigRecord>,
}

impl StoredMeta {
    /// The records the cluster core re-applies on startup, in a safe order.
    pub fn cluster_writes(&self) -> Vec<MetaWrite> {
        let mut out = Vec::new();
        out.extend(self.cluster.map(MetaWrite::Cluster));
        out.extend(self.stores.iter().cloned().map(MetaWrite::Store));
        out.extend(self.regions.iter().cloned().map(MetaWrite::Region));
        out.push(MetaWrite::GcSafePoint(self.gc_safe_point));
        out.extend(
            self.service_safe_points
                .iter()
                .cloned()
                .map(MetaWrite::ServiceSafePoint),
        );
        out.extend(self.keyspaces.iter().cloned().map(MetaWrite::Keyspace));
        out.extend(self.schedulers.clone().map(MetaWrite::Schedulers));
        out.extend(self.config.clone().map(MetaWrite::Config));
        out
    }
}
