//! Transactional commands over whole ranges: GC, resolve-lock of a region,
//! delete-range and unsafe destroy-range.
//!
//! GC and range resolve-lock work through their region in bounded batches,
//! as TiKV does: a read finds the next keys (at most [`GC_BATCH_KEYS`] /
//! [`RESOLVE_BATCH_KEYS`], and no more than half a `raft-entry-max-size` of
//! writes), those keys are latched, the batch's writes are computed on a
//! fresh snapshot and replicated as one raft entry, and the next batch
//! starts after the last key. No
//! batch holds more than its own keys' latches, so other writers of the
//! region keep going meanwhile.

use std::collections::HashMap;

use proto::kvrpcpb;

use super::region::{Checked, KeyMode};
use super::{InvalidRequest, Result, Storage};
use crate::data_keys::RawSpace;
use crate::engine::{Modify, DATA_CFS};
use crate::lock_manager::ReleasedLocks;
use crate::percolator;

/// Keys one GC batch covers.
pub const GC_BATCH_KEYS: usize = 256;
/// Records one GC batch drops at most (about 5 MiB of deletions for the
/// largest keys, under the 8 MiB raft entry limit).
pub const GC_BATCH_RECORDS: usize = 512;
/// Locks one resolve-lock batch resolves at most (TiKV resolves 256 too).
pub const RESOLVE_BATCH_KEYS: usize = 256;

/// The smallest key after `key`.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

impl Storage {
    /// Bytes one batch of a range-wide command may write: half a raft entry.
    fn batch_bytes(&self) -> usize {
        (self.inner.cfg.raft_entry_max_size / 2) as usize
    }

    pub async fn kv_gc(&self, req: kvrpcpb::GcRequest) -> Result<kvrpcpb::GcResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Txn)?;
        let (mut from, upper) = checked.user_range();
        let safe_point = req.safe_point;
        let max_bytes = self.batch_bytes();
        loop {
            let (lo, hi) = (from.clone(), upper.clone());
            let keys = self
                .read(&checked, 0, Vec::new(), move |snap| {
                    Ok(percolator::scan_write_keys(
                        snap,
                        &lo,
                        hi.as_deref(),
                        GC_BATCH_KEYS,
                    )?)
                })
                .await?;
            let Some(last) = keys.last().cloned() else {
                return Ok(kvrpcpb::GcResponse::default());
            };
            let _latch = self
                .inner
                .latches
                .acquire(keys.iter().map(Vec::as_slice))
                .await;
            let (term, batch) = self
                .read_in_term(checked.region.id, move |snap| {
                    let batch =
                        percolator::gc_keys(snap, safe_point, &keys, GC_BATCH_RECORDS, max_bytes);
                    Ok(batch?)
                })
                .await?;
            let released = ReleasedLocks::of(&batch.modifies);
            self.propose(&checked.region, Some(term), batch.modifies)
                .await?;
            self.inner.lock_manager.on_released(&released);
            from = batch.resume.unwrap_or_else(|| next_key(&last));
        }
    }

    /// `KvResolveLock` without keys: every lock of the named txns in the
    /// region, in batches.
    pub(super) async fn resolve_lock_range(
        &self,
        checked: Checked,
        req: kvrpcpb::ResolveLockRequest,
    ) -> Result<kvrpcpb::ResolveLockResponse> {
        let statuses: HashMap<u64, u64> = percolator::txn_statuses(&req);
        let (mut from, upper) = checked.user_range();
        let max_bytes = self.batch_bytes();
        loop {
            let (lo, hi, st) = (from.clone(), upper.clone(), statuses.clone());
            let keys = self
                .read(&checked, 0, Vec::new(), move |snap| {
                    let limit = RESOLVE_BATCH_KEYS;
                    let found = percolator::scan_resolvable_keys(
                        snap,
                        &st,
                        &lo,
                        hi.as_deref(),
                        limit,
                        max_bytes,
                    );
                    Ok(found?)
                })
                .await?;
            let Some(last) = keys.last().cloned() else {
                return Ok(kvrpcpb::ResolveLockResponse::default());
            };
            let st = statuses.clone();
            let batch = keys.clone();
            let resp = self
                .txn_write(checked.clone(), keys, false, move |snap, _| {
                    percolator::resolve_locks_of(snap, &st, &batch)
                })
                .await?;
            if resp.error.is_some() || resp.region_error.is_some() {
                return Ok(resp);
            }
            from = next_key(&last);
        }
    }

    pub async fn kv_delete_range(
        &self,
        req: kvrpcpb::DeleteRangeRequest,
    ) -> Result<kvrpcpb::DeleteRangeResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Txn)?;
        checked.check_range(&req.start_key, &req.end_key)?;
        let _latch = self.inner.latches.acquire_all().await;
        let modifies = percolator::delete_range(&req);
        let released = ReleasedLocks::of(&modifies);
        self.propose(&checked.region, None, modifies).await?;
        self.inner.lock_manager.on_released(&released);
        Ok(kvrpcpb::DeleteRangeResponse::default())
    }

    /// Deletes every key of `[start, end)`, raw and transactional, on this
    /// store's engine directly, bypassing raft, as TiKV does: the client sends
    /// it to every store after GC, with no region.
    pub async fn unsafe_destroy_range(
        &self,
        req: kvrpcpb::UnsafeDestroyRangeRequest,
    ) -> Result<kvrpcpb::UnsafeDestroyRangeResponse> {
        if !req.end_key.is_empty() && req.end_key < req.start_key {
            return Err(InvalidRequest::ReversedRange {
                what: "unsafe destroy range: ",
            }
            .into());
        }
        let _latch = self.inner.latches.acquire_all().await;
        let upper = (!req.end_key.is_empty()).then_some(req.end_key.as_slice());
        let mut modifies = percolator::delete_range(&kvrpcpb::DeleteRangeRequest {
            start_key: req.start_key.clone(),
            end_key: req.end_key.clone(),
            ..Default::default()
        });
        for space in [RawSpace::V1, RawSpace::V2] {
            let (start, end) = space.bounds(&req.start_key, upper);
            for cf in DATA_CFS {
                modifies.push(Modify::DeleteRange {
                    cf,
                    start: start.clone(),
                    end: end.clone(),
                });
            }
        }
        let released = ReleasedLocks::of(&modifies);
        let engine = self.inner.engine.clone();
        tokio::task::spawn_blocking(move || engine.write(&modifies, true)).await??;
        self.inner.lock_manager.on_released(&released);
        Ok(kvrpcpb::UnsafeDestroyRangeResponse::default())
    }
}
