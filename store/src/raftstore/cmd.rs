//! The commands carried in raft log entries, and their binary encoding.
//!
//! A [`RaftCmd`] is what a leader proposes and every replica applies. Normal
//! writes are a list of engine [`Modify`]s applied atomically. The encoding is
//! ours (a version byte, then length-prefixed fields) and is only ever read by
//! this code.

use crate::engine::{CfName, Modify, ALL_CFS};

const VERSION: u8 = 1;
const OP_PUT: u8 = 0;
const OP_DELETE: u8 = 1;
const OP_DELETE_RANGE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftCmd {
    Write(Vec<Modify>),
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt raft command: {0}")]
pub struct DecodeError(&'static str);

impl RaftCmd {
    pub fn encode(&self) -> Vec<u8> {
        let RaftCmd::Write(modifies) = self;
        let size: usize = modifies.iter().map(|m| m.size() + 2).sum();
        let mut out = Vec::with_capacity(size + 5);
        out.push(VERSION);
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

    pub fn decode(mut data: &[u8]) -> Result<Self, DecodeError> {
        if take(&mut data, 1)? != [VERSION] {
            return Err(DecodeError("unknown version"));
        }
        let n = u32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default()) as usize;
        let mut modifies = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            let head = take(&mut data, 2)?;
            let cf = *ALL_CFS
                .get(head[1] as usize)
                .ok_or(DecodeError("bad column family"))?;
            let a = take_bytes(&mut data)?;
            modifies.push(match head[0] {
                OP_PUT => Modify::Put {
                    cf,
                    key: a,
                    value: take_bytes(&mut data)?,
                },
                OP_DELETE => Modify::Delete { cf, key: a },
                OP_DELETE_RANGE => Modify::DeleteRange {
                    cf,
                    start: a,
                    end: take_bytes(&mut data)?,
                },
                _ => return Err(DecodeError("bad op")),
            });
        }
        if !data.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(RaftCmd::Write(modifies))
    }
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
        let cmd = RaftCmd::Write(vec![
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
        ]);
        let bytes = cmd.encode();
        assert_eq!(RaftCmd::decode(&bytes).unwrap(), cmd);
        for cut in 0..bytes.len() {
            assert!(RaftCmd::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(RaftCmd::decode(&extra).is_err());
    }
}
