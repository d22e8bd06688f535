//! The lost-write check: every write the cluster acknowledged must be in the final read, taken
//! after the faults healed.
//! - [`check_lost_writes`] for write-once keys (each acknowledged write puts its own key): the
//!   final read must hold exactly the acknowledged value.
//! - [`check_lost_appends`] for list-append histories: every value a committed transaction
//!   appended must be in the final read of its key.
//!
//! Indeterminate writes may or may not be there; only acknowledged ones are required.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::history::{Mop, Outcome, RegisterF, RegisterOp, TxnOp};

/// An acknowledged write missing from the final read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    pub key: String,
    pub value: String,
    /// What the final read had under the key instead (`None` = nothing).
    pub found: Option<String>,
}

/// A committed append missing from the final read of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostAppend {
    /// Index of the appending transaction in the checked history.
    pub txn: usize,
    pub key: String,
    pub value: u64,
}

/// What a lost-write check found.
#[derive(Debug, Clone, Serialize)]
pub struct LostWritesReport<T> {
    /// Acknowledged writes checked.
    pub acknowledged: usize,
    pub lost: Vec<T>,
}

impl<T> LostWritesReport<T> {
    pub fn is_valid(&self) -> bool {
        self.lost.is_empty()
    }
}

/// The (key, value) of every acknowledged write and successful cas in a register history.
pub fn acknowledged_writes(ops: &[RegisterOp]) -> Vec<(String, String)> {
    ops.iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .filter(|op| {
            op.f == RegisterF::Write || (op.f == RegisterF::Cas && op.cas_ok == Some(true))
        })
        .filter_map(|op| Some((op.key.clone(), op.value.clone()?)))
        .collect()
}

/// Checks write-once keys: each acknowledged (key, value) must be in `final_read`. Fails when a
/// key was acknowledged twice, since then the final read cannot hold both.
pub fn check_lost_writes(
    acknowledged: &[(String, String)],
    final_read: &BTreeMap<String, String>,
) -> Result<LostWritesReport<LostWrite>> {
    let mut keys = HashSet::new();
    let mut lost = Vec::new();
    for (key, value) in acknowledged {
        if !keys.insert(key) {
            return Err(Error::InvalidHistory(format!(
                "key {key:?} was acknowledged twice; the lost-write check needs write-once keys"
            )));
        }
        let found = final_read.get(key);
        if found != Some(value) {
            lost.push(LostWrite {
                key: key.clone(),
                value: value.clone(),
                found: found.cloned(),
            });
        }
    }
    Ok(LostWritesReport {
        acknowledged: acknowledged.len(),
        lost,
    })
}

/// Checks that every append of a committed transaction is in the final read of its key.
pub fn check_lost_appends(
    history: &[TxnOp],
    final_reads: &BTreeMap<String, Vec<u64>>,
) -> LostWritesReport<LostAppend> {
    let present: HashSet<(&str, u64)> = final_reads
        .iter()
        .flat_map(|(key, values)| values.iter().map(move |v| (key.as_str(), *v)))
        .collect();
    let mut acknowledged = 0;
    let mut lost = Vec::new();
    for (txn, op) in history
        .iter()
        .enumerate()
        .filter(|(_, op)| op.outcome == Outcome::Ok)
    {
        for mop in &op.mops {
            let Mop::Append { key, value } = mop else {
                continue;
            };
            acknowledged += 1;
            if !present.contains(&(key.as_str(), *value)) {
                lost.push(LostAppend {
                    txn,
                    key: key.clone(),
                    value: *value,
                });
            }
        }
    }
    LostWritesReport { acknowledged, lost }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn every_acknowledged_write_present_passes() {
        let ops = vec![
            RegisterOp::write(1, (0, 1), "a", "1", Outcome::Ok),
            RegisterOp::write(1, (2, 3), "b", "2", Outcome::Info),
            RegisterOp::cas(2, (4, 5), "c", (None, "3"), Outcome::Ok, Some(true)),
            RegisterOp::cas(2, (6, 7), "d", (None, "4"), Outcome::Ok, Some(false)),
        ];
        let acked = acknowledged_writes(&ops);
        assert_eq!(acked.len(), 2);
        let report = check_lost_writes(&acked, &map(&[("a", "1"), ("c", "3")])).unwrap();
        assert!(report.is_valid(), "{report:?}");
    }

    #[test]
    fn missing_and_changed_writes_are_reported() {
        let acked = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        let report = check_lost_writes(&acked, &map(&[("b", "other")])).unwrap();
        assert_eq!(
            report.lost,
            vec![
                LostWrite {
                    key: "a".into(),
                    value: "1".into(),
                    found: None
                },
                LostWrite {
                    key: "b".into(),
                    value: "2".into(),
                    found: Some("other".into())
                },
            ]
        );
    }

    #[test]
    fn key_acknowledged_twice_is_refused() {
        let acked = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        let err = check_lost_writes(&acked, &map(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("acknowledged twice"), "{err}");
    }

    #[test]
    fn lost_append_is_reported_and_indeterminate_ones_are_not_required() {
        let history = vec![
            TxnOp::new(
                0,
                (0, 1),
                Outcome::Ok,
                vec![Mop::append("x", 1), Mop::append("y", 1)],
            ),
            TxnOp::new(1, (2, 3), Outcome::Ok, vec![Mop::append("x", 2)]),
            TxnOp::new(2, (4, 5), Outcome::Info, vec![Mop::append("x", 3)]),
            TxnOp::new(3, (6, 7), Outcome::Fail, vec![Mop::append("y", 4)]),
        ];
        let finals: BTreeMap<String, Vec<u64>> =
            [("x".to_owned(), vec![1]), ("y".to_owned(), vec![1])].into();
        let report = check_lost_appends(&history, &finals);
        assert_eq!(report.acknowledged, 3);
        assert_eq!(
            report.lost,
            vec![LostAppend {
                txn: 1,
                key: "x".into(),
                value: 2
            }]
        );

        let all: BTreeMap<String, Vec<u64>> =
            [("x".to_owned(), vec![1, 2]), ("y".to_owned(), vec![1])].into();
        assert!(check_lost_appends(&history, &all).is_valid());
    }
}
