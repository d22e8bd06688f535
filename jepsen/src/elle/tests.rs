//! Unit tests of the list-append checker on small hand-made histories, plus a scale test.
//!
//! Transactions are written compactly: `ax1` appends 1 to key `x`, `rx12` reads `x` as `[1, 2]`,
//! `rx` reads `x` as empty; micro-operations may be separated by spaces.

use super::*;
use crate::history::{Mop, Outcome, TxnOp};

/// Parses the compact notation into micro-operations (test helper: panics on bad notation).
pub(super) fn mops(spec: &str) -> Vec<Mop> {
    let mut out = Vec::new();
    let mut chars = spec.chars().filter(|c| !c.is_whitespace()).peekable();
    while let Some(f) = chars.next() {
        let key = chars.next().expect("a key after the function").to_string();
        let mut digits = Vec::new();
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            digits.push(u64::from(d));
            chars.next();
        }
        out.push(match f {
            'a' => Mop::append(&key, digits.iter().fold(0, |n, d| n * 10 + d)),
            'r' => Mop::read(&key, Some(digits)),
            other => panic!("unknown function {other:?} in {spec:?}"),
        });
    }
    out
}

pub(super) fn txn(outcome: Outcome, spec: &str) -> TxnOp {
    TxnOp::new(0, (0, 0), outcome, mops(spec))
}

/// A history of committed transactions.
pub(super) fn oks(specs: &[&str]) -> Vec<TxnOp> {
    specs.iter().map(|s| txn(Outcome::Ok, s)).collect()
}

pub(super) fn must_check(history: &[TxnOp]) -> Report {
    check(history).expect("history is well formed")
}

/// The names found, sorted and without repeats.
pub(super) fn names(report: &Report) -> Vec<&'static str> {
    report.counts().into_keys().collect()
}

/// The transactions of the only anomaly named `name`, sorted.
pub(super) fn only_cycle(report: &Report, name: &str) -> Vec<usize> {
    let found: Vec<_> = report.named(name).collect();
    assert_eq!(found.len(), 1, "one {name} expected in {report:#?}");
    let mut txns = found[0].cycle().expect("a cycle anomaly").txns.clone();
    txns.sort_unstable();
    txns
}

#[test]
fn serial_history_is_valid() {
    let report = must_check(&oks(&["ax1", "rx1 ay1", "rx1 ry1 ax2", "rx12 ry1"]));
    assert!(report.anomalies.is_empty(), "{report:#?}");
    assert!(report.is_valid_serializable() && report.is_valid_si());
    assert_eq!(report.graph_txns, 4);
    assert!(report.edges >= 3);
}

#[test]
fn notation_parses_appends_and_reads() {
    assert_eq!(
        mops("ax1 ry12 rz"),
        vec![
            Mop::append("x", 1),
            Mop::read("y", Some(vec![1, 2])),
            Mop::read("z", Some(vec![]))
        ]
    );
}

#[test]
fn garbage_read_is_reported() {
    let report = must_check(&oks(&["ax1", "rx19"]));
    assert_eq!(names(&report), vec!["garbage-read"]);
    assert!(!report.is_valid_si());
}

#[test]
fn internal_inconsistency_is_reported() {
    // T1 appends 3 then reads x without its own 3 at the end.
    let report = must_check(&oks(&["ax1 ax2 ax4", "ax3 rx1234"]));
    let internal: Vec<_> = report.named("internal").collect();
    assert_eq!(internal.len(), 1, "{report:#?}");
    assert!(matches!(
        internal[0],
        Anomaly::Internal {
            txn: 1,
            exact: false,
            ..
        }
    ));
    // A read that repeats an earlier read plus the transaction's own append is fine.
    assert!(must_check(&oks(&["ax1", "rx1 ax2 rx12"]))
        .anomalies
        .is_empty());
}

#[test]
fn one_transaction_appending_twice_after_its_read_is_no_lost_update() {
    let report = must_check(&oks(&["rx ax1 ax2", "rx12"]));
    assert!(report.anomalies.is_empty(), "{report:#?}");
}

#[test]
fn indeterminate_transactions_join_the_graph_only_when_observed() {
    let history = vec![
        txn(Outcome::Info, "ax2 ry"),
        txn(Outcome::Ok, "ax1 ay1"),
        txn(Outcome::Ok, "rx12 ry1"),
        txn(Outcome::Info, "az5"),
    ];
    let report = must_check(&history);
    // The info read of y means nothing; its append of 2 was observed, the append to z was not.
    assert!(report.anomalies.is_empty(), "{report:#?}");
    assert_eq!(report.graph_txns, 3);
}

#[test]
fn observed_indeterminate_transaction_takes_part_in_cycles() {
    let history = vec![
        txn(Outcome::Info, "ax1 ay1"),
        txn(Outcome::Ok, "ax2 ay2"),
        txn(Outcome::Ok, "rx12 ry21"),
    ];
    let report = must_check(&history);
    assert_eq!(only_cycle(&report, "G0"), vec![0, 1]);
}

#[test]
fn reappended_value_is_refused_as_bad_input() {
    let err = check(&oks(&["ax1", "ay2 ax1"])).unwrap_err().to_string();
    assert!(err.contains("value 1 appended to key \"x\" twice"), "{err}");
}

#[test]
fn write_skew_is_g2_item_and_still_valid_si() {
    // Each reads the key the other appends to, and neither sees the other.
    let report = must_check(&oks(&["ax1 ry", "ay1 rx"]));
    assert_eq!(names(&report), vec!["G2-item"]);
    assert_eq!(only_cycle(&report, "G2-item"), vec![0, 1]);
    assert!(report.is_valid_si());
    assert!(!report.is_valid_serializable());
}

#[test]
fn cycle_steps_carry_their_evidence() {
    let report = must_check(&oks(&["ax1 ay1", "ax2 ry", "rx12"]));
    let cycle = report
        .named("G-single")
        .next()
        .and_then(Anomaly::cycle)
        .expect("G-single");
    let rw = cycle
        .steps
        .iter()
        .find(|s| s.kind == EdgeKind::Rw)
        .expect("one rw step");
    assert_eq!(
        (rw.from, rw.to, rw.key.as_str(), rw.value, rw.next),
        (1, 0, "y", None, Some(1))
    );
    let ww = cycle
        .steps
        .iter()
        .find(|s| s.kind == EdgeKind::Ww)
        .expect("one ww step");
    assert_eq!(
        (ww.from, ww.to, ww.key.as_str(), ww.value, ww.next),
        (0, 1, "x", Some(1), Some(2))
    );
    let json = serde_json::to_value(&report.anomalies[0]).unwrap();
    assert_eq!(json["type"], "G-single");
}

/// A serial in-memory list store run by a deterministic generator: every read is exact.
fn serial_history(txns: usize, keys: u64) -> Vec<TxnOp> {
    let mut state: Vec<Vec<u64>> = vec![Vec::new(); keys as usize];
    let mut next_value = vec![0u64; keys as usize];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut history = Vec::with_capacity(txns);
    for i in 0..txns as u64 {
        let mut mops = Vec::new();
        for _ in 0..1 + rand(4) {
            let k = rand(keys) as usize;
            let key = format!("k{k}");
            if rand(2) == 0 {
                mops.push(Mop::read(&key, Some(state[k].clone())));
            } else {
                next_value[k] += 1;
                state[k].push(next_value[k]);
                mops.push(Mop::append(&key, next_value[k]));
            }
        }
        history.push(TxnOp::new(i % 8, (2 * i, 2 * i + 1), Outcome::Ok, mops));
    }
    history
}

#[test]
fn twenty_thousand_serial_transactions_check_clean() {
    let history = serial_history(20_000, 40);
    let report = must_check(&history);
    assert!(report.anomalies.is_empty(), "{:?}", report.counts());
    assert_eq!(report.graph_txns, 20_000);
    assert!(
        report.edges > 20_000,
        "a dense graph was built: {} edges",
        report.edges
    );
}

#[test]
fn one_stale_read_among_twenty_thousand_transactions_is_found() {
    let mut history = serial_history(20_000, 40);
    let mut k0: Vec<u64> = history
        .iter()
        .flat_map(|t| &t.mops)
        .filter_map(|m| match m {
            Mop::Append { key, value } if key == "k0" => Some(*value),
            _ => None,
        })
        .collect();
    // A late transaction reads k0 as it was at the start and appends after everyone: read skew.
    let stale = vec![Mop::read("k0", Some(vec![])), Mop::append("k0", 1_000_000)];
    history.push(TxnOp::new(9, (0, 1), Outcome::Ok, stale));
    k0.push(1_000_000);
    history.push(TxnOp::new(
        9,
        (2, 3),
        Outcome::Ok,
        vec![Mop::read("k0", Some(k0))],
    ));
    let report = must_check(&history);
    assert!(!report.is_valid_si(), "{:?}", report.counts());
    assert_eq!(report.named("G-single").count(), 1, "{:?}", report.counts());
}
