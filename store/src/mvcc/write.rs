//! The commit record stored in the write CF at `key + !commit_ts`.
//!
//! [`Write`] says what a committed (or rolled back) txn did to a key: `Put`
//! (value inlined when at most [`SHORT_VALUE_MAX_LEN`] bytes, else in the
//! default CF at `key + !start_ts`), `Delete`, `Lock` (no data change) or
//! `Rollback` (written at `commit_ts = start_ts` so a late prewrite fails).
//! A protected rollback is never collapsed; `has_overlapped_rollback` marks a
//! commit record that also stands for a rollback of another txn whose start_ts
//! equals this commit_ts, as in TiKV. gc_fence is not modelled.
//!
//! Byte layout (our own): `type` byte (`P`/`D`/`L`/`R`), varint start_ts, then
//! optional tagged fields: `v` u8 len + short value, `O` overlapped rollback,
//! `p` protected rollback.

use super::codec::{get_varint, put_varint};
use super::{take_bytes, RecordError};

/// Values up to this many bytes live inside the lock / write record.
pub const SHORT_VALUE_MAX_LEN: usize = 255;

pub fn is_short_value(value: &[u8]) -> bool {
    value.len() <= SHORT_VALUE_MAX_LEN
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteType {
    Put,
    Delete,
    Lock,
    Rollback,
}

impl WriteType {
    fn to_byte(self) -> u8 {
        match self {
            WriteType::Put => b'P',
            WriteType::Delete => b'D',
            WriteType::Lock => b'L',
            WriteType::Rollback => b'R',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'P' => WriteType::Put,
            b'D' => WriteType::Delete,
            b'L' => WriteType::Lock,
            b'R' => WriteType::Rollback,
            _ => return None,
        })
    }

    /// The commit record type of a prewrite lock (a leftover pessimistic lock
    /// commits as `Lock`, as in TiKV).
    pub fn from_lock_type(ty: super::LockType) -> WriteType {
        match ty {
            super::LockType::Put => WriteType::Put,
            super::LockType::Delete => WriteType::Delete,
            super::LockType::Lock | super::LockType::Pessimistic => WriteType::Lock,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub write_type: WriteType,
    pub start_ts: u64,
    pub short_value: Option<Vec<u8>>,
    pub has_overlapped_rollback: bool,
    /// Only for `Rollback`: must not be collapsed by a later rollback.
    pub protected: bool,
}

impl Write {
    pub fn new(write_type: WriteType, start_ts: u64, short_value: Option<Vec<u8>>) -> Write {
        Write {
            write_type,
            start_ts,
            short_value,
            has_overlapped_rollback: false,
            protected: false,
        }
    }

    pub fn new_rollback(start_ts: u64, protected: bool) -> Write {
        Write {
            protected,
            ..Write::new(WriteType::Rollback, start_ts, None)
        }
    }

    /// Put or Delete: a record that decides the key's value.
    pub fn is_data(&self) -> bool {
        matches!(self.write_type, WriteType::Put | WriteType::Delete)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let value_len = self.short_value.as_ref().map_or(0, Vec::len);
        let mut b = Vec::with_capacity(16 + value_len);
        b.push(self.write_type.to_byte());
        put_varint(&mut b, self.start_ts);
        if let Some(v) = &self.short_value {
            b.push(b'v');
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        if self.has_overlapped_rollback {
            b.push(b'O');
        }
        if self.protected {
            b.push(b'p');
        }
        b
    }

    pub fn parse(mut b: &[u8]) -> Result<Write, RecordError> {
        let (&ty, rest) = b.split_first().ok_or(RecordError)?;
        b = rest;
        let write_type = WriteType::from_byte(ty).ok_or(RecordError)?;
        let start_ts = get_varint(&mut b)?;
        let mut w = Write::new(write_type, start_ts, None);
        while let Some((&tag, rest)) = b.split_first() {
            b = rest;
            match tag {
                b'v' => {
                    let (&len, rest) = b.split_first().ok_or(RecordError)?;
                    b = rest;
                    w.short_value = Some(take_bytes(&mut b, len as usize)?.to_vec());
                }
                b'O' => w.has_overlapped_rollback = true,
                b'p' => w.protected = true,
                _ => return Err(RecordError),
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut overlapped = Write::new(WriteType::Put, 7, Some(vec![1; 255]));
        overlapped.has_overlapped_rollback = true;
        let writes = [
            Write::new(WriteType::Put, 1, Some(b"v".to_vec())),
            Write::new(WriteType::Put, u64::MAX, Some(vec![])),
            Write::new(WriteType::Put, 3, None),
            Write::new(WriteType::Delete, 4, None),
            Write::new(WriteType::Lock, 5, None),
            Write::new_rollback(6, false),
            Write::new_rollback(6, true),
            overlapped,
        ];
        for w in writes {
            assert_eq!(Write::parse(&w.to_bytes()).unwrap(), w);
        }
    }

    #[test]
    fn parse_rejects_corruption() {
        assert!(Write::parse(b"").is_err());
        assert!(Write::parse(b"Q\x01").is_err());
        assert!(Write::parse(b"P").is_err());
        assert!(Write::parse(b"P\x01v\x05ab").is_err());
        assert!(Write::parse(b"P\x01x").is_err());
    }

    #[test]
    fn short_value_limit() {
        assert!(is_short_value(&[0; 255]));
        assert!(!is_short_value(&[0; 256]));
        assert_eq!(
            WriteType::from_lock_type(super::super::LockType::Pessimistic),
            WriteType::Lock
        );
    }
}
