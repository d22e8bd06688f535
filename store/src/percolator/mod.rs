//! Percolator transactions over `mvcc`: one function per transactional RPC.
//!
//! Reads (`kv_get`, `kv_batch_get`, `kv_scan`, `kv_scan_lock`) take one engine
//! snapshot and return the response. Writes (`prewrite`, `commit`, `cleanup`,
//! `batch_rollback`, `check_txn_status`, `check_secondary_locks`,
//! `resolve_lock`, `pessimistic_lock`, `pessimistic_rollback`,
//! `txn_heartbeat`) read one snapshot and return a [`WriteOutcome`]: the
//! engine modifies to replicate and apply atomically, the response, and the
//! [`KeyHandleGuard`]s of in-memory locks to drop after applying. The caller
//! holds per-key latches around each write, so actions assume no concurrent
//! writer of their keys. Percolator outcomes (locked, conflict, ...) are
//! `KeyError`s in the response, never [`TxnError`]; a response carrying a key
//! error comes with no modifies. [`ConcurrencyManager`] holds `max_ts` and the
//! in-memory lock table that async commit and 1PC rely on.

mod check_secondary_locks;
mod check_txn_status;
mod commit;
pub mod concurrency_manager;
pub mod error;
mod gc;
pub mod key_error;
mod pessimistic;
mod prewrite;
mod prewrite_mutation;
mod read;
mod resolve_lock;
mod rollback;

#[cfg(test)]
mod prewrite_tests;
#[cfg(test)]
mod resolution_tests;
#[cfg(test)]
pub(crate) mod test_util;

pub use check_secondary_locks::check_secondary_locks;
pub use check_txn_status::check_txn_status;
pub use commit::commit;
pub use concurrency_manager::{ConcurrencyManager, KeyHandleGuard};
pub use error::{Result, TxnError};
pub use gc::{delete_range, gc_keys, scan_write_keys, GcBatch};
pub use pessimistic::{pessimistic_lock, pessimistic_rollback, txn_heartbeat};
pub use prewrite::prewrite;
pub use read::{kv_batch_get, kv_get, kv_scan, kv_scan_lock, read_check_keys, read_check_range};
pub use resolve_lock::{resolve_lock, resolve_locks_of, scan_resolvable_keys, txn_statuses};
pub use rollback::{batch_rollback, cleanup};

use crate::engine::Modify;
use crate::mvcc::MvccTxn;

/// Most bytes of keys and values one read response gathers; a read that
/// would return more fails with [`TxnError::ResponseTooLarge`] instead of
/// holding it all in memory (gRPC refuses messages over 64 MiB anyway).
pub const MAX_READ_RESPONSE_BYTES: usize = 32 << 20;

/// The bytes a read response has gathered so far.
#[derive(Debug, Default)]
pub struct ResponseBudget(usize);

impl ResponseBudget {
    /// Counts `bytes` more; fails once the total passes the limit.
    pub fn charge(&mut self, bytes: usize) -> Result<()> {
        self.0 += bytes;
        if self.0 > MAX_READ_RESPONSE_BYTES {
            return Err(TxnError::ResponseTooLarge {
                limit: MAX_READ_RESPONSE_BYTES,
            });
        }
        Ok(())
    }
}

/// What a write action produced.
#[derive(Debug)]
pub struct WriteOutcome<R> {
    /// Apply all or none, atomically.
    pub modifies: Vec<Modify>,
    pub response: R,
    /// Drop only after `modifies` are applied to the engine.
    pub guards: Vec<KeyHandleGuard>,
}

impl<R> WriteOutcome<R> {
    /// A response with nothing to write.
    pub fn response_only(response: R) -> Self {
        WriteOutcome {
            modifies: Vec::new(),
            response,
            guards: Vec::new(),
        }
    }

    pub(crate) fn new(txn: MvccTxn, response: R) -> Self {
        WriteOutcome {
            modifies: txn.into_modifies(),
            response,
            guards: Vec::new(),
        }
    }
}
