//! Errors of the mvcc + txn layer, and the internal split between them and
//! Percolator outcomes.
//!
//! [`TxnError`] is for internal failures only (engine I/O, a corrupt record):
//! the lead maps it to a gRPC error. Percolator outcomes (locked, write
//! conflict, already exists, txn not found ...) are not errors of this layer:
//! they travel as `kvrpcpb::KeyError` inside the response, filled as TiKV fills
//! them (see `key_error`). Inside actions, [`ActionError`] carries either.

use proto::kvrpcpb::KeyError;

use crate::engine::{CfName, EngineError};
use crate::mvcc::codec::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("corrupt {cf} record at engine key {key:?}")]
    Corrupt { cf: CfName, key: Vec<u8> },
    #[error("the response would carry more than {limit} bytes of keys and values: lower the limit or narrow the request")]
    ResponseTooLarge { limit: usize },
    #[error("bad engine key {key:?}: {source}")]
    BadKey {
        key: Vec<u8>,
        #[source]
        source: CodecError,
    },
}

pub type Result<T, E = TxnError> = std::result::Result<T, E>;

/// Why an action stopped: a Percolator outcome for the client, or an internal
/// failure. Either way the command writes nothing.
#[derive(Debug)]
pub(crate) enum ActionError {
    Key(Box<KeyError>),
    Internal(TxnError),
}

impl From<TxnError> for ActionError {
    fn from(e: TxnError) -> Self {
        ActionError::Internal(e)
    }
}

impl From<KeyError> for ActionError {
    fn from(e: KeyError) -> Self {
        ActionError::Key(Box::new(e))
    }
}

pub(crate) type ActionResult<T> = std::result::Result<T, ActionError>;

/// Splits an action result into "internal error" (outer) and "key error for
/// the response" (inner).
pub(crate) fn split<T>(r: ActionResult<T>) -> Result<std::result::Result<T, KeyError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(ActionError::Key(e)) => Ok(Err(*e)),
        Err(ActionError::Internal(e)) => Err(e),
    }
}
