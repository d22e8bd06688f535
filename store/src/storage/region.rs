//! Request checks shared by every command: the region named in the
//! `kvrpcpb::Context` must be here, led by this replica (or followed by it,
//! for a `replica_read` or `stale_read`), at the epoch the client believes, and every key must
//! lie in it and fit the API version.

use proto::{errorpb, kvrpcpb, metapb};

use super::{ApiMode, Error, InvalidRequest, Result, Storage};
use crate::raftstore::RegionMeta;

/// Whether a request's keys are RawKV or transactional keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Raw,
    Txn,
}

/// A request that passed the region checks.
#[derive(Debug, Clone)]
pub struct Checked {
    pub region: metapb::Region,
    pub v2: bool,
    pub mode: KeyMode,
    /// This replica follows and the client asked for a replica read: a read is served here
    /// after a read index round (`Storage::read`); a write still fails with `NotLeader`.
    pub replica: bool,
    /// The client asked for a stale read: on a follower, served at or below its safe ts.
    pub stale: bool,
}

impl Checked {
    /// Region boundaries are memcomparable-encoded except for V1 raw keys,
    /// whose client compares them as plain bytes.
    fn encoded(&self) -> bool {
        self.v2 || self.mode == KeyMode::Txn
    }

    fn range_key(&self, key: &[u8]) -> Vec<u8> {
        if self.encoded() {
            crate::mvcc::codec::encode_bytes(key)
        } else {
            key.to_vec()
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let rk = self.range_key(key);
        rk.as_slice() >= self.region.start_key.as_slice()
            && (self.region.end_key.is_empty() || rk.as_slice() < self.region.end_key.as_slice())
    }

    /// Checks that the user range `[start, end)` (empty end = unbounded) lies
    /// inside the region, as TiKV does for a range deletion: the start key in
    /// it, the end key at or before its end.
    pub fn check_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        if !end.is_empty() && end < start {
            return Err(InvalidRequest::ReversedRange { what: "range " }.into());
        }
        if self.v2 {
            check_keyspace_prefix(start, self.mode)?;
        }
        if !self.contains(start) {
            return Err(self.key_not_in_region(start));
        }
        let region_end = &self.region.end_key;
        let ends_inside = if end.is_empty() {
            region_end.is_empty()
        } else {
            region_end.is_empty() || self.range_key(end).as_slice() <= region_end.as_slice()
        };
        if !ends_inside {
            return Err(self.key_not_in_region(end));
        }
        Ok(())
    }

    fn key_not_in_region(&self, key: &[u8]) -> Error {
        let region = &self.region;
        region_error(format!("key is not in region {}", region.id), |e| {
            e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                key: key.to_vec(),
                region_id: region.id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            })
        })
    }

    /// The region's range in user-key space: `[lower, upper)`, None = unbounded.
    pub fn user_range(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let decode = |b: &[u8]| -> Vec<u8> {
            if self.encoded() && !b.is_empty() {
                crate::mvcc::codec::decode_bytes(b).unwrap_or_else(|_| b.to_vec())
            } else {
                b.to_vec()
            }
        };
        let upper = (!self.region.end_key.is_empty()).then(|| decode(&self.region.end_key));
        (decode(&self.region.start_key), upper)
    }

    /// Clips the user range `[lower, upper)` (empty upper = unbounded) to the region.
    pub fn clip(&self, lower: &[u8], upper: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        let (rl, ru) = self.user_range();
        let lower = if lower > rl.as_slice() {
            lower.to_vec()
        } else {
            rl
        };
        let upper = match (upper.is_empty(), ru) {
            (true, ru) => ru,
            (false, None) => Some(upper.to_vec()),
            (false, Some(ru)) => Some(if upper < ru.as_slice() {
                upper.to_vec()
            } else {
                ru
            }),
        };
        (lower, upper)
    }
}

fn region_error(message: String, f: impl FnOnce(&mut errorpb::Error)) -> Error {
    let mut e = errorpb::Error {
        message,
        ..Default::default()
    };
    f(&mut e);
    Error::region(e)
}

impl Storage {
    /// Checks the request context; the keys are checked with [`Storage::check_keys`].
    pub(crate) fn check_context(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        mode: KeyMode,
    ) -> Result<Checked> {
        let default_ctx = kvrpcpb::Context::default();
        let ctx = ctx.unwrap_or(&default_ctx);
        let v2 = ctx.api_version == kvrpcpb::ApiVersion::V2 as i32;
        match (self.inner.cfg.api_version, v2) {
            (ApiMode::V1, true) => {
                return Err(InvalidRequest::ApiVersion {
                    store: "V1",
                    request: "V2",
                }
                .into())
            }
            (ApiMode::V2, false) => {
                return Err(InvalidRequest::ApiVersion {
                    store: "V2",
                    request: "V1",
                }
                .into())
            }
            _ => {}
        }
        let meta = self.inner.meta.read();
        let region_id = ctx.region_id;
        let Some(rm) = meta.regions.get(&region_id) else {
            return Err(region_error(
                format!("region {region_id} is not found"),
                |e| e.region_not_found = Some(errorpb::RegionNotFound { region_id }),
            ));
        };
        if let Some(peer) = &ctx.peer {
            if peer.store_id != 0 && peer.store_id != meta.store_id {
                let (request_store_id, actual_store_id) = (peer.store_id, meta.store_id);
                return Err(region_error(
                    format!(
                        "store not match: request {request_store_id}, actual {actual_store_id}"
                    ),
                    |e| {
                        e.store_not_match = Some(errorpb::StoreNotMatch {
                            request_store_id,
                            actual_store_id,
                        })
                    },
                ));
            }
        }
        check_epoch(rm, ctx.region_epoch.as_ref())?;
        let replica = !rm.is_leader && (ctx.replica_read || ctx.stale_read);
        if !rm.is_leader && !replica {
            let leader = rm.leader_peer();
            return Err(region_error(
                format!("peer is not leader for region {region_id}"),
                |e| e.not_leader = Some(errorpb::NotLeader { region_id, leader }),
            ));
        }
        Ok(Checked {
            region: rm.region.clone(),
            v2,
            mode,
            replica,
            stale: ctx.stale_read,
        })
    }

    /// Checks the size of keys a command is about to create (puts, prewrites,
    /// locks); other commands may name any key, which then simply is absent.
    pub(crate) fn check_key_sizes<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<()> {
        let limit = self.inner.cfg.max_key_size;
        match keys.into_iter().find(|k| k.len() > limit) {
            Some(key) => Err(InvalidRequest::KeyTooLarge {
                len: key.len(),
                limit,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Checks emptiness, keyspace prefix and region membership of keys.
    pub(crate) fn check_keys<'a>(
        &self,
        checked: &Checked,
        keys: impl IntoIterator<Item = &'a [u8]>,
        allow_empty: bool,
    ) -> Result<()> {
        for key in keys {
            if key.is_empty() && !allow_empty {
                return Err(InvalidRequest::EmptyKey.into());
            }
            if checked.v2 {
                check_keyspace_prefix(key, checked.mode)?;
            }
            // The empty key is the smallest: only the first region holds it.
            if !checked.contains(key) {
                return Err(checked.key_not_in_region(key));
            }
        }
        Ok(())
    }
}

fn check_epoch(rm: &RegionMeta, epoch: Option<&metapb::RegionEpoch>) -> Result<()> {
    let current = rm.region.region_epoch.unwrap_or_default();
    let sent = epoch.cloned().unwrap_or_default();
    if sent.version == current.version && sent.conf_ver == current.conf_ver {
        return Ok(());
    }
    let region = rm.region.clone();
    Err(region_error(
        format!(
            "epoch not match: request {}/{}, current {}/{}",
            sent.conf_ver, sent.version, current.conf_ver, current.version
        ),
        |e| {
            e.epoch_not_match = Some(errorpb::EpochNotMatch {
                current_regions: vec![region],
            })
        },
    ))
}

/// API V2 keys start with `r` (raw) or `x` (txn) and a 3-byte keyspace id.
fn check_keyspace_prefix(key: &[u8], mode: KeyMode) -> Result<()> {
    let want = match mode {
        KeyMode::Raw => b'r',
        KeyMode::Txn => b'x',
    };
    if key.len() < 4 || key[0] != want {
        return Err(InvalidRequest::KeyspacePrefix {
            mode: if mode == KeyMode::Raw {
                "raw"
            } else {
                "transactional"
            },
            prefix: want as char,
        }
        .into());
    }
    Ok(())
}
