//! The timestamp oracle: strictly increasing timestamps `physical_ms << 18 | logical`.
//!
//! [`TsoState`] is the pure core. It never hands out a timestamp whose physical part reaches
//! the persisted high-water mark (`saved_limit`); when a request would, it asks the driver to
//! persist a new mark `tso-save-interval` ahead first ([`TsoStep::NeedSave`]). After a restart
//! the state resumes at the stored mark, so every new timestamp is above every old one even if
//! the clock went backwards. When the 18 logical bits run out within one millisecond the
//! physical part moves one millisecond ahead of the clock.
//!
//! [`TimestampOracle`] is the thin async driver around it: it persists marks through the
//! [`MetaWriter`] (serialised, so a smaller mark never overwrites a larger one) and is ticked in
//! the background so that requests rarely wait for the disk. Its window belongs to one leader
//! term ([`TimestampOracle::reset`]); every allocation names the term it is for and a guard
//! (is this member still the serving leader of that term, with its lease?), and both are
//! checked right where the timestamp is made, after the last wait: a request that waited for
//! a window through a change of leader gets an error, never a timestamp below the new
//! leader's.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::meta::MetaWrite;
use crate::writer::MetaWriter;

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;
/// Exclusive upper bound of the logical part.
pub const MAX_LOGICAL: i64 = 1 << LOGICAL_BITS;

/// A hybrid timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub physical: i64,
    pub logical: i64,
}

impl Timestamp {
    /// The `u64` form clients use: `physical << 18 | logical`.
    pub fn compose(self) -> u64 {
        ((self.physical as u64) << LOGICAL_BITS) | self.logical as u64
    }
}

/// What [`TsoState::next`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsoStep {
    /// The largest timestamp of the batch; the batch is `logical - count + 1 ..= logical`.
    Ready(Timestamp),
    /// Persist this physical high-water mark, call [`TsoState::saved`], then retry.
    NeedSave(i64),
}

/// Pure timestamp allocation state.
#[derive(Debug, Clone)]
pub struct TsoState {
    physical: i64,
    logical: i64,
    saved_limit: i64,
    interval_ms: i64,
}

impl TsoState {
    /// Resumes after a restart: nothing at or above `saved_limit` was issued before.
    pub fn recover(saved_limit: i64, save_interval: Duration) -> Self {
        TsoState {
            physical: saved_limit,
            logical: 0,
            saved_limit,
            interval_ms: save_interval.as_millis().max(1) as i64,
        }
    }

    /// Allocates `count` timestamps at wall-clock `now_ms`.
    pub fn next(&mut self, count: u32, now_ms: i64) -> Result<TsoStep> {
        let count = i64::from(count);
        if count == 0 || count >= MAX_LOGICAL {
            return Err(Error::invalid(format!(
                "tso count must be in 1..{MAX_LOGICAL}, got {count}"
            )));
        }
        let (mut physical, mut logical) = (self.physical, self.logical);
        if now_ms > physical {
            physical = now_ms;
            logical = 0;
        }
        if logical + count >= MAX_LOGICAL {
            physical += 1;
            logical = 0;
        }
        if physical >= self.saved_limit {
            return Ok(TsoStep::NeedSave(physical + self.interval_ms));
        }
        self.physical = physical;
        self.logical = logical + count;
        Ok(TsoStep::Ready(Timestamp {
            physical,
            logical: self.logical,
        }))
    }

    /// Records that `limit` is durable.
    pub fn saved(&mut self, limit: i64) {
        self.saved_limit = self.saved_limit.max(limit);
    }

    /// A new mark to persist ahead of time when less than half the window is left.
    pub fn window_due(&self, now_ms: i64) -> Option<i64> {
        let base = now_ms.max(self.physical);
        (self.saved_limit - base <= self.interval_ms / 2).then_some(base + self.interval_ms)
    }

    pub fn saved_limit(&self) -> i64 {
        self.saved_limit
    }
}

/// A shift added to the wall clock the oracle reads, set only by the fault-injection endpoint
/// (`POST /debug/clock-offset/{ms}`) so that tests can skew or jump one member's clock.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts the oracle's wall clock by `ms` (negative: behind) from now on.
pub fn set_clock_offset_ms(ms: i64) {
    CLOCK_OFFSET_MS.store(ms, Ordering::Relaxed);
}

/// Wall-clock milliseconds since the Unix epoch (plus the injected offset, zero unless a test
/// set one).
pub fn now_ms() -> i64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    real.saturating_add(CLOCK_OFFSET_MS.load(Ordering::Relaxed))
}

/// The allocation state and the leader term it belongs to.
struct Window {
    term: u64,
    state: TsoState,
}

/// Async driver: allocation plus persistence of the high-water mark.
pub struct TimestampOracle {
    window: Mutex<Window>,
    interval: Duration,
    save_lock: tokio::sync::Mutex<()>,
    writer: Arc<MetaWriter>,
}

impl TimestampOracle {
    /// An oracle that hands out nothing until [`TimestampOracle::reset`] gives it the
    /// replicated mark (when its member starts to lead).
    pub fn new(interval: Duration, writer: Arc<MetaWriter>) -> Self {
        TimestampOracle {
            window: Mutex::new(Window {
                term: 0,
                state: TsoState::recover(0, interval),
            }),
            interval,
            save_lock: tokio::sync::Mutex::new(()),
            writer,
        }
    }

    /// Resumes for leader term `term` from `saved_limit`, the mark replicated before it:
    /// every timestamp any earlier leader issued is below it. Call [`TimestampOracle::tick`]
    /// next to persist a fresh window.
    pub fn reset(&self, term: u64, saved_limit: i64) {
        *self.window.lock() = Window {
            term,
            state: TsoState::recover(saved_limit, self.interval),
        };
    }

    /// Allocates `count` timestamps for leader term `term` and returns the largest. `may_serve`
    /// says whether this member may still hand out timestamps for that term; it is asked
    /// each time a timestamp is about to be made, after any wait for the disk.
    pub async fn get(
        &self,
        count: u32,
        term: u64,
        may_serve: &(dyn Fn() -> Result<()> + Sync),
    ) -> Result<Timestamp> {
        loop {
            let step = {
                let mut w = self.window.lock();
                if w.term != term {
                    return Err(stale_term(w.term, term));
                }
                may_serve()?;
                w.state.next(count, now_ms())?
            };
            match step {
                TsoStep::Ready(ts) => return Ok(ts),
                TsoStep::NeedSave(limit) => self.save(limit, term).await?,
            }
        }
    }

    /// The persisted high-water mark this member allocates below (physical milliseconds).
    pub fn saved_limit(&self) -> i64 {
        self.window.lock().state.saved_limit()
    }

    /// Extends the persisted window if it is running short; called periodically.
    pub async fn tick(&self) -> Result<()> {
        let (term, due) = {
            let w = self.window.lock();
            (w.term, w.state.window_due(now_ms()))
        };
        match due {
            Some(limit) => self.save(limit, term).await,
            None => Ok(()),
        }
    }

    /// Persists `limit` for the window of `term`; a mark saved for an older term never raises
    /// the window of a newer one.
    async fn save(&self, limit: i64, term: u64) -> Result<()> {
        let _guard = self.save_lock.lock().await;
        {
            let w = self.window.lock();
            if w.term != term {
                return Err(stale_term(w.term, term));
            }
            if w.state.saved_limit() >= limit {
                return Ok(());
            }
        }
        self.writer.write(vec![MetaWrite::TsoLimit(limit)]).await?;
        let mut w = self.window.lock();
        if w.term != term {
            return Err(stale_term(w.term, term));
        }
        w.state.saved(limit);
        tracing::debug!(limit, term, "tso window persisted");
        Ok(())
    }
}

fn stale_term(window: u64, asked: u64) -> Error {
    Error::NoTsoLease(format!(
        "the timestamp window is for leader term {window}, not {asked}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn must_next(s: &mut TsoState, count: u32, now: i64) -> Timestamp {
        loop {
            match s.next(count, now).unwrap() {
                TsoStep::Ready(ts) => return ts,
                TsoStep::NeedSave(limit) => s.saved(limit),
            }
        }
    }

    #[test]
    fn strictly_increasing_with_batches() {
        let mut s = TsoState::recover(0, Duration::from_secs(3));
        let mut last = 0u64;
        for (i, now) in [1000, 1000, 1000, 999, 1001, 500, 1001]
            .into_iter()
            .enumerate()
        {
            let count = (i as u32 % 3) + 1;
            let ts = must_next(&mut s, count, now);
            let first = ts.compose() - u64::from(count) + 1;
            assert!(first > last, "batch {i} starts at {first}, after {last}");
            last = ts.compose();
        }
    }

    #[test]
    fn waits_for_save_before_crossing_the_mark() {
        let mut s = TsoState::recover(0, Duration::from_secs(3));
        assert_eq!(s.next(1, 1000).unwrap(), TsoStep::NeedSave(4000));
        s.saved(4000);
        assert!(matches!(s.next(1, 1000).unwrap(), TsoStep::Ready(_)));
        assert_eq!(s.window_due(1000), None, "2 s of the 3 s window left");
        assert_eq!(s.window_due(2600), Some(5600), "less than half left");
        assert!(matches!(s.next(1, 3999).unwrap(), TsoStep::Ready(_)));
        assert_eq!(s.next(1, 4000).unwrap(), TsoStep::NeedSave(7000));
    }

    #[test]
    fn logical_overflow_moves_physical() {
        let mut s = TsoState::recover(0, Duration::from_secs(3));
        let a = must_next(&mut s, (MAX_LOGICAL - 1) as u32, 1000);
        assert_eq!((a.physical, a.logical), (1000, MAX_LOGICAL - 1));
        let b = must_next(&mut s, 1, 1000);
        assert_eq!((b.physical, b.logical), (1001, 1));
        assert!(b.compose() > a.compose());
    }

    #[test]
    fn rejects_bad_counts() {
        let mut s = TsoState::recover(0, Duration::from_secs(3));
        assert!(s.next(0, 1).is_err());
        assert!(s.next(MAX_LOGICAL as u32, 1).is_err());
    }

    #[test]
    fn restart_resumes_above_everything_issued() {
        let mut s = TsoState::recover(0, Duration::from_secs(3));
        let mut last = Timestamp {
            physical: 0,
            logical: 0,
        };
        for now in 1000..1100 {
            last = must_next(&mut s, 10, now);
        }
        let stored = s.saved_limit();
        // The clock jumped back by a minute across the restart.
        let mut restarted = TsoState::recover(stored, Duration::from_secs(3));
        let first = must_next(&mut restarted, 1, 1100 - 60_000);
        assert!(first > last, "{first:?} after {last:?}");
    }
}
