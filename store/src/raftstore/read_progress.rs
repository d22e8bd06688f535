//! [`ReadProgress`]: how far a replica may serve reads at a timestamp without asking anyone
//! (stale reads), published for the request threads and the resolver.
//!
//! A leader's resolver (`storage::resolved_ts`) finds, every round, a *resolved ts*: no
//! transaction can still commit at or below it with data this replica has not applied up to
//! the index it read (the smallest lock start ts in the region, and a fresh TSO timestamp,
//! to which it first raised `max_ts`). It records `(ts, index)` here. A follower asks its
//! leader for that pair (a read index request carrying `ReadBody::SafeTsRequest`, answered at
//! once) and takes `ts` as its *safe ts* once it has applied up to `index`; the leader takes
//! it at once. A stale read at or below the safe ts is served from this replica's own data;
//! above it the client is told `DataIsNotReady`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// How often a leader resolves its ts and a follower asks for it: a follower's safe ts lags
/// the present by about this much, so stale reads older than that are served locally.
pub const RESOLVED_TS_INTERVAL: Duration = Duration::from_secs(1);

/// A replica's published read progress. Shared by the replica, its `RegionMeta` and the
/// resolver.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// The applied index (published after each apply).
    applied: AtomicU64,
    /// Stale reads at or below it are served here.
    safe_ts: AtomicU64,
    /// Leader: the last `(resolved ts, index)` of the resolver, for the followers.
    resolved: Mutex<Option<(u64, u64)>>,
}

impl ReadProgress {
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn set_applied(&self, index: u64) {
        self.applied.store(index, Ordering::Release);
    }

    pub fn safe_ts(&self) -> u64 {
        self.safe_ts.load(Ordering::Acquire)
    }

    /// Raises the safe ts (it never goes back).
    pub fn advance_safe_ts(&self, ts: u64) {
        self.safe_ts.fetch_max(ts, Ordering::AcqRel);
    }

    /// Leader: records a resolved ts the resolver computed with the applied index its scan
    /// saw at most, and serves stale reads up to it.
    pub fn resolved(&self, ts: u64, index: u64) {
        let mut r = self.resolved.lock();
        if r.is_none_or(|(old, _)| ts >= old) {
            *r = Some((ts, index));
        }
        drop(r);
        self.advance_safe_ts(ts);
    }

    /// Leader: what to tell a follower asking for its safe ts.
    pub fn last_resolved(&self) -> Option<(u64, u64)> {
        *self.resolved.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ts_and_resolved_ts_never_go_back() {
        let p = ReadProgress::default();
        p.resolved(100, 7);
        p.resolved(90, 9);
        assert_eq!(p.last_resolved(), Some((100, 7)));
        assert_eq!(p.safe_ts(), 100);
        p.advance_safe_ts(50);
        assert_eq!(p.safe_ts(), 100);
        p.set_applied(12);
        assert_eq!(p.applied(), 12);
    }
}
