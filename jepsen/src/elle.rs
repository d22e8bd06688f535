//! Elle's list-append checker: infers transaction dependencies from observed lists and names the
//! isolation anomalies they prove (Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from
//! Experimental Observations", VLDB 2020; Adya's anomaly names).
//!
//! Because every append adds a unique value to the end of a list, one read reveals a prefix of
//! the key's version order. [`check`] works in three passes:
//! - `index`: each key's version order from its longest read (every other read must be a
//!   prefix: else `incompatible-order`), who appended each value, and the anomalies visible
//!   without a graph: `G1a` (a read sees an append of a failed transaction), `G1b` (a read ends
//!   at a non-final append of another transaction), `garbage-read` (a value nobody appended),
//!   `duplicate-elements`, `internal` (a transaction disagrees with its own earlier reads and
//!   appends) and `lost-update` (two committed transactions read the same version of a key and
//!   both appended to it).
//! - `graph`: ww, wr and rw edges between committed transactions and the indeterminate ones
//!   whose appends were observed.
//! - `cycles`: Tarjan SCCs and a short cycle per SCC, named by its edges: `G0` (ww only),
//!   `G1c` (ww and wr), `G-single` (exactly one rw: read skew), `G-nonadjacent` (several rw,
//!   never two in a row) and `G2-item` (several rw, some adjacent: write skew).
//!
//! Snapshot isolation forbids everything here except `G2-item` ([`Report::is_valid_si`]);
//! serializability forbids all of it ([`Report::is_valid_serializable`]).

mod cycles;
mod graph;
mod index;
mod search;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_paper;
#[cfg(test)]
mod tests_sim;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::history::TxnOp;

/// The kind of a dependency edge between two transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// `to` appended the value right after `from`'s in a key's version order.
    Ww,
    /// `to` read a list ending with `from`'s append.
    Wr,
    /// `from` read a version that `to` overwrote (anti-dependency).
    Rw,
}

/// One edge of a cycle, with the observation that proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Index of the source transaction in the checked history.
    pub from: usize,
    /// Index of the target transaction.
    pub to: usize,
    pub kind: EdgeKind,
    pub key: String,
    /// ww: `from`'s value; wr: the value `to` read last; rw: the last value `from` read
    /// (`None` = it read the empty list).
    pub value: Option<u64>,
    /// ww and rw: the value `to` appended next.
    pub next: Option<u64>,
}

/// A dependency cycle: `txns[i]` -> `txns[i + 1]` by `steps[i]`, and the last back to the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cycle {
    pub txns: Vec<usize>,
    pub steps: Vec<Step>,
}

/// A read that observed a value it should not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRead {
    /// Index of the reading transaction.
    pub reader: usize,
    /// Index of the transaction that appended `element`, if any did.
    pub writer: Option<usize>,
    pub key: String,
    pub element: u64,
    /// The whole list the reader saw.
    pub read: Vec<u64>,
}

/// One anomaly, with the transactions (indices into the checked history) that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Anomaly {
    /// A cycle of ww edges only.
    #[serde(rename = "G0")]
    G0(Cycle),
    /// A cycle of ww and wr edges, at least one wr.
    #[serde(rename = "G1c")]
    G1c(Cycle),
    /// A cycle with exactly one rw edge (read skew).
    #[serde(rename = "G-single")]
    GSingle(Cycle),
    /// A cycle with several rw edges, no two adjacent (forbidden under snapshot isolation).
    #[serde(rename = "G-nonadjacent")]
    GNonadjacent(Cycle),
    /// A cycle with several rw edges, some adjacent (write skew: allowed under SI).
    #[serde(rename = "G2-item")]
    G2Item(Cycle),
    /// A read saw an append of a failed transaction.
    #[serde(rename = "G1a")]
    G1a(BadRead),
    /// A read ended at an append its writer later followed with another append to that key.
    #[serde(rename = "G1b")]
    G1b(BadRead),
    /// A read saw a value nobody appended.
    #[serde(rename = "garbage-read")]
    GarbageRead(BadRead),
    /// A read saw the same value more than once.
    #[serde(rename = "duplicate-elements")]
    DuplicateElements {
        reader: usize,
        key: String,
        read: Vec<u64>,
    },
    /// A read is not a prefix of the key's longest read: no single version order explains both.
    #[serde(rename = "incompatible-order")]
    IncompatibleOrder {
        reader: usize,
        key: String,
        read: Vec<u64>,
        longest: Vec<u64>,
    },
    /// Committed transactions that read the same version of `key` and all appended to it.
    #[serde(rename = "lost-update")]
    LostUpdate {
        key: String,
        read: Vec<u64>,
        txns: Vec<usize>,
    },
    /// A transaction's read disagrees with its own earlier reads and appends of the key.
    /// `exact`: the read had to equal `expected`; otherwise it had to end with it.
    #[serde(rename = "internal")]
    Internal {
        txn: usize,
        key: String,
        read: Vec<u64>,
        expected: Vec<u64>,
        exact: bool,
    },
}

impl Anomaly {
    /// Elle's name for the anomaly.
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::G0(_) => "G0",
            Anomaly::G1c(_) => "G1c",
            Anomaly::GSingle(_) => "G-single",
            Anomaly::GNonadjacent(_) => "G-nonadjacent",
            Anomaly::G2Item(_) => "G2-item",
            Anomaly::G1a(_) => "G1a",
            Anomaly::G1b(_) => "G1b",
            Anomaly::GarbageRead(_) => "garbage-read",
            Anomaly::DuplicateElements { .. } => "duplicate-elements",
            Anomaly::IncompatibleOrder { .. } => "incompatible-order",
            Anomaly::LostUpdate { .. } => "lost-update",
            Anomaly::Internal { .. } => "internal",
        }
    }

    /// Whether snapshot isolation rules this anomaly out (all but write skew do).
    pub fn forbidden_under_si(&self) -> bool {
        !matches!(self, Anomaly::G2Item(_))
    }

    /// The cycle, for cycle anomalies.
    pub fn cycle(&self) -> Option<&Cycle> {
        match self {
            Anomaly::G0(c)
            | Anomaly::G1c(c)
            | Anomaly::GSingle(c)
            | Anomaly::GNonadjacent(c)
            | Anomaly::G2Item(c) => Some(c),
            _ => None,
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Transactions in the history.
    pub txns: usize,
    /// Transactions in the dependency graph (committed, or indeterminate and observed).
    pub graph_txns: usize,
    /// Distinct (from, to) pairs with at least one dependency edge.
    pub edges: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// No anomaly that snapshot isolation forbids (write skew, `G2-item`, is allowed).
    pub fn is_valid_si(&self) -> bool {
        self.anomalies.iter().all(|a| !a.forbidden_under_si())
    }

    /// No anomaly at all.
    pub fn is_valid_serializable(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// How many anomalies of each name were found.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for anomaly in &self.anomalies {
            *counts.entry(anomaly.name()).or_insert(0) += 1;
        }
        counts
    }

    /// The anomalies named `name`.
    pub fn named<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r Anomaly> + 'r {
        self.anomalies.iter().filter(move |a| a.name() == name)
    }
}

/// Checks a list-append history. Fails only when the history breaks the workload's contract
/// (the same value appended to a key twice).
pub fn check(history: &[TxnOp]) -> Result<Report> {
    let index = index::Index::build(history)?;
    let graph = graph::Graph::build(&index);
    let mut anomalies = index.anomalies.clone();
    anomalies.extend(cycles::find(&graph));
    Ok(Report {
        txns: history.len(),
        graph_txns: index.in_graph.iter().filter(|&&g| g).count(),
        edges: graph.edge_count(),
        anomalies,
    })
}
