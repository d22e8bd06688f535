//! The known anomaly histories of the Elle paper (Kingsbury & Alvaro, VLDB 2020) and of the
//! Elle project's own examples, transcribed into our history shape: each must be found and
//! named as Elle names it. Notation as in `tests.rs` (`ax1` append, `rx12` read).

use super::tests::{must_check, names, oks, only_cycle, txn};
use super::*;
use crate::history::{Mop, Outcome, TxnOp};

/// The paper's worked example: T4 reads key 255 without T2's append of 8, T3 reads it with
/// the 8, and T4 appends 3 to key 256 after T3's 4 (nobody read the 3, so it comes last).
/// T2 -wr-> T3 -ww-> T4 -rw-> T2: one anti-dependency, read skew.
#[test]
fn paper_example_is_g_single() {
    let a = |k: &str, v| Mop::append(k, v);
    let r = |k: &str, v: &[u64]| Mop::read(k, Some(v.to_vec()));
    let t1 = vec![
        a("253", 1),
        a("253", 3),
        a("253", 4),
        a("255", 2),
        a("255", 3),
        a("255", 4),
        a("255", 5),
        a("256", 1),
        a("256", 2),
    ];
    let t2 = vec![a("255", 8), r("253", &[1, 3, 4])];
    let t3 = vec![
        a("256", 4),
        r("255", &[2, 3, 4, 5, 8]),
        r("256", &[1, 2, 4]),
        r("253", &[1, 3, 4]),
    ];
    let t4 = vec![
        a("250", 10),
        r("253", &[1, 3, 4]),
        r("255", &[2, 3, 4, 5]),
        a("256", 3),
    ];
    let history: Vec<TxnOp> = [t1, t2, t3, t4]
        .into_iter()
        .map(|m| TxnOp::new(0, (0, 0), Outcome::Ok, m))
        .collect();
    let report = must_check(&history);
    assert_eq!(names(&report), vec!["G-single"], "{report:#?}");
    assert_eq!(only_cycle(&report, "G-single"), vec![1, 2, 3]);
    assert!(!report.is_valid_si());
}

/// G0, write cycle: x shows T1 before T2, y shows T2 before T1.
#[test]
fn g0_write_cycle() {
    let report = must_check(&oks(&["ax1 ay1", "ax2 ay2", "rx12 ry21"]));
    assert_eq!(only_cycle(&report, "G0"), vec![0, 1]);
    let g0 = report
        .named("G0")
        .next()
        .and_then(Anomaly::cycle)
        .expect("G0");
    assert!(g0.steps.iter().all(|s| s.kind == EdgeKind::Ww));
    assert!(!report.is_valid_si());
}

/// G1a, aborted read: a committed read sees the append of a failed transaction.
#[test]
fn g1a_aborted_read() {
    let history = vec![txn(Outcome::Fail, "ax1"), txn(Outcome::Ok, "rx1")];
    let report = must_check(&history);
    assert_eq!(names(&report), vec!["G1a"]);
    let Some(Anomaly::G1a(bad)) = report.anomalies.first() else {
        panic!("G1a expected: {report:#?}");
    };
    assert_eq!((bad.reader, bad.writer, bad.element), (1, Some(0), 1));
    assert!(!report.is_valid_si());
}

/// G1b, intermediate read: T2 sees T1's 1 but not the 2 T1 appended after it. Elle also finds
/// the G-single this implies (T2 -rw-> T1 -wr-> T2).
#[test]
fn g1b_intermediate_read() {
    let report = must_check(&oks(&["ax1 ax2", "rx1"]));
    assert_eq!(names(&report), vec!["G-single", "G1b"]);
    let Some(Anomaly::G1b(bad)) = report.named("G1b").next() else {
        panic!("G1b expected: {report:#?}");
    };
    assert_eq!((bad.reader, bad.writer, bad.element), (1, Some(0), 1));
}

/// G1c, circular information flow: T1 reads T2's y, T2 appends x after T1.
#[test]
fn g1c_circular_information_flow() {
    let report = must_check(&oks(&["ax1 ry1", "ax2 ay1", "rx12 ry1"]));
    assert_eq!(names(&report), vec!["G1c"]);
    assert_eq!(only_cycle(&report, "G1c"), vec![0, 1]);
    assert!(!report.is_valid_si());
}

/// G-single, read skew: T2 misses T1's y but appends x after T1.
#[test]
fn g_single_read_skew() {
    let report = must_check(&oks(&["ax1 ay1", "ax2 ry", "rx12"]));
    assert_eq!(names(&report), vec!["G-single"]);
    assert_eq!(only_cycle(&report, "G-single"), vec![0, 1]);
    assert!(!report.is_valid_si());
}

/// G2-item: a pure anti-dependency cycle, allowed under snapshot isolation.
#[test]
fn g2_item_anti_dependency_cycle() {
    let report = must_check(&oks(&["ax1 ry", "ay1 rx"]));
    assert_eq!(names(&report), vec!["G2-item"]);
    assert!(report.is_valid_si());
}

/// G-nonadjacent: rw, wr, rw, wr around four transactions; SI forbids it.
#[test]
fn g_nonadjacent_is_an_si_violation() {
    let report = must_check(&oks(&["ax1", "rx1 ry", "ay1", "ry1 rx"]));
    assert_eq!(names(&report), vec!["G-nonadjacent"], "{report:#?}");
    assert_eq!(only_cycle(&report, "G-nonadjacent"), vec![0, 1, 2, 3]);
    assert!(!report.is_valid_si());
}

/// The same SCC holds write skews (T0 and T1 miss each other's appends; T0 -rw-> T1 -rw-> T4
/// -wr-> T0) and a longer G-nonadjacent cycle T0 -rw-> T1 -wr-> T2 -rw-> T3 -wr-> T0: the SI
/// violation must be the one found.
#[test]
fn g_nonadjacent_is_found_beside_shorter_write_skews() {
    let history = oks(&[
        "ax1 ry rv1 rt1",
        "ay1 az1 rx ru",
        "rz1 rw",
        "aw1 av1",
        "au1 at1",
    ]);
    let report = must_check(&history);
    assert_eq!(names(&report), vec!["G-nonadjacent"], "{report:#?}");
    assert_eq!(only_cycle(&report, "G-nonadjacent"), vec![0, 1, 2, 3]);
    assert!(!report.is_valid_si());
}

/// rw rw wr rw wr around five transactions: two rw edges are adjacent, so SI allows it.
#[test]
fn adjacent_anti_dependencies_stay_valid_si() {
    let report = must_check(&oks(&["rv rz1", "av1 rw", "aw1 ax1", "rx1 ry", "ay1 az1"]));
    assert_eq!(names(&report), vec!["G2-item"], "{report:#?}");
    assert_eq!(only_cycle(&report, "G2-item"), vec![0, 1, 2, 3, 4]);
    assert!(report.is_valid_si());
}

/// Lost update: T1 and T2 both read x = [0] and both append to it.
#[test]
fn lost_update() {
    let report = must_check(&oks(&["ax0", "rx0 ax1", "rx0 ax2"]));
    let lost: Vec<_> = report.named("lost-update").collect();
    assert_eq!(lost.len(), 1, "{report:#?}");
    assert!(
        matches!(lost[0], Anomaly::LostUpdate { txns, read, .. } if txns == &[1, 2] && read == &[0])
    );
    assert_eq!(names(&report), vec!["G2-item", "lost-update"]);
    assert!(!report.is_valid_si());
}

/// Duplicate elements: x = [1 2 1]; the history also holds a G1c.
#[test]
fn duplicate_elements() {
    let report = must_check(&oks(&["ax1 ry1", "ax2 ay1", "rx121"]));
    assert!(
        names(&report).contains(&"duplicate-elements"),
        "{report:#?}"
    );
    assert!(names(&report).contains(&"G1c"), "{report:#?}");
}

/// Incompatible orders: x read as [1 3] and as [1 2 3]; the longest order still yields G1c.
#[test]
fn incompatible_order() {
    let report = must_check(&oks(&["ax1 ry1", "ax2", "ax3 ay1", "rx13", "rx123"]));
    assert_eq!(
        names(&report),
        vec!["G1c", "incompatible-order"],
        "{report:#?}"
    );
    assert!(matches!(
        report.named("incompatible-order").next(),
        Some(Anomaly::IncompatibleOrder { reader: 3, read, longest, .. }) if read == &[1, 3] && longest == &[1, 2, 3]
    ));
    assert_eq!(only_cycle(&report, "G1c"), vec![0, 1, 2]);
}

/// Unobserved appends come after everything read: y = [2] puts T1's and T3's y-appends after
/// T2's, giving G0 (x says T1 < T2) and a G-single through the y reader.
#[test]
fn unobserved_appends_order_after_the_longest_read() {
    let report = must_check(&oks(&["ax1 ay1", "ax2 ay2", "ax3 ay3", "rx12", "ry2"]));
    assert_eq!(names(&report), vec!["G-single", "G0"], "{report:#?}");
    assert_eq!(only_cycle(&report, "G0"), vec![0, 1]);
    assert_eq!(only_cycle(&report, "G-single"), vec![0, 1, 4]);
}
