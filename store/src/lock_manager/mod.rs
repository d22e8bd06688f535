//! Pessimistic lock waiting and deadlock detection (TiKV's lock manager).
//!
//! A `KvPessimisticLock` that meets another transaction's lock registers a
//! waiter here ([`LockManager::register`], while it still holds the key's
//! latch, so no release can slip between its read and its registration) and
//! waits on the returned [`WaitHandle`] without holding anything. It is woken
//! ([`Wake`]) when the lock is released (storage reports every lock the lock
//! column family loses: [`ReleasedLocks`]), when its wait times out, or when
//! the detector finds that its wait closes a cycle. Woken by a release, the
//! request runs again from its region checks on.
//!
//! Key types: [`wait_table::WaitTable`] (the pure waiter queues, ordered by
//! start_ts), [`detect_table::DetectTable`] (the pure wait-for graph),
//! [`Detector`] (routes edges to the table here or to the detector leader
//! through a [`LeaderLink`]), [`PessimisticTxnConfig`]. This module sits
//! beside `storage` (which calls it) and below `server` (which serves the
//! `deadlock.Deadlock` gRPC service and implements the link); it opens no
//! sockets.

mod config;
pub mod detect_table;
pub mod detector;
pub mod wait_table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use proto::deadlock::{DeadlockRequestType, DeadlockResponse, WaitForEntry};
use proto::kvrpcpb;
use tokio::sync::oneshot;

pub use config::PessimisticTxnConfig;
pub use detector::{Detector, LeaderLink, NotLeader};

use crate::engine::{Modify, CF_LOCK};
use crate::mvcc::codec::lock_key;
use crate::raftstore::StoreMeta;
use wait_table::{Token, WaitTable, Waiter};

/// The hash of a key in wait-for entries and deadlock errors: farmhash's
/// 64-bit fingerprint, as TiKV computes it and client-go recomputes it.
pub fn key_hash(key: &[u8]) -> u64 {
    farmhash::fingerprint64(key)
}

/// Why a waiter stopped waiting.
#[derive(Debug, Clone, PartialEq)]
pub enum Wake {
    /// The lock was released: try again.
    Released,
    /// The wait timed out: answer with the lock.
    TimedOut,
    /// Waiting would close a cycle: answer with this error.
    Deadlock(kvrpcpb::Deadlock),
}

/// Locks removed from the lock column family by one applied write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReleasedLocks {
    /// Engine keys of deleted locks.
    keys: Vec<Vec<u8>>,
    /// Deleted engine key ranges `[start, end)`.
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ReleasedLocks {
    pub fn of(modifies: &[Modify]) -> Self {
        let mut out = ReleasedLocks::default();
        for m in modifies {
            match m {
                Modify::Delete { cf, key } if *cf == CF_LOCK => out.keys.push(key.clone()),
                Modify::DeleteRange { cf, start, end } if *cf == CF_LOCK => {
                    out.ranges.push((start.clone(), end.clone()))
                }
                _ => {}
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

#[derive(Default)]
struct Waits {
    table: WaitTable,
    senders: HashMap<Token, oneshot::Sender<Wake>>,
}

struct Inner {
    cfg: PessimisticTxnConfig,
    waits: Mutex<Waits>,
    next_token: AtomicU64,
    detector: Detector,
}

/// Cheap to clone; one per store.
#[derive(Clone)]
pub struct LockManager {
    inner: Arc<Inner>,
}

impl LockManager {
    pub fn new(cfg: PessimisticTxnConfig, meta: Arc<RwLock<StoreMeta>>) -> Self {
        // An edge must outlive the longest single wait that reported it.
        let ttl = cfg.wait_for_lock_timeout();
        LockManager {
            inner: Arc::new(Inner {
                cfg,
                waits: Mutex::default(),
                next_token: AtomicU64::new(1),
                detector: Detector::new(meta, ttl),
            }),
        }
    }

    pub fn detector(&self) -> &Detector {
        &self.inner.detector
    }

    /// How long a request asking for `wait_timeout` ms may wait: `None` for
    /// a negative value (no wait), the configured timeout for 0, else the
    /// asked time capped by the configured timeout.
    pub fn wait_timeout(&self, wait_timeout: i64) -> Option<Duration> {
        let cap = self.inner.cfg.wait_for_lock_timeout();
        match wait_timeout {
            t if t < 0 => None,
            0 => Some(cap),
            t => Some(Duration::from_millis(t as u64).min(cap)),
        }
    }

    /// Registers txn `start_ts` as waiting for the lock of txn `lock_ts` on
    /// `key` until `deadline`, and reports the edge to the detector unless
    /// `detect` is false (a txn holding no lock yet cannot be in a cycle).
    /// Call while holding the key's latch.
    pub fn register(
        &self,
        start_ts: u64,
        lock_ts: u64,
        key: &[u8],
        detect: bool,
        deadline: tokio::time::Instant,
    ) -> WaitHandle {
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let waiter = Waiter {
            token,
            start_ts,
            lock_ts,
            key: key.to_vec(),
            key_hash: key_hash(key),
            since: Instant::now(),
        };
        let entry = waiter.entry(waiter.since);
        let (tx, rx) = oneshot::channel();
        {
            let mut waits = self.inner.waits.lock();
            waits.table.add(lock_key(key), waiter);
            waits.senders.insert(token, tx);
        }
        if detect {
            if let Some(cycle) = self
                .inner
                .detector
                .submit(DeadlockRequestType::Detect, entry)
            {
                self.deadlocked(token, cycle.deadlock_key_hash, cycle.wait_chain);
            }
        }
        WaitHandle {
            lm: self.clone(),
            token,
            rx,
            deadline,
        }
    }

    /// Wakes the waiters of every lock in `released` (after it is applied).
    pub fn on_released(&self, released: &ReleasedLocks) {
        if released.is_empty() {
            return;
        }
        let (now, delayed) = {
            let mut waits = self.inner.waits.lock();
            let mut now = Vec::new();
            let mut delayed = Vec::new();
            for key in &released.keys {
                let w = waits.table.release(key);
                now.extend(w.now);
                delayed.extend(w.delayed);
            }
            for (start, end) in &released.ranges {
                let w = waits.table.release_range(start, end);
                now.extend(w.now);
                delayed.extend(w.delayed);
            }
            let now: Vec<_> = now
                .into_iter()
                .map(|w| (waits.senders.remove(&w.token), w))
                .collect();
            (now, delayed)
        };
        for (tx, waiter) in now {
            self.finish(tx, &waiter, Wake::Released);
        }
        self.wake_later(delayed);
    }

    /// Wakes `tokens` (still waiting) after the wake-up delay.
    fn wake_later(&self, tokens: Vec<Token>) {
        if tokens.is_empty() {
            return;
        }
        let delay = self.inner.cfg.wake_up_delay_duration();
        let lm = self.clone();
        let wake_all = move || {
            for token in tokens {
                lm.wake(token, Wake::Released);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if !delay.is_zero() => {
                rt.spawn(async move {
                    tokio::time::sleep(delay).await;
                    wake_all();
                });
            }
            _ => wake_all(),
        }
    }

    /// Removes waiter `token` if still there and sends it `wake`.
    fn wake(&self, token: Token, wake: Wake) {
        let found = {
            let mut waits = self.inner.waits.lock();
            let waiter = waits.table.remove(token);
            waiter.map(|w| (waits.senders.remove(&token), w))
        };
        if let Some((tx, waiter)) = found {
            self.finish(tx, &waiter, wake);
        }
    }

    /// Tells a removed waiter why it stopped; any wake but a deadlock also
    /// withdraws its edge from the detector.
    fn finish(&self, tx: Option<oneshot::Sender<Wake>>, waiter: &Waiter, wake: Wake) {
        if !matches!(wake, Wake::Deadlock(_)) {
            self.inner.detector.submit(
                DeadlockRequestType::CleanUpWaitFor,
                waiter.entry(Instant::now()),
            );
        }
        if let Some(tx) = tx {
            let _ = tx.send(wake);
        }
    }

    /// The waiter `token` closes a cycle: answer it with the deadlock.
    fn deadlocked(&self, token: Token, deadlock_key_hash: u64, mut chain: Vec<WaitForEntry>) {
        let found = {
            let mut waits = self.inner.waits.lock();
            let waiter = waits.table.remove(token);
            waiter.map(|w| (waits.senders.remove(&token), w))
        };
        let Some((tx, waiter)) = found else {
            return;
        };
        chain.push(waiter.entry(Instant::now()));
        tracing::info!(
            start_ts = waiter.start_ts,
            lock_ts = waiter.lock_ts,
            chain_len = chain.len(),
            "deadlock detected"
        );
        let err = kvrpcpb::Deadlock {
            lock_ts: waiter.lock_ts,
            lock_key: waiter.key.clone(),
            deadlock_key_hash,
            wait_chain: chain,
        };
        self.finish(tx, &waiter, Wake::Deadlock(err));
    }

    /// The detector leader found that a waiter of this store closes a cycle.
    pub fn on_deadlock(&self, resp: DeadlockResponse) {
        let entry = resp.entry.unwrap_or_default();
        let token =
            self.inner
                .waits
                .lock()
                .table
                .find(entry.txn, entry.wait_for_txn, entry.key_hash);
        if let Some(token) = token {
            self.deadlocked(token, resp.deadlock_key_hash, resp.wait_chain);
        }
    }

    /// Every waiter of this store as a wait-for edge.
    pub fn wait_for_entries(&self) -> Vec<WaitForEntry> {
        self.inner.waits.lock().table.entries(Instant::now())
    }

    /// Number of requests waiting on this store.
    pub fn waiter_count(&self) -> usize {
        self.inner.waits.lock().table.len()
    }
}

/// A registered wait; dropping it withdraws the waiter.
pub struct WaitHandle {
    lm: LockManager,
    token: Token,
    rx: oneshot::Receiver<Wake>,
    deadline: tokio::time::Instant,
}

impl WaitHandle {
    /// Waits until woken or until the deadline.
    pub async fn wait(mut self) -> Wake {
        match tokio::time::timeout_at(self.deadline, &mut self.rx).await {
            Ok(Ok(wake)) => wake,
            // The sender went without a word: only on shutdown.
            Ok(Err(_)) => Wake::TimedOut,
            Err(_) => {
                self.lm.wake(self.token, Wake::TimedOut);
                self.rx.try_recv().unwrap_or(Wake::TimedOut)
            }
        }
    }
}

impl Drop for WaitHandle {
    fn drop(&mut self) {
        // A request cancelled while waiting leaves no waiter behind.
        self.lm.wake(self.token, Wake::TimedOut);
    }
}

#[cfg(test)]
mod tests;
