//! The storage layer: RawKV and transactional commands over the raftstore.
//!
//! [`Storage`] validates each request (region, epoch, leadership, key range,
//! API version, sizes), reads through an engine snapshot on the blocking pool
//! and writes by proposing engine modifies through the region's raft group.
//! Write commands hold [`latch::Latches`] from their read to their apply.
//! `raw` holds the RawKV commands, `txn_commands` the transactional ones and
//! `range_txn` the transactional commands over whole ranges (the Percolator
//! actions themselves are in `crate::percolator`), `region` the request
//! checks. Writes that add data (raw puts, CAS, prewrites, pessimistic locks)
//! are refused with `errorpb.disk_full` while the disk monitor says the disk
//! is full ([`crate::disk`]); deletes and the rest of a transaction's life go
//! on.

#[cfg(test)]
mod disk_full_tests;
mod error;
pub mod latch;
#[cfg(test)]
mod lock_wait_tests;
mod range_txn;
mod raw;
mod region;
#[cfg(test)]
mod region_tests;
mod resolved_ts;
#[cfg(test)]
mod tests;
mod txn_commands;

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

pub use error::{Error, InvalidRequest, Result};
use region::Checked;
pub use region::KeyMode;

use crate::disk::{self, DiskState, WriteKind};
use crate::engine::{Engine, Modify, Snapshot};
use crate::lock_manager::LockManager;
use crate::percolator::ConcurrencyManager;
use crate::raftstore::cmd::RaftCmd;
use crate::raftstore::{ProposeError, Router, StoreMeta};
use latch::Latches;
use proto::kvrpcpb::{self, DiskFullOpt};
use proto::{errorpb, metapb};

/// Which client API versions the store accepts (TiKV's `api-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ApiMode {
    /// V1 and V2 clients side by side; V2 data stays inside its keyspace prefix.
    #[default]
    Mixed,
    V1,
    V2,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct StorageConfig {
    /// Largest key accepted, in bytes (default 8192, as TiKV).
    pub max_key_size: usize,
    /// Largest raft entry a single command may produce, in bytes (default 8 MiB).
    pub raft_entry_max_size: u64,
    /// API versions served (default `mixed`).
    pub api_version: ApiMode,
    /// Space kept back on the data directory's disk, in bytes (default
    /// 5 GiB, TiKV's; 0 turns disk-full protection off). On a disk smaller
    /// than ten times this, a tenth of the disk instead. With at most this
    /// much available, writes that add data are refused (`disk_full`); a
    /// placeholder file of a fifth of it is released then. 0 or at least 1 MiB.
    pub reserve_space: u64,
    /// How often the disk is checked, in ms (default 1000).
    pub disk_check_interval_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_key_size: 8 * 1024,
            raft_entry_max_size: 8 * 1024 * 1024,
            api_version: ApiMode::Mixed,
            reserve_space: 5 << 30,
            disk_check_interval_ms: 1000,
        }
    }
}

/// Why a timestamp could not be had: the oracle's own error, kept whole.
pub type TsoError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where fresh timestamps come from (the placement service's oracle). Boxed
/// futures keep it usable as `dyn TsoSource`.
pub trait TsoSource: Send + Sync + 'static {
    fn get_ts(&self) -> futures::future::BoxFuture<'_, Result<u64, TsoError>>;
}

#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    router: Router,
    meta: Arc<RwLock<StoreMeta>>,
    cm: Arc<ConcurrencyManager>,
    latches: Latches,
    cfg: StorageConfig,
    tso: Arc<dyn TsoSource>,
    /// Pessimistic lock waiters and the deadlock detector.
    lock_manager: LockManager,
    /// Per region, the leader term whose max_ts was synced from the oracle.
    max_ts_synced: parking_lot::Mutex<std::collections::HashMap<u64, u64>>,
    /// The disk monitor's state, once set: writes adding data are refused
    /// while the disk is full. Unset: never refused.
    disk: std::sync::OnceLock<Arc<DiskState>>,
}

impl Storage {
    pub fn new(
        engine: Engine,
        router: Router,
        meta: Arc<RwLock<StoreMeta>>,
        cm: Arc<ConcurrencyManager>,
        cfg: StorageConfig,
        tso: Arc<dyn TsoSource>,
        lock_manager: LockManager,
    ) -> Self {
        Storage {
            inner: Arc::new(Inner {
                engine,
                router,
                meta,
                cm,
                latches: Latches::new(4096),
                cfg,
                tso,
                lock_manager,
                max_ts_synced: Default::default(),
                disk: Default::default(),
            }),
        }
    }

    /// Makes writes follow the disk state the monitor publishes; false if
    /// one was set already.
    pub fn set_disk_state(&self, state: Arc<DiskState>) -> bool {
        self.inner.disk.set(state).is_ok()
    }

    /// Refuses a write of `kind` with `errorpb.disk_full` while the disk is
    /// too full for it (the request's `disk_full_opt` may allow more).
    pub(crate) fn check_disk(&self, ctx: Option<&kvrpcpb::Context>, kind: WriteKind) -> Result<()> {
        let Some(state) = self.inner.disk.get() else {
            return Ok(());
        };
        let usage = state.usage();
        let opt = ctx.map_or(DiskFullOpt::NotAllowedOnFull, |c| c.disk_full_opt());
        if disk::allows(usage, kind, opt) {
            return Ok(());
        }
        let store_id = self.inner.meta.read().store_id;
        Err(Error::region(disk::disk_full_error(store_id, state)))
    }

    /// Makes sure max_ts is at least a timestamp fetched since this replica
    /// became leader in `term` (the term the caller's read index was
    /// confirmed in, so the same term its snapshot and proposal belong to):
    /// reads served by a previous leader may have pushed max_ts there, and
    /// async-commit/1PC timestamps must exceed them.
    async fn sync_max_ts(&self, region_id: u64, term: u64) -> Result<()> {
        if self.inner.max_ts_synced.lock().get(&region_id) == Some(&term) {
            return Ok(());
        }
        let ts = self.inner.tso.get_ts().await.map_err(|e| {
            Error::region(proto::errorpb::Error {
                message: format!("max timestamp not synced: {e}"),
                max_timestamp_not_synced: Some(proto::errorpb::MaxTimestampNotSynced {}),
                ..Default::default()
            })
        })?;
        self.inner.cm.update_max_ts(ts);
        self.inner.max_ts_synced.lock().insert(region_id, term);
        Ok(())
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn concurrency_manager(&self) -> &Arc<ConcurrencyManager> {
        &self.inner.cm
    }

    pub fn lock_manager(&self) -> &LockManager {
        &self.inner.lock_manager
    }

    /// Runs `f` on a consistent snapshot of `region_id`, off the async
    /// runtime threads, once this replica is known to lead and to have
    /// applied everything committed before the call (read index): a deposed
    /// leader never serves a stale read.
    ///
    /// A replica read (`checked.replica`: the client asked for `replica_read` and this replica
    /// follows) is served here instead once a read index round to the leader, which checks the
    /// transaction's `start_ts` (0: nothing to check) and the key `ranges` (callers build them
    /// only for a replica read), is done and applied here: linearizable too, and off the leader. A stale read at or below
    /// this replica's safe ts needs no round.
    async fn read<T, F>(
        &self,
        checked: &Checked,
        start_ts: u64,
        ranges: Vec<kvrpcpb::KeyRange>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot<'_>) -> Result<T> + Send + 'static,
    {
        if !checked.replica {
            return Ok(self.read_in_term(checked.region.id, f).await?.1);
        }
        if checked.stale && start_ts != 0 {
            self.check_safe_ts(checked, start_ts)?;
            return self.read_local(f).await;
        }
        let check = kvrpcpb::ReadIndexRequest {
            start_ts,
            ranges,
            ..Default::default()
        };
        let router = &self.inner.router;
        let outcome = router.replica_read_index(checked.region.id, check).await;
        let label = match &outcome {
            Ok(_) => "served",
            Err(ProposeError::ReplicaReadLocked(_)) => "locked",
            Err(_) => "refused",
        };
        crate::metrics::REPLICA_READS
            .with_label_values(&[label])
            .inc();
        outcome?;
        self.read_local(f).await
    }

    /// A stale read at `read_ts` on this follower: served from its own data when `read_ts` is
    /// at or below its safe ts, else `DataIsNotReady` (the client reads from the leader).
    fn check_safe_ts(&self, checked: &Checked, read_ts: u64) -> Result<()> {
        let region_id = checked.region.id;
        let meta = self.inner.meta.read();
        let safe_ts = meta
            .regions
            .get(&region_id)
            .map_or(0, |r| r.progress.safe_ts());
        let ready = read_ts <= safe_ts;
        let label = if ready { "stale" } else { "data_not_ready" };
        crate::metrics::REPLICA_READS
            .with_label_values(&[label])
            .inc();
        if ready {
            return Ok(());
        }
        let peer_id = checked
            .region
            .peers
            .iter()
            .find(|p| p.store_id == meta.store_id)
            .map_or(0, |p| p.id);
        Err(Error::region(errorpb::Error {
            message: format!(
                "stale read at {read_ts} above region {region_id}'s safe ts {safe_ts}"
            ),
            data_is_not_ready: Some(errorpb::DataIsNotReady {
                region_id,
                peer_id,
                safe_ts,
            }),
            ..Default::default()
        }))
    }

    /// [`Storage::read`], also returning the leader term the read was
    /// confirmed in; a write derived from the read proposes in that term.
    async fn read_in_term<T, F>(&self, region_id: u64, f: F) -> Result<(u64, T)>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot<'_>) -> Result<T> + Send + 'static,
    {
        let term = self.leader_term(region_id).await?;
        Ok((term, self.read_local(f).await?))
    }

    /// The term in which this replica, as leader, may serve a linearizable read of
    /// `region_id` now: from its published lease when it holds one (no hop through the
    /// raftstore loop), else once a read index is confirmed and applied.
    async fn leader_term(&self, region_id: u64) -> Result<u64> {
        let leased = self
            .inner
            .meta
            .read()
            .regions
            .get(&region_id)
            .and_then(|m| m.lease.term_at(std::time::Instant::now()));
        match leased {
            Some(term) => Ok(term),
            None => Ok(self.inner.router.read_index(region_id).await?),
        }
    }

    /// Runs `f` on a snapshot of the local engine, with no region check.
    async fn read_local<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot<'_>) -> Result<T> + Send + 'static,
    {
        let engine = self.inner.engine.clone();
        tokio::task::spawn_blocking(move || {
            let snap = engine.snapshot();
            f(&snap)
        })
        .await?
    }

    /// Replicates `modifies` through the raft group of `region` (as the
    /// request was checked against it: the apply refuses them if its epoch
    /// version moved meanwhile); returns once they are applied on this store.
    /// With `term`, only while this replica still leads in that term (the
    /// one the caller read its input in).
    async fn propose(
        &self,
        region: &metapb::Region,
        term: Option<u64>,
        modifies: Vec<Modify>,
    ) -> Result<()> {
        let region_id = region.id;
        if modifies.is_empty() {
            return Ok(());
        }
        let size: u64 = modifies.iter().map(|m| m.size() as u64).sum();
        if size > self.inner.cfg.raft_entry_max_size {
            return Err(Error::region(errorpb::Error {
                message: format!(
                    "raft entry is too large: {size} bytes, limit {} bytes",
                    self.inner.cfg.raft_entry_max_size
                ),
                raft_entry_too_large: Some(errorpb::RaftEntryTooLarge {
                    region_id,
                    entry_size: size,
                }),
                ..Default::default()
            }));
        }
        let cmd = RaftCmd::write(region.region_epoch.unwrap_or_default().version, modifies);
        let router = &self.inner.router;
        match term {
            Some(term) => router.propose_in_term(region_id, term, cmd).await?,
            None => router.propose(region_id, cmd).await?,
        }
        Ok(())
    }
}
