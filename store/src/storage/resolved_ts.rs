//! The leader side of stale reads: resolving, every round, a timestamp at or below which no
//! transaction can still commit data a replica lacks once it has applied a given index.
//!
//! A round ([`Storage::resolve_round`]) takes a fresh TSO timestamp `T` and raises `max_ts`
//! to it, so no async-commit or 1PC transaction prewritten from now on commits at or below
//! `T`. Then, for each region this store leads: the in-memory locks of async-commit
//! prewrites in flight, then an engine snapshot's lock column family and the applied index
//! that snapshot holds (written with the data, so they agree). The resolved ts is `T`, or one
//! less than the oldest lock start ts if that is lower (pessimistic locks write nothing and do
//! not count). A transaction whose lock the snapshot does not hold either prewrote after `T`
//! was taken, so commits above it, or had committed, at an index the snapshot holds.
//! `raftstore::read_progress` carries `(resolved ts, index)` to the followers.
//!
//! The memory table is looked at before the snapshot is taken: a lock that leaves it in
//! between is then in the snapshot (it leaves only once applied).

use std::sync::Arc;

use proto::{kvrpcpb, metapb};

use super::{Result, Storage};
use crate::engine::CF_RAFT;
use crate::mvcc::{codec, LockType, MvccReader};
use crate::percolator::ConcurrencyManager;
use crate::raftstore::local_keys::{self, ApplyState};
use crate::raftstore::read_progress::ReadProgress;

/// The user-key range of a region whose bounds are encoded (transactional) keys; a bound
/// that does not decode is taken as unbounded, which only looks at more locks.
fn user_range(region: &metapb::Region) -> (Vec<u8>, Option<Vec<u8>>) {
    let lower = if region.start_key.is_empty() {
        Vec::new()
    } else {
        codec::decode_bytes(&region.start_key).unwrap_or_default()
    };
    let upper = if region.end_key.is_empty() {
        None
    } else {
        codec::decode_bytes(&region.end_key).ok()
    };
    (lower, upper)
}

/// The smallest start ts of the in-memory locks in `[lower, upper)` that count.
fn oldest_memory_lock(cm: &ConcurrencyManager, lower: &[u8], upper: Option<&[u8]>) -> Option<u64> {
    let mut oldest = None::<u64>;
    let _ = cm.read_range_check(lower, upper, |_, lock| {
        if lock.lock_type != LockType::Pessimistic {
            oldest = Some(oldest.map_or(lock.ts, |o| o.min(lock.ts)));
        }
        Ok::<(), ()>(())
    });
    oldest
}

impl Storage {
    /// One round of the resolver over the regions this store leads; how many were resolved.
    pub async fn resolve_round(&self) -> Result<usize> {
        let ts = match self.inner.tso.get_ts().await {
            Ok(ts) => ts,
            Err(e) => {
                tracing::debug!(error = %e, "no timestamp to resolve regions with");
                return Ok(0);
            }
        };
        self.inner.cm.update_max_ts(ts);
        let leaders: Vec<(metapb::Region, Arc<ReadProgress>)> = self
            .inner
            .meta
            .read()
            .regions
            .values()
            .filter(|r| r.is_leader)
            .map(|r| (r.region.clone(), r.progress.clone()))
            .collect();
        let engine = self.inner.engine.clone();
        let cm = self.inner.cm.clone();
        let resolved = tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut n = 0;
            for (region, progress) in leaders {
                let (lower, upper) = user_range(&region);
                let in_memory = oldest_memory_lock(&cm, &lower, upper.as_deref());
                let snap = engine.snapshot();
                let Some(applied) = snap
                    .get_cf(CF_RAFT, &local_keys::apply_state_key(region.id))?
                    .and_then(|v| ApplyState::decode(&v))
                else {
                    continue;
                };
                let reader = MvccReader::new(&snap);
                let locks = reader
                    .scan_locks(
                        &lower,
                        upper.as_deref(),
                        |l| l.lock_type != LockType::Pessimistic,
                        usize::MAX,
                    )
                    .map_err(super::Error::Txn)?;
                let oldest = locks.iter().map(|(_, l)| l.ts).chain(in_memory).min();
                let resolved = oldest.map_or(ts, |o| ts.min(o.saturating_sub(1)));
                progress.resolved(resolved, applied.applied_index);
                n += 1;
            }
            Ok(n)
        })
        .await??;
        Ok(resolved)
    }

    /// The smallest safe ts of this store's replicas overlapping `range` (all when none),
    /// for `StoreSafeTS`: stale reads at or below it are served by every one of them.
    pub fn store_safe_ts(&self, range: Option<&kvrpcpb::KeyRange>) -> u64 {
        let meta = self.inner.meta.read();
        let overlaps = |r: &metapb::Region| match range {
            None => true,
            Some(k) => {
                (k.end_key.is_empty() || r.start_key.as_slice() < k.end_key.as_slice())
                    && (r.end_key.is_empty() || k.start_key.as_slice() < r.end_key.as_slice())
            }
        };
        meta.regions
            .values()
            .filter(|r| overlaps(&r.region))
            .map(|r| r.progress.safe_ts())
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::Lock;

    #[test]
    fn region_bounds_decode_and_undecodable_ones_look_wider() {
        let region = metapb::Region {
            start_key: codec::encode_bytes(b"b"),
            end_key: codec::encode_bytes(b"m"),
            ..Default::default()
        };
        assert_eq!(user_range(&region), (b"b".to_vec(), Some(b"m".to_vec())));
        let raw_bounds = metapb::Region {
            start_key: b"b".to_vec(),
            end_key: b"m".to_vec(),
            ..Default::default()
        };
        assert_eq!(user_range(&raw_bounds), (Vec::new(), None));
    }

    #[test]
    fn the_oldest_memory_lock_counts_but_pessimistic_ones_do_not() {
        let cm = ConcurrencyManager::new(0);
        let _a = cm.lock_key(b"c", |_| {
            Some(Lock::new(LockType::Put, b"c".to_vec(), 30, 10))
        });
        let _b = cm.lock_key(b"d", |_| {
            Some(Lock::new(LockType::Pessimistic, b"d".to_vec(), 20, 10))
        });
        let _c = cm.lock_key(b"x", |_| {
            Some(Lock::new(LockType::Put, b"x".to_vec(), 10, 10))
        });
        assert_eq!(oldest_memory_lock(&cm, b"b", Some(b"m")), Some(30));
        assert_eq!(oldest_memory_lock(&cm, b"b", None), Some(10));
        assert_eq!(oldest_memory_lock(&cm, b"e", Some(b"m")), None);
    }
}
