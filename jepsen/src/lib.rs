//! Checkers that judge the histories the fault suite records.
//!
//! [`history`] holds the operation shapes the runner writes as JSON lines. The checkers:
//! [`elle`] (Elle's list-append dependency-graph method: version orders, ww/wr/rw edges, cycles
//! named G0, G1c, G-single, G-nonadjacent, G2-item, plus aborted, intermediate, garbage and
//! duplicate reads, lost updates; [`elle::Report::is_valid_si`] judges snapshot isolation),
//! [`porcupine`] (single-key linearizability through the Porcupine checker, a Go program under
//! `porcupine/` that the wrapper builds once into a cache outside the clone) and [`checks`]
//! (bank totals, monotonic timestamps, lost writes as plain assertions). Checkers are pure
//! functions of a history, except [`porcupine`], which runs `go`. [`results`] lays out what a
//! failing run leaves behind: histories, nemesis schedule, logs and a one-line reproducer.

pub mod checks;
pub mod elle;
pub mod error;
pub mod history;
pub mod porcupine;
pub mod results;

#[cfg(test)]
mod testdir;

pub use error::{Error, Result};
pub use history::{Mop, Outcome, RegisterF, RegisterOp, TxnOp};
