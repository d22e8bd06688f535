//! The commands carried in raft log entries, and their binary encoding.
//!
//! A [`RaftCmd`] is what a leader proposes and every replica applies. Normal
//! writes ([`WriteCmd`]) are a list of engine [`Modify`]s applied atomically,
//! stamped with the region epoch version they were checked against, so the
//! apply can refuse a write whose region split or merged meanwhile; admin
//! commands change the region itself ([`BatchSplit`]). The encoding is ours
//! (a tag byte, then length-prefixed fields) and is only ever read by this code.

use proto::metapb;

use super::ProposeError;
use crate::data_keys::region_data_ranges;
use crate::engine::{CfName, Modify, ALL_CFS, DATA_CFS};

/// A write from before writes carried their epoch (still decoded: it may sit
/// in the log of a store that was upgraded).
const TAG_WRITE_UNVERSIONED: u8 = 1;
const TAG_BATCH_SPLIT: u8 = 2;
const TAG_WRITE: u8 = 3;
const TAG_COMPACT_LOG: u8 = 4;
const OP_PUT: u8 = 0;
const OP_DELETE: u8 = 1;
const OP_DELETE_RANGE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftCmd {
    Write(WriteCmd),
    BatchSplit(BatchSplit),
    /// Truncate the log up to `index` (of `term`): chosen by the leader so
    /// every replica keeps what lagging followers still need, and so a
    /// follower that becomes leader can still catch them up.
    CompactLog {
        index: u64,
        term: u64,
    },
}

/// Data writes of one command, all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteCmd {
    /// Region epoch version the request was checked against (None only for
    /// entries written before versions were recorded).
    pub version: Option<u64>,
    pub modifies: Vec<Modify>,
}

impl WriteCmd {
    /// Whether this write may apply to `region` as it is now: proposed at its
    /// current epoch version, and touching only data column families inside
    /// the engine ranges the region owns (TiKV checks the same at apply).
    pub fn check(&self, region: &metapb::Region) -> Result<(), ProposeError> {
        let current = region.region_epoch.unwrap_or_default().version;
        if self.version.is_some_and(|v| v != current) {
            return Err(ProposeError::EpochNotMatch {
                region: Box::new(region.clone()),
            });
        }
        let ranges = region_data_ranges(region);
        let inside = |start: &[u8], end: Option<&[u8]>| {
            ranges.iter().any(|(s, e)| {
                // An inverted range would fail the whole engine write batch.
                start >= s.as_slice()
                    && end.map_or(start < e.as_slice(), |end| {
                        start <= end && end <= e.as_slice()
                    })
            })
        };
        for m in &self.modifies {
            let (cf, start, end) = match m {
                Modify::Put { cf, key, .. } | Modify::Delete { cf, key } => (cf, key, None),
                Modify::DeleteRange { cf, start, end } => (cf, start, Some(end.as_slice())),
            };
            if !DATA_CFS.contains(cf) || !inside(start, end) {
                return Err(ProposeError::KeyNotInRegion {
                    region: Box::new(region.clone()),
                    key: start.clone(),
                });
            }
        }
        Ok(())
    }
}

impl RaftCmd {
    /// A write of `modifies` checked against region epoch version `version`.
    pub fn write(version: u64, modifies: Vec<Modify>) -> Self {
        RaftCmd::Write(WriteCmd {
            version: Some(version),
            modifies,
        })
    }
}

/// Cuts a region at ascending `splits[i].key`s: the region keeps the leftmost
/// part, each split creates the region to the right of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSplit {
    /// Region epoch `(conf_ver, version)` the split was planned against.
    pub epoch: (u64, u64),
    pub splits: Vec<SplitSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSpec {
    pub key: Vec<u8>,
    pub new_region_id: u64,
    /// One per peer of the parent region, in the parent's peer order.
    pub new_peer_ids: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt raft command: {0}")]
pub struct DecodeError(&'static str);

impl RaftCmd {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RaftCmd::Write(w) => encode_write(w),
            RaftCmd::BatchSplit(split) => encode_split(split),
            RaftCmd::CompactLog { index, term } => {
                let mut out = vec![TAG_COMPACT_LOG];
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&term.to_be_bytes());
                out
            }
        }
    }

    /// Whether encoded command `data` is a data write (not a split or a log truncation),
    /// read from its tag alone.
    pub fn is_data_write(data: &[u8]) -> bool {
        matches!(data.first(), Some(&(TAG_WRITE | TAG_WRITE_UNVERSIONED)))
    }

    pub fn decode(mut data: &[u8]) -> Result<Self, DecodeError> {
        let cmd = match take(&mut data, 1)?[0] {
            TAG_WRITE => {
                let version = take_u64(&mut data)?;
                RaftCmd::Write(WriteCmd {
                    version: Some(version),
                    modifies: decode_modifies(&mut data)?,
                })
            }
            TAG_WRITE_UNVERSIONED => RaftCmd::Write(WriteCmd {
                version: None,
                modifies: decode_modifies(&mut data)?,
            }),
            TAG_BATCH_SPLIT => RaftCmd::BatchSplit(decode_split(&mut data)?),
            TAG_COMPACT_LOG => RaftCmd::CompactLog {
                index: take_u64(&mut data)?,
                term: take_u64(&mut data)?,
            },
            _ => return Err(DecodeError("unknown command tag")),
        };
        if !data.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(cmd)
    }
}

fn encode_split(split: &BatchSplit) -> Vec<u8> {
    let mut out = vec![TAG_BATCH_SPLIT];
    out.extend_from_slice(&split.epoch.0.to_be_bytes());
    out.extend_from_slice(&split.epoch.1.to_be_bytes());
    out.extend_from_slice(&(split.splits.len() as u32).to_be_bytes());
    for s in &split.splits {
        put_bytes(&mut out, &s.key);
        out.extend_from_slice(&s.new_region_id.to_be_bytes());
        out.extend_from_slice(&(s.new_peer_ids.len() as u32).to_be_bytes());
        for id in &s.new_peer_ids {
            out.extend_from_slice(&id.to_be_bytes());
        }
    }
    out
}

fn take_u64(data: &mut &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(
        take(data, 8)?.try_into().unwrap_or_default(),
    ))
}

fn take_u32(data: &mut &[u8]) -> Result<usize, DecodeError> {
    Ok(u32::from_be_bytes(take(data, 4)?.try_into().unwrap_or_default()) as usize)
}

fn decode_split(data: &mut &[u8]) -> Result<BatchSplit, DecodeError> {
    let epoch = (take_u64(data)?, take_u64(data)?);
    let n = take_u32(data)?;
    let mut splits = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let key = take_bytes(data)?;
        let new_region_id = take_u64(data)?;
        let peers = take_u32(data)?;
        let mut new_peer_ids = Vec::with_capacity(peers.min(16));
        for _ in 0..peers {
            new_peer_ids.push(take_u64(data)?);
        }
        splits.push(SplitSpec {
            key,
            new_region_id,
            new_peer_ids,
        });
    }
    Ok(BatchSplit { epoch, splits })
}

fn encode_write(w: &WriteCmd) -> Vec<u8> {
    let modifies = &w.modifies;
    let size: usize = modifies.iter().map(|m| m.size() + 2).sum();
    let mut out = Vec::with_capacity(size + 13);
    match w.version {
        Some(v) => {
            out.push(TAG_WRITE);
            out.extend_from_slice(&v.to_be_bytes());
        }
        None => out.push(TAG_WRITE_UNVERSIONED),
    }
    out.extend_from_slice(&(modifies.len() as u32).to_be_bytes());
    for m in modifies {
        match m {
            Modify::Put { cf, key, value } => {
                put_head(&mut out, OP_PUT, cf);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Modify::Delete { cf, key } => {
                put_head(&mut out, OP_DELETE, cf);
                put_bytes(&mut out, key);
            }
            Modify::DeleteRange { cf, start, end } => {
                put_head(&mut out, OP_DELETE_RANGE, cf);
                put_bytes(&mut out, start);
                put_bytes(&mut out, end);
            }
        }
    }
    out
}

fn decode_modifies(data: &mut &[u8]) -> Result<Vec<Modify>, DecodeError> {
    let n = take_u32(data)?;
    let mut modifies = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let head = take(data, 2)?;
        let cf = *ALL_CFS
            .get(head[1] as usize)
            .ok_or(DecodeError("bad column family"))?;
        let a = take_bytes(data)?;
        modifies.push(match head[0] {
            OP_PUT => Modify::Put {
                cf,
                key: a,
                value: take_bytes(data)?,
            },
            OP_DELETE => Modify::Delete { cf, key: a },
            OP_DELETE_RANGE => Modify::DeleteRange {
                cf,
                start: a,
                end: take_bytes(data)?,
            },
            _ => return Err(DecodeError("bad op")),
        });
    }
    Ok(modifies)
}

fn put_head(out: &mut Vec<u8>, op: u8, cf: &CfName) {
    let idx = ALL_CFS.iter().position(|c| c == cf).unwrap_or(0);
    out.push(op);
    out.push(idx as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if data.len() < n {
        return Err(DecodeError("truncated"));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn take_bytes(data: &mut &[u8]) -> Result<Vec<u8>, DecodeError> {
    let n = u32::from_be_bytes(take(data, 4)?.try_into().unwrap_or_default()) as usize;
    Ok(take(data, n)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CF_DEFAULT, CF_LOCK, CF_WRITE};

    #[test]
    fn round_trip_and_corruption() {
        let cmd = RaftCmd::write(
            9,
            vec![
                Modify::Put {
                    cf: CF_DEFAULT,
                    key: b"k".to_vec(),
                    value: vec![],
                },
                Modify::Delete {
                    cf: CF_LOCK,
                    key: b"".to_vec(),
                },
                Modify::DeleteRange {
                    cf: CF_WRITE,
                    start: b"a".to_vec(),
                    end: b"z".to_vec(),
                },
            ],
        );
        let bytes = cmd.encode();
        assert_eq!(RaftCmd::decode(&bytes).unwrap(), cmd);
        for cut in 0..bytes.len() {
            assert!(RaftCmd::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(RaftCmd::decode(&extra).is_err());
        let RaftCmd::Write(w) = &cmd else {
            unreachable!()
        };
        let old = RaftCmd::Write(WriteCmd {
            version: None,
            ..w.clone()
        });
        assert_eq!(RaftCmd::decode(&old.encode()).unwrap(), old);
        assert_eq!(old.encode()[0], TAG_WRITE_UNVERSIONED);

        let split = RaftCmd::BatchSplit(BatchSplit {
            epoch: (1, 3),
            splits: vec![SplitSpec {
                key: b"m".to_vec(),
                new_region_id: 10,
                new_peer_ids: vec![11, 12, 13],
            }],
        });
        let bytes = split.encode();
        assert_eq!(RaftCmd::decode(&bytes).unwrap(), split);
        for cut in 0..bytes.len() {
            assert!(RaftCmd::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let compact = RaftCmd::CompactLog { index: 9, term: 3 };
        assert_eq!(RaftCmd::decode(&compact.encode()).unwrap(), compact);
    }
}
