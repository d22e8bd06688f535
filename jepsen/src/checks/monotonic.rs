//! The monotonic check: timestamps handed out by the placement service's TSO (or commit
//! timestamps read back) must never go back.
//! - Per process: each process's operations run one after another, so each timestamp must not
//!   be below the one before it.
//! - In real time, across processes: an operation that started after another one had
//!   completed must not see a timestamp below that one's.
//!
//! TSO answers are unique, so they must grow strictly ([`Monotonicity::Strict`]); commit
//! timestamps read back may repeat ([`Monotonicity::NonDecreasing`]).

use serde::{Deserialize, Serialize};

/// One completed operation that observed a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsRead {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: u64,
    pub ts: u64,
}

/// How timestamps must grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monotonicity {
    /// Each later timestamp must be greater (TSO: no two answers are equal).
    Strict,
    /// Each later timestamp must not be smaller.
    NonDecreasing,
}

impl Monotonicity {
    fn allows(self, earlier: u64, later: u64) -> bool {
        match self {
            Monotonicity::Strict => later > earlier,
            Monotonicity::NonDecreasing => later >= earlier,
        }
    }
}

/// A timestamp that went back; `earlier` and `later` index the checked observations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum MonotonicViolation {
    /// Within one process.
    Process {
        process: u64,
        earlier: usize,
        later: usize,
        earlier_ts: u64,
        later_ts: u64,
    },
    /// `later` started after `earlier` completed (the highest timestamp completed by then).
    RealTime {
        earlier: usize,
        later: usize,
        earlier_ts: u64,
        later_ts: u64,
    },
}

/// What [`check_monotonic`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonotonicReport {
    pub observations: usize,
    pub violations: Vec<MonotonicViolation>,
}

impl MonotonicReport {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks `observations` per process and in real time.
pub fn check_monotonic(observations: &[TsRead], mode: Monotonicity) -> MonotonicReport {
    let mut violations = per_process(observations, mode);
    violations.extend(real_time(observations, mode));
    MonotonicReport {
        observations: observations.len(),
        violations,
    }
}

fn per_process(obs: &[TsRead], mode: Monotonicity) -> Vec<MonotonicViolation> {
    let mut order: Vec<usize> = (0..obs.len()).collect();
    order.sort_by_key(|&i| (obs[i].process, obs[i].call_ns, i));
    order
        .windows(2)
        .filter(|w| obs[w[0]].process == obs[w[1]].process)
        .filter(|w| !mode.allows(obs[w[0]].ts, obs[w[1]].ts))
        .map(|w| MonotonicViolation::Process {
            process: obs[w[0]].process,
            earlier: w[0],
            later: w[1],
            earlier_ts: obs[w[0]].ts,
            later_ts: obs[w[1]].ts,
        })
        .collect()
}

/// Sweeps operations by start time, keeping the highest timestamp among those that completed
/// strictly before the current one started.
fn real_time(obs: &[TsRead], mode: Monotonicity) -> Vec<MonotonicViolation> {
    let mut by_call: Vec<usize> = (0..obs.len()).collect();
    by_call.sort_by_key(|&i| (obs[i].call_ns, i));
    let mut by_return: Vec<usize> = (0..obs.len()).collect();
    by_return.sort_by_key(|&i| (obs[i].return_ns, i));
    let mut done = by_return.iter().peekable();
    let mut highest: Option<usize> = None;
    let mut violations = Vec::new();
    for &later in &by_call {
        while let Some(&&i) = done
            .peek()
            .filter(|&&&i| obs[i].return_ns < obs[later].call_ns)
        {
            if highest.is_none_or(|h| obs[i].ts > obs[h].ts) {
                highest = Some(i);
            }
            done.next();
        }
        if let Some(earlier) = highest.filter(|&h| !mode.allows(obs[h].ts, obs[later].ts)) {
            violations.push(MonotonicViolation::RealTime {
                earlier,
                later,
                earlier_ts: obs[earlier].ts,
                later_ts: obs[later].ts,
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(process: u64, call_ns: u64, return_ns: u64, ts: u64) -> TsRead {
        TsRead {
            process,
            call_ns,
            return_ns,
            ts,
        }
    }

    #[test]
    fn growing_timestamps_pass_and_overlapping_ones_may_come_in_any_order() {
        let obs = [
            ts(1, 0, 10, 100),
            ts(2, 5, 15, 90), // overlaps the first: may be lower
            ts(1, 20, 30, 101),
            ts(2, 21, 31, 102),
        ];
        let report = check_monotonic(&obs, Monotonicity::Strict);
        assert!(report.is_valid(), "{report:?}");
    }

    #[test]
    fn timestamp_below_one_completed_earlier_by_another_process_is_reported() {
        let obs = [ts(1, 0, 10, 100), ts(2, 11, 20, 99)];
        let report = check_monotonic(&obs, Monotonicity::Strict);
        assert_eq!(
            report.violations,
            vec![MonotonicViolation::RealTime {
                earlier: 0,
                later: 1,
                earlier_ts: 100,
                later_ts: 99
            }]
        );
    }

    #[test]
    fn process_going_back_is_reported_per_process_and_in_real_time() {
        let obs = [ts(7, 0, 1, 5), ts(7, 2, 3, 4)];
        let report = check_monotonic(&obs, Monotonicity::NonDecreasing);
        assert_eq!(report.violations.len(), 2, "{report:?}");
        assert!(matches!(
            report.violations[0],
            MonotonicViolation::Process {
                process: 7,
                earlier: 0,
                later: 1,
                ..
            }
        ));
    }

    #[test]
    fn repeated_timestamp_fails_only_when_strict() {
        let obs = [ts(1, 0, 1, 5), ts(2, 2, 3, 5)];
        assert!(check_monotonic(&obs, Monotonicity::NonDecreasing).is_valid());
        assert!(!check_monotonic(&obs, Monotonicity::Strict).is_valid());
    }
}
