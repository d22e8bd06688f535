//! The context a ReadIndex request carries through raft.
//!
//! raft-rs carries a read index request's context opaquely from the replica that asks to the
//! leader and back, and the leader keys its pending requests by it: so the context names the
//! asking replica and a read id of that replica's own, unique in the group. A replica read (a
//! follower or learner serving a read, the client's `replica_read`) adds what the leader checks
//! before it answers, as TiKV's leader does for a follower read: it raises its `max_ts` to the
//! transaction's start ts, so an async-commit or 1PC transaction prewritten later commits above
//! the read, and it looks in the key ranges for in-memory locks of async-commit prewrites not
//! yet applied; one that the read must see is answered at once, with the lock, instead of an
//! index.
//!
//! A follower also asks its leader this way for the leader's resolved ts (`read_progress`):
//! the leader answers at once with it, and the index it goes with.
//!
//! Encoding: peer id and read id (8 bytes each, big endian), a tag byte, then for a check a
//! `kvrpcpb.ReadIndexRequest` (start ts and ranges), for a lock a `kvrpcpb.LockInfo`, for a
//! resolved ts the ts (8 bytes).

use prost::Message as _;
use proto::kvrpcpb;

/// One read index request's context.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadContext {
    /// The replica that asked.
    pub peer_id: u64,
    /// Its id for the read, increasing.
    pub id: u64,
    pub body: ReadBody,
}

/// What a read index request asks of the leader, or what the leader answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadBody {
    /// The leader's own reads: nothing to check.
    Plain,
    /// A replica read: the start ts (0 for a raw read: no check) and key ranges to check.
    Check(kvrpcpb::ReadIndexRequest),
    /// The leader's answer to a check that met an in-memory lock.
    Locked(kvrpcpb::LockInfo),
    /// A follower asks for the leader's last resolved ts (`read_progress`).
    SafeTsRequest,
    /// The leader's answer: its resolved ts (the response's index is the one it goes with).
    SafeTs(u64),
}

const PLAIN: u8 = 0;
const CHECK: u8 = 1;
const LOCKED: u8 = 2;
const SAFE_TS_REQUEST: u8 = 3;
const SAFE_TS: u8 = 4;

impl ReadContext {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        out.extend_from_slice(&self.peer_id.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        match &self.body {
            ReadBody::Plain => out.push(PLAIN),
            ReadBody::Check(req) => {
                out.push(CHECK);
                out.extend_from_slice(&req.encode_to_vec());
            }
            ReadBody::Locked(lock) => {
                out.push(LOCKED);
                out.extend_from_slice(&lock.encode_to_vec());
            }
            ReadBody::SafeTsRequest => out.push(SAFE_TS_REQUEST),
            ReadBody::SafeTs(ts) => {
                out.push(SAFE_TS);
                out.extend_from_slice(&ts.to_be_bytes());
            }
        }
        out
    }

    /// `None` for bytes this module did not write.
    pub fn decode(bytes: &[u8]) -> Option<ReadContext> {
        let u64_at = |i: usize| Some(u64::from_be_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
        let (peer_id, id) = (u64_at(0)?, u64_at(8)?);
        let rest = bytes.get(17..)?;
        let body = match *bytes.get(16)? {
            PLAIN if rest.is_empty() => ReadBody::Plain,
            CHECK => ReadBody::Check(kvrpcpb::ReadIndexRequest::decode(rest).ok()?),
            LOCKED => ReadBody::Locked(kvrpcpb::LockInfo::decode(rest).ok()?),
            SAFE_TS_REQUEST if rest.is_empty() => ReadBody::SafeTsRequest,
            SAFE_TS => ReadBody::SafeTs(u64::from_be_bytes(rest.try_into().ok()?)),
            _ => return None,
        };
        Some(ReadContext { peer_id, id, body })
    }

    /// The leader's answer to this request when its check met `lock`.
    pub fn locked(&self, lock: kvrpcpb::LockInfo) -> ReadContext {
        ReadContext {
            body: ReadBody::Locked(lock),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_round_trips_and_foreign_bytes_are_refused() {
        let check = kvrpcpb::ReadIndexRequest {
            start_ts: 42,
            ranges: vec![kvrpcpb::KeyRange {
                start_key: b"a".to_vec(),
                end_key: b"b".to_vec(),
            }],
            ..Default::default()
        };
        let lock = kvrpcpb::LockInfo {
            key: b"a".to_vec(),
            lock_version: 40,
            ..Default::default()
        };
        let plain = ReadContext {
            peer_id: 7,
            id: 3,
            body: ReadBody::Plain,
        };
        let checked = ReadContext {
            body: ReadBody::Check(check),
            ..plain.clone()
        };
        let ask = ReadContext {
            body: ReadBody::SafeTsRequest,
            ..plain.clone()
        };
        let answer = ReadContext {
            body: ReadBody::SafeTs(99),
            ..plain.clone()
        };
        for ctx in [
            plain.clone(),
            checked.clone(),
            checked.locked(lock),
            ask,
            answer,
        ] {
            assert_eq!(ReadContext::decode(&ctx.encode()), Some(ctx));
        }
        // Two replicas' reads with the same id differ: the leader keys requests by context.
        let other = ReadContext {
            peer_id: 8,
            ..plain.clone()
        };
        assert_ne!(other.encode(), plain.encode());
        assert_eq!(ReadContext::decode(&3u64.to_be_bytes()), None);
        let mut bad_tag = plain.encode();
        bad_tag[16] = 9;
        assert_eq!(ReadContext::decode(&bad_tag), None);
        let mut trailing = plain.encode();
        trailing.push(1);
        assert_eq!(ReadContext::decode(&trailing), None);
    }
}
