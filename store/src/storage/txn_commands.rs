//! Transactional (Percolator) commands: checks, latches, snapshot, action,
//! replication. The actions themselves live in `crate::percolator`.
//!
//! Every write that removes locks from the lock column family tells the
//! lock manager once it is applied, so requests waiting for those locks
//! wake up. `kv_pessimistic_lock` is the waiting side: when its only error is
//! another transaction's lock, it registers a waiter while still holding the
//! key's latch, lets the latch go, waits, and on a release runs again from
//! the region checks on.

use proto::kvrpcpb;

use super::region::{Checked, KeyMode};
use super::{Result, Storage};
use crate::disk::WriteKind;
use crate::engine::Snapshot;
use crate::lock_manager::{ReleasedLocks, WaitHandle, Wake};
use crate::percolator::{self, ConcurrencyManager, WriteOutcome};

/// The ranges `[key, key + \0)` of point reads of `keys`.
fn point_ranges<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<kvrpcpb::KeyRange> {
    keys.into_iter()
        .map(|k| {
            let mut end = k.to_vec();
            end.push(0);
            kvrpcpb::KeyRange {
                start_key: k.to_vec(),
                end_key: end,
            }
        })
        .collect()
}

/// The ranges a replica read has the leader check (`make`), none for a leader read: reads on
/// the leader copy no keys for it.
fn replica_ranges(
    checked: &Checked,
    make: impl FnOnce() -> Vec<kvrpcpb::KeyRange>,
) -> Vec<kvrpcpb::KeyRange> {
    if checked.replica {
        make()
    } else {
        Vec::new()
    }
}

impl Storage {
    fn txn_check<'a>(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        keys: impl IntoIterator<Item = &'a [u8]>,
        allow_empty: bool,
    ) -> Result<Checked> {
        let checked = self.check_context(ctx, KeyMode::Txn)?;
        self.check_keys(&checked, keys, allow_empty)?;
        Ok(checked)
    }

    /// Reads at `start_ts` over `ranges` of user keys (what a replica read has the leader
    /// check: [`Storage::read`]).
    async fn txn_read<T, F>(
        &self,
        checked: &Checked,
        start_ts: u64,
        ranges: Vec<kvrpcpb::KeyRange>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot<'_>, &ConcurrencyManager) -> percolator::Result<T> + Send + 'static,
    {
        let cm = self.inner.cm.clone();
        self.read(checked, start_ts, ranges, move |snap| Ok(f(snap, &cm)?))
            .await
    }

    /// Runs a write action under latches and replicates what it produced in
    /// the leader term its snapshot was read in. With `sync_max_ts` (async
    /// commit, 1PC), max_ts is first synced for exactly that term.
    pub(super) async fn txn_write<R, F>(
        &self,
        checked: Checked,
        keys: Vec<Vec<u8>>,
        sync_max_ts: bool,
        f: F,
    ) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Snapshot<'_>, &ConcurrencyManager) -> percolator::Result<WriteOutcome<R>>
            + Send
            + 'static,
    {
        let _latch = self
            .inner
            .latches
            .acquire(keys.iter().map(Vec::as_slice))
            .await;
        self.txn_write_latched(&checked, sync_max_ts, f).await
    }

    /// The part of a write that runs under its latches: read and act,
    /// replicate, then wake the waiters of the locks it removed.
    async fn txn_write_latched<R, F>(&self, checked: &Checked, sync_max_ts: bool, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Snapshot<'_>, &ConcurrencyManager) -> percolator::Result<WriteOutcome<R>>
            + Send
            + 'static,
    {
        let region_id = checked.region.id;
        let term = self.leader_term(region_id).await?;
        if sync_max_ts {
            self.sync_max_ts(region_id, term).await?;
        }
        let cm = self.inner.cm.clone();
        let outcome = self.read_local(move |snap| Ok(f(snap, &cm)?)).await?;
        let released = ReleasedLocks::of(&outcome.modifies);
        self.propose(&checked.region, Some(term), outcome.modifies)
            .await?;
        drop(outcome.guards);
        self.inner.lock_manager.on_released(&released);
        Ok(outcome.response)
    }

    pub async fn kv_get(&self, req: kvrpcpb::GetRequest) -> Result<kvrpcpb::GetResponse> {
        let checked = self.txn_check(req.context.as_ref(), [req.key.as_slice()], true)?;
        // Bump max_ts and meet in-flight async-commit locks before the snapshot.
        let ctx = req.context.as_ref();
        if let Err(e) =
            percolator::read_check_keys(&self.inner.cm, ctx, req.version, [req.key.as_slice()])
        {
            return Ok(kvrpcpb::GetResponse {
                error: Some(*e),
                ..Default::default()
            });
        }
        let ranges = replica_ranges(&checked, || point_ranges([req.key.as_slice()]));
        self.txn_read(&checked, req.version, ranges, move |snap, cm| {
            percolator::kv_get(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_batch_get(
        &self,
        req: kvrpcpb::BatchGetRequest,
    ) -> Result<kvrpcpb::BatchGetResponse> {
        let checked = self.txn_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            true,
        )?;
        let keys = req.keys.iter().map(Vec::as_slice);
        if let Err(e) =
            percolator::read_check_keys(&self.inner.cm, req.context.as_ref(), req.version, keys)
        {
            return Ok(kvrpcpb::BatchGetResponse {
                error: Some(*e),
                ..Default::default()
            });
        }
        let ranges = replica_ranges(&checked, || {
            point_ranges(req.keys.iter().map(Vec::as_slice))
        });
        self.txn_read(&checked, req.version, ranges, move |snap, cm| {
            percolator::kv_batch_get(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_scan(&self, req: kvrpcpb::ScanRequest) -> Result<kvrpcpb::ScanResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Txn)?;
        let (lo, hi) = if req.reverse {
            (req.end_key.as_slice(), req.start_key.as_slice())
        } else {
            (req.start_key.as_slice(), req.end_key.as_slice())
        };
        let (lower, upper) = checked.clip(lo, hi);
        let ctx = req.context.as_ref();
        if let Err(e) =
            percolator::read_check_range(&self.inner.cm, ctx, req.version, &lower, upper.as_deref())
        {
            return Ok(kvrpcpb::ScanResponse {
                error: Some(*e),
                ..Default::default()
            });
        }
        let ranges = replica_ranges(&checked, || {
            vec![kvrpcpb::KeyRange {
                start_key: lower.clone(),
                end_key: upper.clone().unwrap_or_default(),
            }]
        });
        self.txn_read(&checked, req.version, ranges, move |snap, cm| {
            percolator::kv_scan(snap, cm, &req, &lower, upper.as_deref())
        })
        .await
    }

    pub async fn kv_scan_lock(
        &self,
        req: kvrpcpb::ScanLockRequest,
    ) -> Result<kvrpcpb::ScanLockResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Txn)?;
        let (lower, upper) = checked.clip(&req.start_key, &req.end_key);
        self.txn_read(&checked, 0, Vec::new(), move |snap, _| {
            percolator::kv_scan_lock(snap, &req, &lower, upper.as_deref())
        })
        .await
    }

    pub async fn kv_prewrite(
        &self,
        req: kvrpcpb::PrewriteRequest,
    ) -> Result<kvrpcpb::PrewriteResponse> {
        let keys: Vec<Vec<u8>> = req.mutations.iter().map(|m| m.key.clone()).collect();
        let checked =
            self.txn_check(req.context.as_ref(), keys.iter().map(Vec::as_slice), false)?;
        self.check_key_sizes(keys.iter().map(Vec::as_slice))?;
        self.check_disk(req.context.as_ref(), WriteKind::Grow)?;
        let sync = req.use_async_commit || req.try_one_pc;
        self.txn_write(checked, keys, sync, move |snap, cm| {
            percolator::prewrite(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_commit(&self, req: kvrpcpb::CommitRequest) -> Result<kvrpcpb::CommitResponse> {
        let checked = self.txn_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            false,
        )?;
        let keys = req.keys.clone();
        self.txn_write(checked, keys, false, move |snap, cm| {
            percolator::commit(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_cleanup(
        &self,
        req: kvrpcpb::CleanupRequest,
    ) -> Result<kvrpcpb::CleanupResponse> {
        let checked = self.txn_check(req.context.as_ref(), [req.key.as_slice()], false)?;
        let keys = vec![req.key.clone()];
        self.txn_write(checked, keys, false, move |snap, cm| {
            percolator::cleanup(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_batch_rollback(
        &self,
        req: kvrpcpb::BatchRollbackRequest,
    ) -> Result<kvrpcpb::BatchRollbackResponse> {
        let checked = self.txn_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            false,
        )?;
        let keys = req.keys.clone();
        self.txn_write(checked, keys, false, move |snap, _| {
            percolator::batch_rollback(snap, &req)
        })
        .await
    }

    pub async fn kv_check_txn_status(
        &self,
        req: kvrpcpb::CheckTxnStatusRequest,
    ) -> Result<kvrpcpb::CheckTxnStatusResponse> {
        let checked = self.txn_check(req.context.as_ref(), [req.primary_key.as_slice()], false)?;
        let keys = vec![req.primary_key.clone()];
        self.txn_write(checked, keys, false, move |snap, cm| {
            percolator::check_txn_status(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_check_secondary_locks(
        &self,
        req: kvrpcpb::CheckSecondaryLocksRequest,
    ) -> Result<kvrpcpb::CheckSecondaryLocksResponse> {
        let checked = self.txn_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            false,
        )?;
        let keys = req.keys.clone();
        self.txn_write(checked, keys, false, move |snap, cm| {
            percolator::check_secondary_locks(snap, cm, &req)
        })
        .await
    }

    pub async fn kv_resolve_lock(
        &self,
        req: kvrpcpb::ResolveLockRequest,
    ) -> Result<kvrpcpb::ResolveLockResponse> {
        let checked = self.txn_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            false,
        )?;
        if req.keys.is_empty() {
            return self.resolve_lock_range(checked, req).await;
        }
        let keys = req.keys.clone();
        self.txn_write(checked, keys, false, move |snap, _| {
            percolator::resolve_lock(snap, &req)
        })
        .await
    }

    /// Locks the keys, waiting (up to the request's `wait_timeout`, capped by
    /// the config) while another transaction holds one of them.
    pub async fn kv_pessimistic_lock(
        &self,
        req: kvrpcpb::PessimisticLockRequest,
    ) -> Result<kvrpcpb::PessimisticLockResponse> {
        let keys: Vec<Vec<u8>> = req.mutations.iter().map(|m| m.key.clone()).collect();
        let wait = self.inner.lock_manager.wait_timeout(req.wait_timeout);
        let deadline = wait.map(|d| tokio::time::Instant::now() + d);
        loop {
            // Checked again after every wait: leadership or epoch may have moved.
            let checked =
                self.txn_check(req.context.as_ref(), keys.iter().map(Vec::as_slice), false)?;
            self.check_key_sizes(keys.iter().map(Vec::as_slice))?;
            self.check_disk(req.context.as_ref(), WriteKind::Grow)?;
            let latch = self
                .inner
                .latches
                .acquire(keys.iter().map(Vec::as_slice))
                .await;
            let attempt = req.clone();
            let resp = self
                .txn_write_latched(&checked, false, move |snap, cm| {
                    percolator::pessimistic_lock(snap, cm, &attempt)
                })
                .await?;
            let Some(waiter) = self.register_waiter(&req, &resp, deadline) else {
                return Ok(resp);
            };
            drop(latch);
            match waiter.wait().await {
                Wake::Released => continue,
                Wake::TimedOut => return Ok(resp),
                Wake::Deadlock(deadlock) => {
                    return Ok(kvrpcpb::PessimisticLockResponse {
                        errors: vec![percolator::key_error::deadlock(deadlock)],
                        ..Default::default()
                    })
                }
            }
        }
    }

    /// Registers the request as waiting when its one error is another
    /// transaction's lock and its deadline has not passed.
    fn register_waiter(
        &self,
        req: &kvrpcpb::PessimisticLockRequest,
        resp: &kvrpcpb::PessimisticLockResponse,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<WaitHandle> {
        let deadline = deadline.filter(|d| *d > tokio::time::Instant::now())?;
        let [error] = resp.errors.as_slice() else {
            return None;
        };
        let lock = error.locked.as_ref()?;
        if lock.lock_version == req.start_version {
            return None;
        }
        let lm = &self.inner.lock_manager;
        Some(lm.register(
            req.start_version,
            lock.lock_version,
            &lock.key,
            !req.is_first_lock,
            deadline,
        ))
    }

    pub async fn kv_pessimistic_rollback(
        &self,
        req: kvrpcpb::PessimisticRollbackRequest,
    ) -> Result<kvrpcpb::PessimisticRollbackResponse> {
        let checked = self.txn_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            false,
        )?;
        let keys = req.keys.clone();
        self.txn_write(checked, keys, false, move |snap, _| {
            percolator::pessimistic_rollback(snap, &req)
        })
        .await
    }

    pub async fn kv_txn_heart_beat(
        &self,
        req: kvrpcpb::TxnHeartBeatRequest,
    ) -> Result<kvrpcpb::TxnHeartBeatResponse> {
        let checked = self.txn_check(req.context.as_ref(), [req.primary_lock.as_slice()], false)?;
        let keys = vec![req.primary_lock.clone()];
        self.txn_write(checked, keys, false, move |snap, _| {
            percolator::txn_heartbeat(snap, &req)
        })
        .await
    }
}
