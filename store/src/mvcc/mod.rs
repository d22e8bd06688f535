//! Multi-version storage of transactional data over the engine's three CFs.
//!
//! Key types: [`Lock`] (lock CF), [`Write`] (write CF), the key codec in
//! [`codec`], [`MvccReader`] (point and range reads over one engine snapshot:
//! locks, commit records, values visible at a timestamp), [`Scanner`] (a
//! snapshot-isolation range read) and [`MvccTxn`] in [`write_set`] (collects
//! the `Modify`s one command produces). This layer sits on `engine` and under
//! `percolator`, which implements the Percolator actions with it. It shares
//! `percolator`'s error enum ([`crate::percolator::TxnError`]): both form one
//! layer.

pub mod codec;
pub mod lock;
pub mod reader;
pub mod scanner;
pub mod write;
pub mod write_set;

pub use lock::{Lock, LockType};
pub use reader::{MvccReader, TxnCommitRecord};
pub use scanner::Scanner;
pub use write::{Write, WriteType, SHORT_VALUE_MAX_LEN};
pub use write_set::MvccTxn;

/// Bits of a TSO timestamp that hold the logical counter.
pub const TSO_LOGICAL_BITS: u32 = 18;

/// Physical milliseconds of a TSO timestamp.
pub fn physical(ts: u64) -> u64 {
    ts >> TSO_LOGICAL_BITS
}

/// A lock or write record that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordError;

impl From<codec::CodecError> for RecordError {
    fn from(_: codec::CodecError) -> Self {
        RecordError
    }
}

fn take_bytes<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], RecordError> {
    if b.len() < n {
        return Err(RecordError);
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn take_u64(b: &mut &[u8]) -> Result<u64, RecordError> {
    let bytes = take_bytes(b, 8)?;
    let arr: [u8; 8] = bytes.try_into().map_err(|_| RecordError)?;
    Ok(u64::from_be_bytes(arr))
}
