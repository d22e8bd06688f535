//! The bank check: transfers move money between accounts inside transactions, so every
//! snapshot read of all accounts must sum to the same total and show no negative balance
//! (transfers refuse to overdraw). A wrong sum means a read saw half a transfer (or a lost or
//! duplicated write); a negative balance means two transfers both spent the same money.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One successful snapshot read of every account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankRead {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: u64,
    /// Account -> balance, as read in one snapshot.
    pub balances: BTreeMap<String, i64>,
}

/// A read that breaks the bank invariant; `read` indexes the checked reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum BankViolation {
    /// The balances do not add up to the expected total.
    WrongTotal {
        read: usize,
        total: i128,
        expected: i64,
    },
    /// An account holds less than nothing.
    Negative {
        read: usize,
        account: String,
        balance: i64,
    },
}

/// What [`check_bank`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BankReport {
    pub reads: usize,
    pub violations: Vec<BankViolation>,
}

impl BankReport {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks that every read sums to `expected_total` and has no negative balance.
pub fn check_bank(expected_total: i64, reads: &[BankRead]) -> BankReport {
    let mut violations = Vec::new();
    for (i, read) in reads.iter().enumerate() {
        let total: i128 = read.balances.values().map(|&b| i128::from(b)).sum();
        if total != i128::from(expected_total) {
            violations.push(BankViolation::WrongTotal {
                read: i,
                total,
                expected: expected_total,
            });
        }
        for (account, &balance) in &read.balances {
            if balance < 0 {
                violations.push(BankViolation::Negative {
                    read: i,
                    account: account.clone(),
                    balance,
                });
            }
        }
    }
    BankReport {
        reads: reads.len(),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(balances: &[(&str, i64)]) -> BankRead {
        BankRead {
            process: 0,
            call_ns: 0,
            return_ns: 1,
            balances: balances.iter().map(|&(a, b)| (a.to_owned(), b)).collect(),
        }
    }

    #[test]
    fn consistent_snapshots_pass() {
        let reads = [
            read(&[("a", 50), ("b", 50)]),
            read(&[("a", 0), ("b", 100)]),
            read(&[("a", 70), ("b", 30)]),
        ];
        let report = check_bank(100, &reads);
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(report.reads, 3);
    }

    #[test]
    fn half_a_transfer_breaks_the_total() {
        // The read saw the debit of a transfer of 20 from a to b but not its credit.
        let reads = [read(&[("a", 50), ("b", 50)]), read(&[("a", 30), ("b", 50)])];
        let report = check_bank(100, &reads);
        assert_eq!(
            report.violations,
            vec![BankViolation::WrongTotal {
                read: 1,
                total: 80,
                expected: 100
            }]
        );
    }

    #[test]
    fn overdraft_is_reported_even_when_the_total_holds() {
        let report = check_bank(100, &[read(&[("a", -10), ("b", 110)])]);
        assert_eq!(
            report.violations,
            vec![BankViolation::Negative {
                read: 0,
                account: "a".to_owned(),
                balance: -10
            }]
        );
        let json = serde_json::to_value(&report.violations[0]).unwrap();
        assert_eq!(json["type"], "negative");
    }
}
