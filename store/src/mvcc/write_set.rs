//! [`MvccTxn`]: the engine writes one command produces, in user-key terms.
//!
//! Actions call `put_lock`, `put_write`, `put_value` ... and the command hands
//! `into_modifies()` to the caller, which replicates and applies them as one
//! atomic batch. Nothing is written when a command fails: it simply drops
//! the `MvccTxn`.

use super::codec::{lock_key, versioned_key};
use super::{Lock, Write};
use crate::engine::{Modify, CF_DEFAULT, CF_LOCK, CF_WRITE};

#[derive(Debug, Default)]
pub struct MvccTxn {
    modifies: Vec<Modify>,
}

impl MvccTxn {
    pub fn new() -> Self {
        MvccTxn::default()
    }

    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        self.modifies.push(Modify::Put {
            cf: CF_LOCK,
            key: lock_key(key),
            value: lock.to_bytes(),
        });
    }

    pub fn unlock_key(&mut self, key: &[u8]) {
        self.modifies.push(Modify::Delete {
            cf: CF_LOCK,
            key: lock_key(key),
        });
    }

    /// A long value prewritten by txn `start_ts`.
    pub fn put_value(&mut self, key: &[u8], start_ts: u64, value: Vec<u8>) {
        self.modifies.push(Modify::Put {
            cf: CF_DEFAULT,
            key: versioned_key(key, start_ts),
            value,
        });
    }

    pub fn delete_value(&mut self, key: &[u8], start_ts: u64) {
        self.modifies.push(Modify::Delete {
            cf: CF_DEFAULT,
            key: versioned_key(key, start_ts),
        });
    }

    pub fn put_write(&mut self, key: &[u8], commit_ts: u64, write: &Write) {
        self.modifies.push(Modify::Put {
            cf: CF_WRITE,
            key: versioned_key(key, commit_ts),
            value: write.to_bytes(),
        });
    }

    pub fn delete_write(&mut self, key: &[u8], commit_ts: u64) {
        self.modifies.push(Modify::Delete {
            cf: CF_WRITE,
            key: versioned_key(key, commit_ts),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.modifies.is_empty()
    }

    /// Drops everything collected so far.
    pub fn clear(&mut self) {
        self.modifies.clear();
    }

    pub fn into_modifies(self) -> Vec<Modify> {
        self.modifies
    }
}
