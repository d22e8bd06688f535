//! [`DetectTable`]: the wait-for graph the detector leader keeps for the
//! whole cluster, and the cycle search that finds deadlocks in it.
//!
//! Pure state, time passed in. A vertex is a transaction (its start_ts); an
//! edge `txn -> holder` says `txn` waits for a lock `holder` holds, with the
//! keys it waits on. An edge lives `ttl` after it was last reported (a store
//! that lost a clean-up message cannot leave it forever). A new edge that
//! would close a cycle is refused and reported as the [`Cycle`]; otherwise it
//! is added.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::deadlock::WaitForEntry;

/// Past this many waiting transactions, every detection first drops all
/// expired edges, not only those it walks.
const FULL_EXPIRY_THRESHOLD: usize = 100_000;

#[derive(Debug)]
struct Edge {
    /// (hash, key) of each lock waited for; the first is the oldest.
    keys: Vec<(u64, Vec<u8>)>,
    last_reported: Instant,
}

impl Edge {
    fn entry(&self, txn: u64, holder: u64) -> WaitForEntry {
        let (key_hash, key) = self.keys.first().cloned().unwrap_or_default();
        WaitForEntry {
            txn,
            wait_for_txn: holder,
            key_hash,
            key,
            ..Default::default()
        }
    }
}

/// A deadlock: the requested edge would close this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// A key locked by the requesting txn that the cycle waits for.
    pub deadlock_key: Vec<u8>,
    pub deadlock_key_hash: u64,
    /// The cycle's existing edges, from the holder of the requested lock
    /// around to the requesting txn (the requested edge is not included).
    pub wait_chain: Vec<WaitForEntry>,
}

#[derive(Debug)]
pub struct DetectTable {
    /// txn -> holder -> edge.
    edges: HashMap<u64, HashMap<u64, Edge>>,
    ttl: Duration,
}

impl DetectTable {
    pub fn new(ttl: Duration) -> Self {
        DetectTable {
            edges: HashMap::new(),
            ttl,
        }
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges.values().map(HashMap::len).sum()
    }

    /// Adds the edge `entry.txn -> entry.wait_for_txn`, or reports the cycle
    /// it would close (and then leaves the graph as it was).
    pub fn detect(&mut self, entry: &WaitForEntry, now: Instant) -> Option<Cycle> {
        if self.edges.len() > FULL_EXPIRY_THRESHOLD {
            self.expire_all(now);
        }
        let (txn, holder) = (entry.txn, entry.wait_for_txn);
        let existing = self.edges.get_mut(&txn).and_then(|m| m.get_mut(&holder));
        if let Some(edge) = existing {
            // Already waiting for this txn: no new cycle can form.
            if !edge.keys.iter().any(|(h, _)| *h == entry.key_hash) {
                edge.keys.push((entry.key_hash, entry.key.clone()));
            }
            edge.last_reported = now;
            return None;
        }
        if let Some(cycle) = self.find_path_back(txn, holder, now) {
            return Some(cycle);
        }
        let edge = Edge {
            keys: vec![(entry.key_hash, entry.key.clone())],
            last_reported: now,
        };
        self.edges.entry(txn).or_default().insert(holder, edge);
        None
    }

    /// Depth-first from `holder`, looking for an edge into `txn`.
    fn find_path_back(&mut self, txn: u64, holder: u64, now: Instant) -> Option<Cycle> {
        let mut parent: HashMap<u64, u64> = HashMap::from([(holder, holder)]);
        let mut stack = vec![holder];
        while let Some(cur) = stack.pop() {
            self.expire_from(cur, now);
            let Some(out) = self.edges.get(&cur) else {
                continue;
            };
            if let Some(closing) = out.get(&txn) {
                let (deadlock_key_hash, deadlock_key) =
                    closing.keys.first().cloned().unwrap_or_default();
                let mut wait_chain = self.path(&parent, holder, cur);
                wait_chain.push(closing.entry(cur, txn));
                return Some(Cycle {
                    deadlock_key,
                    deadlock_key_hash,
                    wait_chain,
                });
            }
            let mut next: Vec<u64> = out.keys().copied().collect();
            next.sort_unstable();
            for n in next {
                if let std::collections::hash_map::Entry::Vacant(v) = parent.entry(n) {
                    v.insert(cur);
                    stack.push(n);
                }
            }
        }
        None
    }

    /// The edges of the walked path `from -> ... -> to`.
    fn path(&self, parent: &HashMap<u64, u64>, from: u64, to: u64) -> Vec<WaitForEntry> {
        let mut vertices = vec![to];
        let mut cur = to;
        while cur != from {
            match parent.get(&cur) {
                Some(&p) => cur = p,
                None => break,
            }
            vertices.push(cur);
        }
        vertices.reverse();
        vertices
            .windows(2)
            .filter_map(|pair| {
                let edge = self.edges.get(&pair[0])?.get(&pair[1])?;
                Some(edge.entry(pair[0], pair[1]))
            })
            .collect()
    }

    fn expire_from(&mut self, txn: u64, now: Instant) {
        let ttl = self.ttl;
        if let Some(out) = self.edges.get_mut(&txn) {
            out.retain(|_, e| now.saturating_duration_since(e.last_reported) < ttl);
            if out.is_empty() {
                self.edges.remove(&txn);
            }
        }
    }

    fn expire_all(&mut self, now: Instant) {
        let txns: Vec<u64> = self.edges.keys().copied().collect();
        for txn in txns {
            self.expire_from(txn, now);
        }
    }

    /// `txn` no longer waits for `holder` on the key hashed `key_hash`.
    pub fn clean_up_wait_for(&mut self, txn: u64, holder: u64, key_hash: u64) {
        let Some(out) = self.edges.get_mut(&txn) else {
            return;
        };
        if let Some(edge) = out.get_mut(&holder) {
            edge.keys.retain(|(h, _)| *h != key_hash);
            if edge.keys.is_empty() {
                out.remove(&holder);
            }
        }
        if out.is_empty() {
            self.edges.remove(&txn);
        }
    }

    /// `txn` waits for nothing any more.
    pub fn clean_up(&mut self, txn: u64) {
        self.edges.remove(&txn);
    }

    pub fn clear(&mut self) {
        self.edges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(txn: u64, holder: u64, key: &str) -> WaitForEntry {
        WaitForEntry {
            txn,
            wait_for_txn: holder,
            key_hash: u64::from(key.as_bytes()[0]),
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn chain(c: &Cycle) -> Vec<(u64, u64, String)> {
        c.wait_chain
            .iter()
            .map(|w| {
                (
                    w.txn,
                    w.wait_for_txn,
                    String::from_utf8_lossy(&w.key).into(),
                )
            })
            .collect()
    }

    const TTL: Duration = Duration::from_secs(3);

    #[test]
    fn two_txns_in_opposite_order_deadlock_and_the_chain_names_the_cycle() {
        let mut t = DetectTable::new(TTL);
        let now = Instant::now();
        // 1 waits for 2 on k2; then 2 asks to wait for 1 on k1.
        assert_eq!(t.detect(&e(1, 2, "k2"), now), None);
        let c = t.detect(&e(2, 1, "k1"), now).expect("deadlock");
        assert_eq!(c.deadlock_key, b"k2", "held by 2, waited for by 1");
        assert_eq!(c.deadlock_key_hash, u64::from(b'k'));
        assert_eq!(chain(&c), vec![(1, 2, "k2".into())]);
        assert_eq!(t.edge_count(), 1, "the refused edge is not added");
    }

    #[test]
    fn longer_cycle_chain_runs_from_the_holder_back_to_the_requester() {
        let mut t = DetectTable::new(TTL);
        let now = Instant::now();
        assert_eq!(t.detect(&e(20, 30, "b"), now), None);
        assert_eq!(t.detect(&e(30, 40, "c"), now), None);
        assert_eq!(t.detect(&e(99, 40, "z"), now), None, "a side branch");
        assert_eq!(t.detect(&e(40, 10, "a"), now), None);
        let c = t.detect(&e(10, 20, "x"), now).expect("cycle 10-20-30-40");
        assert_eq!(
            chain(&c),
            vec![
                (20, 30, "b".into()),
                (30, 40, "c".into()),
                (40, 10, "a".into())
            ]
        );
        assert_eq!(c.deadlock_key, b"a");
        // The refused edge was not added: 10 waits for nobody, so waiting
        // for the side branch (99 -> 40 -> 10) closes nothing.
        assert_eq!(t.detect(&e(50, 99, "y"), now), None);
        // But 10 waiting for 99 would: 10 -> 99 -> 40 -> 10.
        let c = t.detect(&e(10, 99, "y"), now).expect("cycle 10-99-40");
        assert_eq!(chain(&c), vec![(99, 40, "z".into()), (40, 10, "a".into())]);
    }

    #[test]
    fn repeated_edge_is_no_new_cycle_and_clean_ups_remove_edges() {
        let mut t = DetectTable::new(TTL);
        let now = Instant::now();
        assert_eq!(t.detect(&e(1, 2, "a"), now), None);
        assert_eq!(t.detect(&e(1, 2, "b"), now), None);
        assert_eq!(t.edge_count(), 1);
        t.clean_up_wait_for(1, 2, u64::from(b'a'));
        assert!(t.detect(&e(2, 1, "c"), now).is_some(), "still waits on b");
        t.clean_up_wait_for(1, 2, u64::from(b'b'));
        assert_eq!(t.edge_count(), 0);
        assert_eq!(t.detect(&e(2, 1, "c"), now), None);
        t.clean_up(2);
        assert_eq!(t.detect(&e(1, 2, "a"), now), None);
        t.clear();
        assert_eq!(t.edge_count(), 0);
    }

    #[test]
    fn expired_edges_close_no_cycle() {
        let mut t = DetectTable::new(TTL);
        let start = Instant::now();
        assert_eq!(t.detect(&e(1, 2, "a"), start), None);
        let later = start + TTL;
        assert_eq!(t.detect(&e(2, 1, "b"), later), None, "1 -> 2 expired");
        assert_eq!(t.edge_count(), 1);
        // Reporting an edge again keeps it alive.
        let later2 = later + TTL / 2;
        assert_eq!(t.detect(&e(2, 1, "b"), later2), None);
        assert!(t
            .detect(&e(1, 2, "a"), later + TTL - Duration::from_millis(1))
            .is_some());
    }
}
