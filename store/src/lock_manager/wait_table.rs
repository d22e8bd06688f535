//! [`WaitTable`]: which pessimistic lock requests wait for which lock, and
//! who is woken when a lock goes.
//!
//! Pure state, no clock and no channels: the caller passes time in and acts
//! on what comes out. Waiters are keyed by the engine key of the lock they
//! wait for (`mvcc::codec::lock_key`), which sorts as the lock column family
//! does, so a range deletion of locks finds its waiters with one range walk.
//! Within a key, waiters are ordered by `start_ts` (then arrival), as TiKV
//! orders its queues: when the lock goes, the oldest transaction is woken at
//! once and the others are told to follow after the wake-up delay (so the
//! oldest gets a head start instead of a thundering herd).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::Instant;

use proto::deadlock::WaitForEntry;

/// Identifies one registered waiter.
pub type Token = u64;

/// One pessimistic lock request waiting for a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub token: Token,
    /// start_ts of the waiting transaction.
    pub start_ts: u64,
    /// start_ts of the transaction holding the lock.
    pub lock_ts: u64,
    /// The user key the waiter tries to lock.
    pub key: Vec<u8>,
    pub key_hash: u64,
    /// When it started waiting.
    pub since: Instant,
}

impl Waiter {
    /// The waiter as an edge of the wait-for graph.
    pub fn entry(&self, now: Instant) -> WaitForEntry {
        WaitForEntry {
            txn: self.start_ts,
            wait_for_txn: self.lock_ts,
            key_hash: self.key_hash,
            key: self.key.clone(),
            resource_group_tag: Vec::new(),
            wait_time: now.saturating_duration_since(self.since).as_millis() as u64,
        }
    }
}

/// Who a lock release wakes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// Woken now and gone from the table: the oldest waiter of each key.
    pub now: Vec<Waiter>,
    /// Still in the table; to be woken after the wake-up delay unless
    /// something else removes them first.
    pub delayed: Vec<Token>,
}

#[derive(Debug, Default)]
pub struct WaitTable {
    /// Lock engine key -> waiters ordered by (start_ts, token).
    queues: BTreeMap<Vec<u8>, BTreeMap<(u64, Token), Waiter>>,
    /// Token -> (lock engine key, start_ts), to find a waiter's queue.
    index: HashMap<Token, (Vec<u8>, u64)>,
}

impl WaitTable {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Registers `waiter` on the lock whose engine key is `lock_key`.
    pub fn add(&mut self, lock_key: Vec<u8>, waiter: Waiter) {
        self.index
            .insert(waiter.token, (lock_key.clone(), waiter.start_ts));
        self.queues
            .entry(lock_key)
            .or_default()
            .insert((waiter.start_ts, waiter.token), waiter);
    }

    /// Removes a waiter (woken, timed out, deadlocked or cancelled); `None`
    /// if it is already gone.
    pub fn remove(&mut self, token: Token) -> Option<Waiter> {
        let (lock_key, start_ts) = self.index.remove(&token)?;
        let queue = self.queues.get_mut(&lock_key)?;
        let waiter = queue.remove(&(start_ts, token));
        if queue.is_empty() {
            self.queues.remove(&lock_key);
        }
        waiter
    }

    /// The waiter of txn `start_ts` for the lock of txn `lock_ts` on the key
    /// hashed `key_hash`, as a deadlock answer names it.
    pub fn find(&self, start_ts: u64, lock_ts: u64, key_hash: u64) -> Option<Token> {
        self.queues
            .values()
            .flat_map(|q| q.values())
            .find(|w| w.start_ts == start_ts && w.lock_ts == lock_ts && w.key_hash == key_hash)
            .map(|w| w.token)
    }

    /// The lock at `lock_key` is gone.
    pub fn release(&mut self, lock_key: &[u8]) -> Wakeups {
        let mut out = Wakeups::default();
        self.wake_queue(lock_key, &mut out);
        out
    }

    /// Every lock in `[start, end)` is gone (an empty `end` is unbounded).
    pub fn release_range(&mut self, start: &[u8], end: &[u8]) -> Wakeups {
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let keys: Vec<Vec<u8>> = self
            .queues
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Wakeups::default();
        for key in keys {
            self.wake_queue(&key, &mut out);
        }
        out
    }

    fn wake_queue(&mut self, lock_key: &[u8], out: &mut Wakeups) {
        let Some(queue) = self.queues.get(lock_key) else {
            return;
        };
        let Some(first) = queue.values().next().map(|w| w.token) else {
            return;
        };
        out.delayed.extend(queue.values().skip(1).map(|w| w.token));
        if let Some(w) = self.remove(first) {
            out.now.push(w);
        }
    }

    /// Every waiter as a wait-for edge (`GetWaitForEntries`).
    pub fn entries(&self, now: Instant) -> Vec<WaitForEntry> {
        self.queues
            .values()
            .flat_map(|q| q.values())
            .map(|w| w.entry(now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(token: Token, start_ts: u64, lock_ts: u64, key: &[u8]) -> Waiter {
        Waiter {
            token,
            start_ts,
            lock_ts,
            key: key.to_vec(),
            key_hash: u64::from(key[0]),
            since: Instant::now(),
        }
    }

    fn tokens(ws: &[Waiter]) -> Vec<Token> {
        ws.iter().map(|w| w.token).collect()
    }

    #[test]
    fn release_wakes_the_oldest_txn_now_and_the_rest_later() {
        let mut t = WaitTable::default();
        // Arrival order 1, 2, 3, but txn 5 is the oldest.
        t.add(b"lk".to_vec(), waiter(1, 30, 1, b"k"));
        t.add(b"lk".to_vec(), waiter(2, 5, 1, b"k"));
        t.add(b"lk".to_vec(), waiter(3, 20, 1, b"k"));
        t.add(b"other".to_vec(), waiter(4, 1, 2, b"o"));
        let w = t.release(b"lk");
        assert_eq!(tokens(&w.now), vec![2]);
        assert_eq!(w.delayed, vec![3, 1], "by start_ts");
        assert_eq!(t.len(), 3, "delayed waiters stay until woken");
        // A second release of the same key wakes the next oldest.
        assert_eq!(tokens(&t.release(b"lk").now), vec![3]);
        assert_eq!(t.remove(1).map(|w| w.start_ts), Some(30));
        assert_eq!(t.remove(1), None, "removal is idempotent");
        assert_eq!(t.release(b"lk"), Wakeups::default());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn range_release_wakes_every_key_inside_only() {
        let mut t = WaitTable::default();
        for (token, key) in [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")] {
            t.add(key.to_vec(), waiter(token, 10 + token, 1, key));
        }
        t.add(b"b".to_vec(), waiter(5, 100, 1, b"b"));
        let w = t.release_range(b"b", b"d");
        assert_eq!(tokens(&w.now), vec![2, 3]);
        assert_eq!(w.delayed, vec![5]);
        let w = t.release_range(b"c", b"");
        assert_eq!(tokens(&w.now), vec![4], "empty end is unbounded");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn find_matches_txn_lock_and_key_and_entries_list_edges() {
        let mut t = WaitTable::default();
        t.add(b"lx".to_vec(), waiter(1, 10, 20, b"x"));
        t.add(b"ly".to_vec(), waiter(2, 10, 30, b"y"));
        assert_eq!(t.find(10, 30, u64::from(b'y')), Some(2));
        assert_eq!(t.find(10, 20, u64::from(b'y')), None);
        let mut entries = t.entries(Instant::now());
        entries.sort_by_key(|e| e.wait_for_txn);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.txn, e.wait_for_txn, e.key.clone()))
                .collect::<Vec<_>>(),
            vec![(10, 20, b"x".to_vec()), (10, 30, b"y".to_vec())]
        );
        assert!(!t.is_empty());
    }
}
