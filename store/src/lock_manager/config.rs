//! `[pessimistic-txn]`: how long pessimistic lock requests wait for locks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest accepted wait, so a typo cannot park requests for days.
const MAX_WAIT_MS: u64 = 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PessimisticTxnConfig {
    /// How long a pessimistic lock request waits for a conflicting lock, in
    /// milliseconds: the wait of a request that asks for the server default
    /// (`wait_timeout = 0`, what the clients send) and the cap of any other
    /// asked wait; also how long a wait-for edge lives in the deadlock
    /// detector. Default 1000, as TiKV's `wait-for-lock-timeout`. 1 to
    /// 3,600,000.
    pub wait_for_lock_timeout_ms: u64,
    /// When a lock is released, its oldest waiter is woken at once and the
    /// other waiters of the key this many milliseconds later. Default 20, as
    /// TiKV's `wake-up-delay-duration`; 0 wakes all at once. At most
    /// `wait-for-lock-timeout-ms`.
    pub wake_up_delay_duration_ms: u64,
}

impl Default for PessimisticTxnConfig {
    fn default() -> Self {
        PessimisticTxnConfig {
            wait_for_lock_timeout_ms: 1000,
            wake_up_delay_duration_ms: 20,
        }
    }
}

impl PessimisticTxnConfig {
    pub fn wait_for_lock_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_for_lock_timeout_ms)
    }

    pub fn wake_up_delay_duration(&self) -> Duration {
        Duration::from_millis(self.wake_up_delay_duration_ms)
    }

    /// The field at fault and why, if any.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let wait = self.wait_for_lock_timeout_ms;
        if wait == 0 || wait > MAX_WAIT_MS {
            return Err((
                "pessimistic-txn.wait-for-lock-timeout-ms",
                format!("{wait} is out of range 1..={MAX_WAIT_MS}"),
            ));
        }
        if self.wake_up_delay_duration_ms > wait {
            return Err((
                "pessimistic-txn.wake-up-delay-duration-ms",
                format!(
                    "{} exceeds wait-for-lock-timeout-ms ({wait})",
                    self.wake_up_delay_duration_ms
                ),
            ));
        }
        Ok(())
    }
}
