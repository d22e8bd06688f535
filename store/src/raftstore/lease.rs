//! The leader lease: how long a leader may answer reads from its own state
//! without a ReadIndex round.
//!
//! A follower refuses to vote for anyone while it has heard from its leader
//! within an election timeout (raft-rs `check_quorum`), and its election
//! clock starts no earlier than when the leader's message reached it. So
//! when a quorum has acknowledged a message the leader sent at `t`, no other
//! leader can be elected before `t` plus (nearly) an election timeout: the
//! leader holds a lease until `t + max`, with `max` short of the election
//! timeout by a tick (a follower's tick may fall just after it heard the
//! leader) and a margin for clock-rate drift, as TiKV's
//! `raft-store-max-leader-lease` is short of its election timeout.
//!
//! A lease is renewed by a quorum acknowledgement whose message was sent at
//! a known time (a committed proposal, a confirmed read index) and holds
//! only in the term it was won in. It ends early when the group's
//! membership changes (the acknowledging quorum may no longer be one), and
//! for the rest of the term once a leadership transfer starts (the target
//! campaigns with the force flag, which voters grant inside their lease).
//!
//! [`LocalLease`] is the lease as the request threads see it: the raftstore
//! thread publishes it (only while every other condition for a lease read
//! holds) before it sends anything a round produced and after it applies, and
//! a read checks it on its own thread, without a hop through the raftstore
//! loop, as TiKV's LocalReader does. Whatever ends a lease early (a leadership
//! transfer, stepping down, a membership change) is published before the
//! messages that could let another leader arise leave the store; an expiry by
//! time needs no publishing, since readers compare the bound with the clock.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone)]
pub struct Lease {
    max: Duration,
    /// The lease held: (term, valid until).
    bound: Option<(u64, Instant)>,
    /// Acknowledgements of messages sent before this instant renew nothing.
    floor: Option<Instant>,
    /// A term in which the lease is given up for good (a transfer started).
    given_up: Option<u64>,
}

impl Lease {
    /// A lease of at most `max` past each acknowledged send (zero: never held).
    pub fn new(max: Duration) -> Self {
        Lease {
            max,
            bound: None,
            floor: None,
            given_up: None,
        }
    }

    /// A quorum acknowledged, in `term`, a message sent at `sent_at`.
    pub fn renew(&mut self, term: u64, sent_at: Instant) {
        if self.max.is_zero()
            || self.given_up == Some(term)
            || self.floor.is_some_and(|f| sent_at < f)
        {
            return;
        }
        let until = sent_at + self.max;
        match self.bound {
            Some((t, u)) if t == term && u >= until => {}
            Some((t, _)) if t > term => {}
            _ => self.bound = Some((term, until)),
        }
    }

    /// Ends the lease now; only messages sent after `now` renew it.
    pub fn expire(&mut self, now: Instant) {
        self.bound = None;
        self.floor = Some(now);
    }

    /// Ends the lease for the rest of `term`.
    pub fn give_up(&mut self, term: u64) {
        self.bound = None;
        self.given_up = Some(term);
    }

    /// Whether a leader in `term` holds the lease at `now`.
    pub fn holds(&self, term: u64, now: Instant) -> bool {
        self.until(term).is_some_and(|until| now < until)
    }

    /// When the lease held in `term` ends (None: none held in it).
    pub fn until(&self, term: u64) -> Option<Instant> {
        self.bound
            .filter(|&(t, _)| t == term)
            .map(|(_, until)| until)
    }
}

/// A leader's lease as published for reads on other threads: the term and the instant it ends.
#[derive(Debug, Default)]
pub struct LocalLease(Mutex<Option<(u64, Instant)>>);

impl LocalLease {
    /// Replaces what readers see (None: no lease reads).
    pub fn publish(&self, lease: Option<(u64, Instant)>) {
        *self.0.lock() = lease;
    }

    /// The term a read at `now` may be answered in from the lease, if it holds.
    pub fn term_at(&self, now: Instant) -> Option<u64> {
        self.0
            .lock()
            .and_then(|(term, until)| (now < until).then_some(term))
    }
}

/// The longest lease that is safe for an election timeout of `election_tick`
/// ticks of `tick`: two ticks short of it (one for where a follower's tick
/// falls, one for clock drift), none for timeouts of two ticks or less.
pub fn max_lease(tick: Duration, election_tick: usize) -> Duration {
    let ticks = election_tick.saturating_sub(2);
    tick.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_millis(800);

    #[test]
    fn a_renewed_lease_holds_until_max_after_the_send_in_its_term_only() {
        let t0 = Instant::now();
        let mut l = Lease::new(MAX);
        assert!(!l.holds(3, t0), "no lease before any acknowledgement");
        l.renew(3, t0);
        assert!(l.holds(3, t0 + Duration::from_millis(799)));
        assert!(!l.holds(3, t0 + MAX), "the lease ends at send + max");
        assert!(!l.holds(4, t0), "a lease belongs to its term");
    }

    #[test]
    fn an_older_acknowledgement_never_shortens_the_lease() {
        let t0 = Instant::now();
        let mut l = Lease::new(MAX);
        l.renew(3, t0 + Duration::from_millis(100));
        l.renew(3, t0);
        assert!(l.holds(3, t0 + Duration::from_millis(850)));
        // A later term replaces it; an earlier term does not.
        l.renew(4, t0);
        assert!(l.holds(4, t0) && !l.holds(3, t0));
        l.renew(3, t0 + Duration::from_millis(500));
        assert!(l.holds(4, t0) && !l.holds(3, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn after_expiry_only_messages_sent_later_renew() {
        let t0 = Instant::now();
        let mut l = Lease::new(MAX);
        l.renew(3, t0);
        let change = t0 + Duration::from_millis(10);
        l.expire(change);
        assert!(!l.holds(3, change));
        l.renew(3, t0 + Duration::from_millis(5));
        assert!(
            !l.holds(3, change),
            "a send before the change renews nothing"
        );
        l.renew(3, change + Duration::from_millis(1));
        assert!(l.holds(3, change + Duration::from_millis(2)));
    }

    #[test]
    fn a_lease_given_up_stays_given_up_for_the_term() {
        let t0 = Instant::now();
        let mut l = Lease::new(MAX);
        l.renew(3, t0);
        l.give_up(3);
        l.renew(3, t0 + Duration::from_millis(1));
        assert!(!l.holds(3, t0 + Duration::from_millis(2)));
        l.renew(5, t0 + Duration::from_millis(1));
        assert!(
            l.holds(5, t0 + Duration::from_millis(2)),
            "a new term starts afresh"
        );
    }

    #[test]
    fn a_published_lease_answers_until_its_end_and_a_withdrawn_one_never() {
        let t0 = Instant::now();
        let local = LocalLease::default();
        assert_eq!(local.term_at(t0), None, "nothing published yet");
        local.publish(Some((7, t0 + MAX)));
        assert_eq!(local.term_at(t0 + Duration::from_millis(799)), Some(7));
        assert_eq!(local.term_at(t0 + MAX), None, "it ends at its bound");
        local.publish(None);
        assert_eq!(local.term_at(t0), None, "withdrawn");
    }

    #[test]
    fn a_zero_lease_never_holds_and_short_timeouts_get_none() {
        let t0 = Instant::now();
        let mut l = Lease::new(Duration::ZERO);
        l.renew(1, t0);
        assert!(!l.holds(1, t0));
        let tick = Duration::from_millis(100);
        assert_eq!(max_lease(tick, 10), Duration::from_millis(800));
        assert_eq!(max_lease(tick, 2), Duration::ZERO);
        assert_eq!(max_lease(tick, 1), Duration::ZERO);
    }
}
