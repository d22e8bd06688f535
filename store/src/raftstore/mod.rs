//! Multi-Raft: every region replica on this store is a raft-rs group, all of
//! them driven by one batching loop.
//!
//! Key types: [`Router`] (the handle upper layers propose through),
//! [`StoreMeta`] (the regions this store holds and who leads them, read by
//! `storage` to validate requests), [`RaftStore`] (the loop: ticks, proposals,
//! readies of all regions persisted with one synced write, then applied in one
//! batch). Below it: `peer` (one replica), `peer_storage` (its durable log),
//! `cmd` (what log entries carry), `local_keys` (keys of local metadata), `membership`
//! (joint-consensus membership changes).

mod apply;
pub mod cmd;
mod driver;
mod incoming;
pub mod lease;
pub mod local_keys;
mod logger;
pub mod membership;
pub mod peer;
pub mod peer_storage;
pub mod read_context;
pub mod read_progress;
mod ready;
pub mod snap;
pub mod snapshot;
pub mod split;
pub mod split_check;
pub mod transport;

#[cfg(test)]
mod joint_tests;
#[cfg(test)]
mod replica_read_tests;
#[cfg(test)]
pub mod test_cluster;
#[cfg(test)]
pub mod test_filters;
#[cfg(test)]
mod tests;

pub use driver::{
    abort_on_fatal, ControlMsg, FatalHandler, RaftStore, RaftStoreConfig, RaftStoreParts,
    RegionMeta, Router, StoreMeta, StoreMsg,
};

use proto::metapb;

/// Why a proposal did not apply; each maps to a kvproto region error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("region {region_id}: not leader")]
    NotLeader {
        region_id: u64,
        leader: Option<metapb::Peer>,
    },
    #[error("region {0} not found on this store")]
    RegionNotFound(u64),
    #[error("region {}: epoch changed since the request was checked", .region.id)]
    EpochNotMatch { region: Box<metapb::Region> },
    #[error("region {}: write outside the region's range", .region.id)]
    KeyNotInRegion {
        region: Box<metapb::Region>,
        key: Vec<u8>,
    },
    #[error("region {region_id}: stale command")]
    Stale { region_id: u64 },
    #[error("region {region_id}: read index not ready")]
    ReadIndexNotReady { region_id: u64 },
    /// A replica read the leader answered with an in-memory lock the read must see.
    #[error("key is locked by an async-commit prewrite at ts {}", .0.lock_version)]
    ReplicaReadLocked(Box<proto::kvrpcpb::LockInfo>),
    #[error("region {region_id}: {reason}")]
    Rejected { region_id: u64, reason: String },
    #[error("region {region_id}: split rejected: {reason}")]
    SplitRejected {
        region_id: u64,
        reason: split::SplitRejected,
    },
    #[error("store is too busy: raftstore inbox full")]
    Busy,
    #[error("raftstore is shutting down")]
    Shutdown,
}
