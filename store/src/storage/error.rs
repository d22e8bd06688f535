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
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Txn(#[from] crate::txn::TxnError),
    #[error("store is shutting down")]
    Unavailable,
    #[error("internal: {0}")]
    Internal(String),
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
            ProposeError::Stale { .. } | ProposeError::Rejected { .. } => errorpb::Error {
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
        };
        Error::region(errorpb::Error { message, ..err })
    }
}
