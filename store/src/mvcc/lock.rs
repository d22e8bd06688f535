//! The Percolator lock record stored in the lock CF.
//!
//! [`Lock`] carries what TiKV's lock does (type, primary, start ts, TTL, inlined
//! short value, for_update_ts, txn_size, min_commit_ts, async-commit flag and
//! secondaries, rollback timestamps). [`Lock::check_ts_conflict`] is the read
//! visibility rule: which locks block a snapshot read.
//!
//! Byte layout (our own, compact): `type` byte (`P`/`D`/`L`/`S`), varint
//! length + primary, varint ts, varint ttl, then optional tagged fields:
//! `v` u8 len + short value, `f` u64 for_update_ts, `t` u64 txn_size, `c` u64
//! min_commit_ts, `a` async commit: varint count + (varint len + key)*, `r`
//! varint count + u64 rollback ts*. Integers after a tag are big-endian u64.

use proto::kvrpcpb::{self, Op};

use super::codec::{get_varint, put_varint};
use super::{take_bytes, take_u64, RecordError};

/// What a prewrite (or pessimistic lock) intends for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    Put,
    Delete,
    Lock,
    Pessimistic,
}

impl LockType {
    fn to_byte(self) -> u8 {
        match self {
            LockType::Put => b'P',
            LockType::Delete => b'D',
            LockType::Lock => b'L',
            LockType::Pessimistic => b'S',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'P' => LockType::Put,
            b'D' => LockType::Delete,
            b'L' => LockType::Lock,
            b'S' => LockType::Pessimistic,
            _ => return None,
        })
    }

    /// The kvproto `Op` clients see in `LockInfo.lock_type`.
    pub fn to_op(self) -> Op {
        match self {
            LockType::Put => Op::Put,
            LockType::Delete => Op::Del,
            LockType::Lock => Op::Lock,
            LockType::Pessimistic => Op::PessimisticLock,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub lock_type: LockType,
    pub primary: Vec<u8>,
    /// start_ts of the owning transaction.
    pub ts: u64,
    /// Milliseconds, counted from the physical part of `ts`.
    pub ttl: u64,
    pub short_value: Option<Vec<u8>>,
    /// Non-zero exactly for pessimistic transactions.
    pub for_update_ts: u64,
    pub txn_size: u64,
    pub min_commit_ts: u64,
    pub use_async_commit: bool,
    /// Only the primary lock of an async-commit txn lists them.
    pub secondaries: Vec<Vec<u8>>,
    /// Start timestamps of other txns rolled back on this key while this lock
    /// was present; a commit at one of them marks the write overlapped.
    pub rollback_ts: Vec<u64>,
}

impl Lock {
    pub fn new(lock_type: LockType, primary: Vec<u8>, ts: u64, ttl: u64) -> Lock {
        Lock {
            lock_type,
            primary,
            ts,
            ttl,
            short_value: None,
            for_update_ts: 0,
            txn_size: 0,
            min_commit_ts: 0,
            use_async_commit: false,
            secondaries: Vec::new(),
            rollback_ts: Vec::new(),
        }
    }

    pub fn is_pessimistic_txn(&self) -> bool {
        self.for_update_ts != 0
    }

    pub fn is_pessimistic_lock(&self) -> bool {
        self.lock_type == LockType::Pessimistic
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.primary.len());
        b.push(self.lock_type.to_byte());
        put_varint(&mut b, self.primary.len() as u64);
        b.extend_from_slice(&self.primary);
        put_varint(&mut b, self.ts);
        put_varint(&mut b, self.ttl);
        if let Some(v) = &self.short_value {
            b.push(b'v');
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        for (tag, v) in [
            (b'f', self.for_update_ts),
            (b't', self.txn_size),
            (b'c', self.min_commit_ts),
        ] {
            if v != 0 {
                b.push(tag);
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        if self.use_async_commit {
            b.push(b'a');
            put_varint(&mut b, self.secondaries.len() as u64);
            for s in &self.secondaries {
                put_varint(&mut b, s.len() as u64);
                b.extend_from_slice(s);
            }
        }
        if !self.rollback_ts.is_empty() {
            b.push(b'r');
            put_varint(&mut b, self.rollback_ts.len() as u64);
            for ts in &self.rollback_ts {
                b.extend_from_slice(&ts.to_be_bytes());
            }
        }
        b
    }

    pub fn parse(mut b: &[u8]) -> Result<Lock, RecordError> {
        let (&ty, rest) = b.split_first().ok_or(RecordError)?;
        b = rest;
        let lock_type = LockType::from_byte(ty).ok_or(RecordError)?;
        let primary_len = get_varint(&mut b)? as usize;
        let primary = take_bytes(&mut b, primary_len)?.to_vec();
        let ts = get_varint(&mut b)?;
        let ttl = get_varint(&mut b)?;
        let mut lock = Lock::new(lock_type, primary, ts, ttl);
        while let Some((&tag, rest)) = b.split_first() {
            b = rest;
            lock.parse_field(tag, &mut b)?;
        }
        Ok(lock)
    }

    fn parse_field(&mut self, tag: u8, b: &mut &[u8]) -> Result<(), RecordError> {
        match tag {
            b'v' => {
                let (&len, rest) = b.split_first().ok_or(RecordError)?;
                *b = rest;
                self.short_value = Some(take_bytes(b, len as usize)?.to_vec());
            }
            b'f' => self.for_update_ts = take_u64(b)?,
            b't' => self.txn_size = take_u64(b)?,
            b'c' => self.min_commit_ts = take_u64(b)?,
            b'a' => {
                self.use_async_commit = true;
                let n = get_varint(b)?;
                for _ in 0..n {
                    let len = get_varint(b)? as usize;
                    self.secondaries.push(take_bytes(b, len)?.to_vec());
                }
            }
            b'r' => {
                let n = get_varint(b)?;
                for _ in 0..n {
                    self.rollback_ts.push(take_u64(b)?);
                }
            }
            _ => return Err(RecordError),
        }
        Ok(())
    }

    /// The `LockInfo` a client receives for this lock on `key`.
    pub fn to_lock_info(&self, key: &[u8]) -> kvrpcpb::LockInfo {
        kvrpcpb::LockInfo {
            primary_lock: self.primary.clone(),
            lock_version: self.ts,
            key: key.to_vec(),
            lock_ttl: self.ttl,
            txn_size: self.txn_size,
            lock_type: self.lock_type.to_op() as i32,
            lock_for_update_ts: self.for_update_ts,
            use_async_commit: self.use_async_commit,
            min_commit_ts: self.min_commit_ts,
            secondaries: self.secondaries.clone(),
            ..Default::default()
        }
    }

    /// Whether this lock blocks a snapshot-isolation read of `key` at `ts`.
    ///
    /// It does when its txn started at or before `ts`, may write data (not a
    /// `Lock` or pessimistic lock), may still commit at or before `ts`
    /// (`min_commit_ts <= ts`) and the reader did not say to bypass it
    /// (`resolved_locks`). A `u64::MAX` read of a primary key ignores its
    /// non-async-commit lock, as TiKV does.
    pub fn check_ts_conflict(
        &self,
        key: &[u8],
        ts: u64,
        bypass: &[u64],
    ) -> Result<(), Box<kvrpcpb::LockInfo>> {
        if self.ts > ts
            || matches!(self.lock_type, LockType::Lock | LockType::Pessimistic)
            || self.min_commit_ts > ts
            || bypass.contains(&self.ts)
        {
            return Ok(());
        }
        if ts == u64::MAX && key == self.primary.as_slice() && !self.use_async_commit {
            return Ok(());
        }
        Err(Box::new(self.to_lock_info(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_lock() -> Lock {
        Lock {
            lock_type: LockType::Put,
            primary: b"pk".to_vec(),
            ts: 100,
            ttl: 3000,
            short_value: Some(b"value".to_vec()),
            for_update_ts: 110,
            txn_size: u64::MAX,
            min_commit_ts: 120,
            use_async_commit: true,
            secondaries: vec![b"s1".to_vec(), vec![], b"s3".to_vec()],
            rollback_ts: vec![105, 107],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut locks = vec![full_lock(), Lock::new(LockType::Delete, vec![], 1, 0)];
        for ty in [LockType::Lock, LockType::Pessimistic] {
            let mut l = Lock::new(ty, b"p".to_vec(), u64::MAX, 20000);
            l.short_value = Some(vec![]);
            l.use_async_commit = true;
            locks.push(l);
        }
        for lock in locks {
            assert_eq!(Lock::parse(&lock.to_bytes()).unwrap(), lock);
        }
    }

    #[test]
    fn parse_rejects_corruption() {
        let bytes = full_lock().to_bytes();
        for cut in 1..bytes.len() {
            // Every strict prefix either fails or is a shorter valid record.
            if let Ok(l) = Lock::parse(&bytes[..cut]) {
                assert_ne!(l, full_lock());
            }
        }
        assert!(Lock::parse(b"").is_err());
        assert!(Lock::parse(b"X\x00\x01\x01").is_err());
        assert!(Lock::parse(b"P\x00\x01\x01z").is_err());
    }

    #[test]
    fn lock_info_fields() {
        let info = full_lock().to_lock_info(b"k");
        assert_eq!(info.key, b"k");
        assert_eq!(info.primary_lock, b"pk");
        assert_eq!(info.lock_version, 100);
        assert_eq!(info.lock_ttl, 3000);
        assert_eq!(info.lock_type, Op::Put as i32);
        assert_eq!(info.lock_for_update_ts, 110);
        assert!(info.use_async_commit);
        assert_eq!(info.min_commit_ts, 120);
        assert_eq!(info.secondaries.len(), 3);
    }

    #[test]
    fn ts_conflict_rules() {
        let mut l = Lock::new(LockType::Put, b"pk".to_vec(), 10, 100);
        assert!(l.check_ts_conflict(b"k", 9, &[]).is_ok(), "lock is newer");
        assert!(l.check_ts_conflict(b"k", 10, &[]).is_err());
        assert!(l.check_ts_conflict(b"k", 20, &[10]).is_ok(), "bypassed");
        assert!(l.check_ts_conflict(b"pk", u64::MAX, &[]).is_ok());
        assert!(l.check_ts_conflict(b"k", u64::MAX, &[]).is_err());
        l.min_commit_ts = 21;
        assert!(l.check_ts_conflict(b"k", 20, &[]).is_ok(), "min_commit_ts");
        assert!(l.check_ts_conflict(b"k", 21, &[]).is_err());
        for ty in [LockType::Lock, LockType::Pessimistic] {
            l.lock_type = ty;
            assert!(l.check_ts_conflict(b"k", 30, &[]).is_ok());
        }
        l.lock_type = LockType::Delete;
        l.use_async_commit = true;
        assert!(l.check_ts_conflict(b"pk", u64::MAX, &[]).is_err());
    }
}
