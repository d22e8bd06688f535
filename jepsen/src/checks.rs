//! Plain checks of the simpler workloads, each a pure function from a history to a report
//! listing every violation (empty = valid):
//! - [`bank`]: every snapshot read of the accounts sums to the constant total and shows no
//!   negative balance.
//! - [`monotonic`]: timestamps (TSO answers, commit timestamps) never go back, per process and
//!   across processes in real time (an operation that starts after another completed must not
//!   see a smaller timestamp).
//! - [`lost`]: every acknowledged write (or append) is present in the final read.

pub mod bank;
pub mod lost;
pub mod monotonic;

pub use bank::{check_bank, BankRead, BankReport, BankViolation};
pub use lost::{
    acknowledged_writes, check_lost_appends, check_lost_writes, LostAppend, LostWrite,
    LostWritesReport,
};
pub use monotonic::{check_monotonic, MonotonicReport, MonotonicViolation, Monotonicity, TsRead};
