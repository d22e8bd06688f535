//! Fault injection: failures tests cause on purpose, to prove what the member does when its
//! disk or its raft thread fails.
//!
//! [`Faults`] belongs to one [`crate::storage::MetaStore`] (clones share it). It can make the
//! metadata engine's writes fail after a number of successful ones, as a full disk would
//! (`ENOSPC`), and make the raft thread panic at its next turn, as a raft-rs fatal error would.
//! Nothing is armed unless a test (or, with `[debug] fault-injection = true`, the
//! `/debug/fail/...` HTTP routes) arms it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::error::{Error, Result};

/// What is armed: write failures and a raft thread panic.
#[derive(Debug)]
pub struct Faults {
    /// Writes that still succeed before every later one fails; negative: never fail.
    writes_left: AtomicI64,
    raft_panic: AtomicBool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            writes_left: AtomicI64::new(-1),
            raft_panic: AtomicBool::new(false),
        }
    }
}

impl Faults {
    /// The next `n` engine writes succeed; every later one fails with "no space left".
    pub fn fail_writes_after(&self, n: u64) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.writes_left.store(n, Ordering::Release);
    }

    /// Writes succeed again.
    pub fn heal_writes(&self) {
        self.writes_left.store(-1, Ordering::Release);
    }

    /// The raft thread panics at its next turn.
    pub fn panic_raft_thread(&self) {
        self.raft_panic.store(true, Ordering::Release);
    }

    /// Called before every engine write: the injected failure, if one is due.
    pub(crate) fn check_write(&self) -> Result<()> {
        let took = self
            .writes_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 0).then_some(n - 1)
            });
        match took {
            Ok(_) => Ok(()),
            Err(n) if n < 0 => Ok(()),
            Err(_) => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "injected fault: no space left on device",
            ))),
        }
    }

    /// Whether the raft thread must panic now (once).
    pub(crate) fn take_raft_panic(&self) -> bool {
        self.raft_panic.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fail_after_the_allowed_number() {
        let f = Faults::default();
        for _ in 0..3 {
            f.check_write().unwrap();
        }
        f.fail_writes_after(2);
        f.check_write().unwrap();
        f.check_write().unwrap();
        let err = f.check_write().unwrap_err().to_string();
        assert!(err.contains("no space left"), "{err}");
        assert!(f.check_write().is_err(), "stays failed");
        f.heal_writes();
        f.check_write().unwrap();
    }

    #[test]
    fn a_raft_panic_fires_once() {
        let f = Faults::default();
        assert!(!f.take_raft_panic());
        f.panic_raft_thread();
        assert!(f.take_raft_panic());
        assert!(!f.take_raft_panic());
    }
}
