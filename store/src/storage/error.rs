//! Errors of the storage layer and how each reaches the client.

use proto::errorpb;

use crate::engine::EngineError;
use crate::raftstore::ProposeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Sent back in the response's `region_error`; the client retries.
    #[error("region error: {}", .0.message)]
    Region(Box<errorpb::Error>),
    /// Bad input: the response's `error` field (raw) or `KeyError.abort`.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Txn(#[from] crate::percolator::TxnError),
    /// A replica read met a lock on the leader: the response's `KeyError.locked` (the client
    /// resolves it and reads again).
    #[error("key is locked at ts {}", .0.lock_version)]
    Locked(Box<proto::kvrpcpb::LockInfo>),
    #[error("store is shutting down")]
    Unavailable,
    /// A blocking task the request ran on the blocking pool panicked or was cancelled.
    #[error("internal: blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What is wrong with a request the client must not send again as it is.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    #[error("{what}end key is before its start key")]
    ReversedRange { what: &'static str },
    #[error("api version mismatch: this store serves API {store} only, the request is {request}")]
    ApiVersion {
        store: &'static str,
        request: &'static str,
    },
    #[error("key is too large: {len} bytes, limit {limit} bytes")]
    KeyTooLarge { len: usize, limit: usize },
    #[error("key must not be empty")]
    EmptyKey,
    #[error("API V2 {mode} key must start with '{prefix}' and a 3-byte keyspace id")]
    KeyspacePrefix { mode: &'static str, prefix: char },
    #[error("scan limit {limit} is over the maximum of {max}")]
    ScanLimit { limit: usize, max: usize },
    #[error("batch scan of {ranges} ranges is over the maximum of {max}")]
    TooManyRanges { ranges: usize, max: usize },
    #[error("ttls has {ttls} entries for {pairs} pairs")]
    TtlCount { ttls: usize, pairs: usize },
    #[error(
        "column family {0:?} is deprecated in API V2: raw data lives in the default column family"
    )]
    DeprecatedCf(String),
    #[error(transparent)]
    UnknownCf(EngineError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn region(err: errorpb::Error) -> Self {
        Error::Region(Box::new(err))
    }
}

impl From<ProposeError> for Error {
    fn from(e: ProposeError) -> Self {
        let message = e.to_string();
        let err = match e {
            ProposeError::NotLeader { region_id, leader } => errorpb::Error {
                not_leader: Some(errorpb::NotLeader { region_id, leader }),
                ..Default::default()
            },
            ProposeError::RegionNotFound(region_id) => errorpb::Error {
                region_not_found: Some(errorpb::RegionNotFound { region_id }),
                ..Default::default()
            },
            ProposeError::EpochNotMatch { region } => errorpb::Error {
                epoch_not_match: Some(errorpb::EpochNotMatch {
                    current_regions: vec![*region],
                }),
                ..Default::default()
            },
            ProposeError::KeyNotInRegion { region, key } => errorpb::Error {
                key_not_in_region: Some(errorpb::KeyNotInRegion {
                    key,
                    region_id: region.id,
                    start_key: region.start_key,
                    end_key: region.end_key,
                }),
                ..Default::default()
            },
            ProposeError::Stale { .. }
            | ProposeError::Rejected { .. }
            | ProposeError::SplitRejected { .. } => errorpb::Error {
                stale_command: Some(errorpb::StaleCommand {}),
                ..Default::default()
            },
            ProposeError::ReadIndexNotReady { region_id } => errorpb::Error {
                read_index_not_ready: Some(errorpb::ReadIndexNotReady {
                    reason: "leader has not committed in its term yet".into(),
                    region_id,
                }),
                ..Default::default()
            },
            ProposeError::Busy => errorpb::Error {
                server_is_busy: Some(errorpb::ServerIsBusy {
                    reason: "raftstore inbox full".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ProposeError::Shutdown => return Error::Unavailable,
            ProposeError::ReplicaReadLocked(lock) => return Error::Locked(lock),
        };
        Error::region(errorpb::Error { message, ..err })
    }
}
