//! The store's wall clock: what raw-KV TTLs (written and judged) and the heartbeat's start
//! time read. Everything that keeps the cluster safe - raft ticks, elections, leader leases,
//! lock waits - runs on the monotonic clock (`Instant`), which a wall-clock step does not move.
//!
//! Only the fault-injection endpoint (`POST /debug/clock-offset/{ms}` on the status port)
//! shifts this clock, so that the fault suite can step one store's wall clock ahead or back and
//! check that nothing but TTL expiry follows it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The injected shift in milliseconds; zero unless a test set one.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts the wall clock by `ms` milliseconds (negative: behind) from now on; 0 ends it.
pub fn set_offset_ms(ms: i64) {
    OFFSET_MS.store(ms, Ordering::Relaxed);
}

/// Whole seconds since the Unix epoch, shifted by the injected offset.
pub fn now_secs() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    shifted_secs(real, OFFSET_MS.load(Ordering::Relaxed))
}

/// `real_ms` moved by `offset_ms`, in whole seconds; a shift before the epoch reads as 0.
fn shifted_secs(real_ms: u128, offset_ms: i64) -> u64 {
    let real = i128::try_from(real_ms).unwrap_or(i128::MAX);
    let ms = real.saturating_add(i128::from(offset_ms)).max(0);
    u64::try_from(ms / 1000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::shifted_secs;

    #[test]
    fn an_offset_moves_the_clock_either_way_and_never_before_the_epoch() {
        assert_eq!(shifted_secs(10_500, 0), 10);
        assert_eq!(shifted_secs(10_500, 60_000), 70);
        assert_eq!(shifted_secs(10_500, -3_000), 7);
        assert_eq!(shifted_secs(10_500, -20_000), 0);
        assert_eq!(shifted_secs(1_000, i64::MAX), i64::MAX as u64 / 1000 + 1);
    }
}
