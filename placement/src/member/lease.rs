//! The leader lease: how long a placement leader may hand out timestamps without asking the
//! others, so that a leader cut off from them never hands out one below its successor's.
//!
//! A leader confirms its leadership with a quorum (a ReadIndex round whose context is the
//! moment it was sent, see [`super::node`]); a follower that heard from it does not vote for
//! anyone else for an election timeout, so nobody else can lead before `sent` plus a bit less
//! than that ([`Lease::extend`]). A leadership transfer breaks that promise (the transferee
//! campaigns at once and the others vote for it), so a transfer revokes the lease, and no
//! confirmation sent before the revocation may bring it back ([`Lease::revoke`]).

use std::time::Instant;

/// Until when the lease holds, and when it was last revoked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    until: Option<Instant>,
    revoked_at: Option<Instant>,
}

impl Lease {
    /// A quorum confirmed a round sent at `sent`: the lease holds until `until` (never
    /// shortened), unless it was revoked at or after `sent`.
    pub fn extend(&mut self, sent: Instant, until: Instant) {
        if self.revoked_at.is_some_and(|r| r >= sent) {
            return;
        }
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
    }

    /// Ends the lease now; rounds sent until `now` no longer count.
    pub fn revoke(&mut self, now: Instant) {
        self.until = None;
        if self.revoked_at.is_none_or(|r| r < now) {
            self.revoked_at = Some(now);
        }
    }

    /// Whether the lease holds at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_revoked_lease_ignores_rounds_sent_before_the_revocation() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut lease = Lease::default();
        assert!(!lease.holds(t0));
        lease.extend(at(0), at(800));
        assert!(lease.holds(at(799)) && !lease.holds(at(800)));
        lease.extend(at(100), at(500));
        assert!(lease.holds(at(799)), "never shortened");
        lease.revoke(at(200));
        assert!(!lease.holds(at(201)));
        // A round sent before the revocation and confirmed after it does not count ...
        lease.extend(at(150), at(950));
        assert!(!lease.holds(at(300)));
        lease.extend(at(200), at(1000));
        assert!(!lease.holds(at(300)));
        // ... one sent after it does.
        lease.extend(at(250), at(1050));
        assert!(lease.holds(at(300)));
    }
}
