//! The one error type of the placement crate.
//!
//! Every fallible function in the crate returns [`Result`]. Variants name what failed and keep
//! their source; the gRPC layer (`service`) maps each variant to the `pdpb.Error` type or gRPC
//! status that PD itself would answer with, so the official clients retry or fail exactly as
//! they do against PD.

use std::path::PathBuf;

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the placement driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field holds a value that cannot be used.
    #[error("invalid config field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },

    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The configuration file is not valid TOML for [`crate::Config`].
    #[error("cannot parse config file {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        source: toml::de::Error,
    },

    /// RocksDB failed.
    #[error("metadata storage: {0}")]
    Storage(#[from] rocksdb::Error),

    /// A stored record cannot be decoded.
    #[error("corrupt metadata record `{key}`: {reason}")]
    Corrupt { key: String, reason: String },

    /// The data directory belongs to another cluster than the configured `cluster-id`.
    #[error("data directory holds cluster {stored}, but config asks for cluster {configured}")]
    ClusterIdConflict { stored: u64, configured: u64 },

    /// The metadata writer thread is gone (the server is shutting down).
    #[error("metadata writer stopped")]
    WriterStopped,

    /// A replicated metadata write failed when the member group applied it (its
    /// apply outcome, as every member saw it).
    #[error("metadata write failed: {0}")]
    WriteFailed(String),

    /// A replicated metadata write was not committed in time (no quorum of members?).
    #[error("not committed within {waited:?} (no quorum of placement members?)")]
    CommitTimeout { waited: std::time::Duration },

    /// A lone member did not elect itself and take over in time.
    #[error("placement did not take over within {waited:?}")]
    TakeOverTimeout { waited: std::time::Duration },

    /// A raft record could not be encoded for the disk.
    #[error("cannot encode raft record `{key}`: {source}")]
    Encode {
        key: String,
        source: protobuf::ProtobufError,
    },

    /// The member group's raft log in memory refused a change made on disk.
    #[error("raft {what}: {source}")]
    RaftLog {
        what: &'static str,
        source: raft::Error,
    },

    /// Socket or file system error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),

    /// A request needs a bootstrapped cluster.
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,

    /// Bootstrap was asked for twice.
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,

    /// No store with this id is known.
    #[error("invalid store ID {0}, not found")]
    StoreNotFound(u64),

    /// The store was removed from the cluster and may not come back.
    #[error("store {0} is tombstone")]
    StoreTombstone(u64),

    /// No region with this id is known.
    #[error("region {0} not found")]
    RegionNotFound(u64),

    /// A region report is older than what placement already knows.
    #[error("region {region_id} is stale: reported epoch {reported}, known epoch {known}")]
    StaleRegion {
        region_id: u64,
        reported: String,
        known: String,
    },

    /// BatchScanRegions asked for full coverage and the known regions leave a hole.
    #[error("regions not contain all key range: no region holds key {0}")]
    RegionsNotContainAllKeyRange(String),

    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// No keyspace with this name is known.
    #[error("keyspace `{0}` not found")]
    KeyspaceNotFound(String),

    /// A keyspace with this name exists already.
    #[error("keyspace `{0}` already exists")]
    KeyspaceExists(String),

    /// Every 24-bit keyspace id is in use.
    #[error("no keyspace id left (ids are 24 bits)")]
    KeyspaceIdsExhausted,

    /// This member is not the placement leader (or has not finished taking over).
    #[error("not leader; the placement leader is {leader}")]
    NotLeader { leader: String },

    /// This member may not hand out timestamps: it no longer serves as leader of the term a
    /// request was taken in, or its leader lease lapsed, or it is handing leadership over.
    #[error("no leader lease for timestamps: {0}")]
    NoTsoLease(String),

    /// The member group's raft state machine refused a step.
    #[error("placement raft: {0}")]
    Raft(#[from] raft::Error),

    /// A member-group change was refused (unknown member, last voter, ...).
    #[error("member change refused: {0}")]
    Membership(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
