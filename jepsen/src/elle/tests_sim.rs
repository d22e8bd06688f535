//! The checker against simulated databases: a snapshot-isolation store (snapshot reads,
//! first-committer-wins) must never be flagged as violating SI, while a read-committed store
//! (every read sees the latest commit) must be. Both run many interleaved transactions from a
//! fixed seed, so the histories are the same on every run.

use super::tests::must_check;
use crate::history::{Mop, Outcome, TxnOp};

/// xorshift64: a deterministic generator for the simulations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An open transaction: its snapshot, the micro-operations still to run and those done.
struct Open {
    start: u64,
    todo: Vec<(bool, usize)>,
    done: Vec<Mop>,
    appended: Vec<usize>,
}

/// A list store: per key, its values with the commit timestamp of each.
struct Store {
    keys: Vec<Vec<(u64, u64)>>,
    clock: u64,
    next_value: u64,
    snapshot_reads: bool,
}

impl Store {
    fn read(&self, open: &Open, key: usize) -> Vec<u64> {
        let horizon = if self.snapshot_reads {
            open.start
        } else {
            u64::MAX
        };
        let mut list: Vec<u64> = self.keys[key]
            .iter()
            .filter(|(ts, _)| *ts <= horizon)
            .map(|&(_, v)| v)
            .collect();
        for mop in &open.done {
            if let Mop::Append { key: k, value } = mop {
                if *k == format!("k{key}") {
                    list.push(*value);
                }
            }
        }
        list
    }

    /// Commits unless another transaction committed to one of its keys after its snapshot.
    fn commit(&mut self, open: &Open) -> Outcome {
        let conflict = open
            .appended
            .iter()
            .any(|&k| self.keys[k].iter().any(|(ts, _)| *ts > open.start));
        if conflict {
            return Outcome::Fail;
        }
        self.clock += 1;
        for mop in &open.done {
            if let Mop::Append { key, value } = mop {
                let k: usize = key[1..].parse().expect("key of the form k<n>");
                self.keys[k].push((self.clock, *value));
            }
        }
        Outcome::Ok
    }

    fn step(&mut self, open: &mut Open, (append, key): (bool, usize)) {
        let name = format!("k{key}");
        if append {
            self.next_value += 1;
            open.done.push(Mop::append(&name, self.next_value));
            open.appended.push(key);
        } else {
            let list = self.read(open, key);
            open.done.push(Mop::read(&name, Some(list)));
        }
    }
}

/// Runs `txns` transactions, up to 6 at once, over `keys` keys.
fn simulate(txns: usize, keys: usize, snapshot_reads: bool) -> Vec<TxnOp> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut store = Store {
        keys: vec![Vec::new(); keys],
        clock: 0,
        next_value: 0,
        snapshot_reads,
    };
    let mut open: Vec<Open> = Vec::new();
    let mut history = Vec::new();
    let mut started = 0;
    while started < txns || !open.is_empty() {
        if started < txns && (open.len() < 6 && rng.below(3) == 0 || open.is_empty()) {
            let n = 1 + rng.below(4) as usize;
            let todo = (0..n)
                .map(|_| (rng.below(2) == 0, rng.below(keys as u64) as usize))
                .collect();
            open.push(Open {
                start: store.clock,
                todo,
                done: Vec::new(),
                appended: Vec::new(),
            });
            started += 1;
            continue;
        }
        let i = rng.below(open.len() as u64) as usize;
        if open[i].todo.is_empty() {
            let txn = open.swap_remove(i);
            let outcome = store.commit(&txn);
            history.push(TxnOp::new(i as u64, (0, 0), outcome, txn.done));
        } else {
            let next = open[i].todo.remove(0);
            store.step(&mut open[i], next);
        }
    }
    history
}

#[test]
fn snapshot_isolation_store_is_valid_si() {
    let history = simulate(5_000, 6, true);
    let committed = history.iter().filter(|t| t.outcome == Outcome::Ok).count();
    assert!(
        committed > 2_000,
        "enough committed transactions: {committed}"
    );
    let report = must_check(&history);
    assert!(report.is_valid_si(), "{:?}", report.counts());
    // Write skew is what SI lets through; a store this concurrent shows it.
    assert!(report.named("G2-item").count() > 0, "{:?}", report.counts());
}

#[test]
fn read_committed_store_violates_si() {
    let report = must_check(&simulate(5_000, 6, false));
    assert!(!report.is_valid_si(), "{:?}", report.counts());
    assert!(
        report.named("G-single").count() > 0,
        "{:?}",
        report.counts()
    );
}
