//! When the region heartbeat stream is opened, used, dropped and reopened: a
//! pure state machine, apart from the I/O that [`super::Heartbeat::run`] does.
//!
//! The driver turns what happened (a round is due, the stream was opened or
//! failed to open, it ended or a send on it failed, a store or split tick, an
//! answer from placement) into an [`Event`], and carries out the [`Action`]s
//! the machine returns, in order. The machine alone decides when a stream is
//! stale (closed, or opened under an older placement leader), how long to wait
//! before reopening one that keeps failing, and when that wait is healthy
//! again; its tests assert the exact actions, as openraft's engine tests do.

use std::time::Duration;

use proto::pdpb;
use tokio::time::Instant;

/// The first pause before reopening a region heartbeat stream that failed,
/// and the step it grows by while it keeps failing.
pub const REOPEN_BACKOFF_STEP: Duration = Duration::from_millis(100);
/// The longest pause before reopening.
pub const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the driver observed.
#[derive(Debug)]
pub enum Event {
    /// Report every led region: the region interval passed, a region changed, or
    /// the reopen pause is over. Carries the stream's state as the driver sees it.
    Round {
        /// The placement client's leader generation now.
        leader_generation: u64,
        /// The open stream's sending side is closed.
        closed: bool,
    },
    /// The stream was opened under this leader generation.
    Opened { generation: u64 },
    /// Opening the stream failed.
    OpenFailed,
    /// The stream ended (placement closed it, or a send on it failed).
    Ended,
    /// The store heartbeat interval passed; `in_flight` if the last one is unanswered.
    StoreTick { in_flight: bool },
    /// The split check interval passed.
    SplitTick,
    /// Placement answered a region heartbeat.
    Response(Box<pdpb::RegionHeartbeatResponse>),
}

/// What the driver must do, in order.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Drop the open stream.
    Close,
    /// Open a stream on placement's leader and report the outcome.
    Open,
    /// Send a heartbeat for every region led here on the open stream.
    Report,
    /// Send the store's own heartbeat.
    StoreHeartbeat,
    /// Check the regions written to since the last check against the split limits.
    CheckSplits,
    /// Carry out the operator placement attached to its answer.
    Carry(Box<pdpb::RegionHeartbeatResponse>),
}

#[derive(Debug, PartialEq)]
enum State {
    /// No stream; the next round may open one from this instant on.
    Down { reopen_at: Instant },
    /// Being opened.
    Opening,
    /// Open, under this leader generation.
    Open { generation: u64 },
}

/// The region heartbeat stream's life.
#[derive(Debug)]
pub struct StreamMachine {
    state: State,
    backoff: Duration,
}

impl StreamMachine {
    /// No stream yet: the first round opens one at once.
    pub fn new(now: Instant) -> Self {
        StreamMachine {
            state: State::Down { reopen_at: now },
            backoff: Duration::ZERO,
        }
    }

    /// When the driver must wake for a round on its own: the end of the reopen pause.
    pub fn reopen_at(&self) -> Option<Instant> {
        match self.state {
            State::Down { reopen_at } => Some(reopen_at),
            _ => None,
        }
    }

    /// The actions `event`, observed at `now`, calls for.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Round {
                leader_generation,
                closed,
            } => self.round(leader_generation, closed, now),
            Event::Opened { generation } => {
                self.state = State::Open { generation };
                vec![Action::Report]
            }
            Event::OpenFailed => {
                self.retry_later(now);
                vec![]
            }
            Event::Ended => {
                let was_open = matches!(self.state, State::Open { .. });
                self.retry_later(now);
                if was_open {
                    vec![Action::Close]
                } else {
                    vec![]
                }
            }
            // One store heartbeat at a time, even while placement is slow to answer
            // during a leader change.
            Event::StoreTick { in_flight } => {
                if in_flight {
                    vec![]
                } else {
                    vec![Action::StoreHeartbeat]
                }
            }
            Event::SplitTick => vec![Action::CheckSplits],
            Event::Response(resp) => vec![Action::Carry(resp)],
        }
    }

    fn round(&mut self, leader_generation: u64, closed: bool, now: Instant) -> Vec<Action> {
        match self.state {
            State::Open { generation } if !closed && generation == leader_generation => {
                // The stream outlived the round that opened it: healthy.
                self.backoff = Duration::ZERO;
                vec![Action::Report]
            }
            // Stale: reopened at once on the leader the client follows now.
            State::Open { .. } => {
                self.state = State::Opening;
                vec![Action::Close, Action::Open]
            }
            State::Down { reopen_at } if reopen_at <= now => {
                self.state = State::Opening;
                vec![Action::Open]
            }
            State::Down { .. } | State::Opening => vec![],
        }
    }

    /// The stream is down: reopen after the pause, which grows while it keeps failing.
    fn retry_later(&mut self, now: Instant) {
        self.state = State::Down {
            reopen_at: now + self.backoff,
        };
        self.backoff = (self.backoff + REOPEN_BACKOFF_STEP).min(REOPEN_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(generation: u64) -> Event {
        Event::Round {
            leader_generation: generation,
            closed: false,
        }
    }

    #[test]
    fn the_first_round_opens_and_reports_and_later_rounds_report() {
        let now = Instant::now();
        let mut m = StreamMachine::new(now);
        assert_eq!(m.reopen_at(), Some(now));
        assert_eq!(m.on(round(1), now), [Action::Open]);
        assert_eq!(m.reopen_at(), None);
        assert_eq!(
            m.on(round(1), now),
            [],
            "a round while opening waits for it"
        );
        assert_eq!(m.on(Event::Opened { generation: 1 }, now), [Action::Report]);
        assert_eq!(m.on(round(1), now), [Action::Report]);
    }

    #[test]
    fn a_new_placement_leader_or_a_closed_stream_reopens_at_once() {
        let now = Instant::now();
        let mut m = StreamMachine::new(now);
        m.on(round(1), now);
        m.on(Event::Opened { generation: 1 }, now);
        assert_eq!(m.on(round(2), now), [Action::Close, Action::Open]);
        assert_eq!(m.on(Event::Opened { generation: 2 }, now), [Action::Report]);
        let closed = Event::Round {
            leader_generation: 2,
            closed: true,
        };
        assert_eq!(m.on(closed, now), [Action::Close, Action::Open]);
    }

    #[test]
    fn a_failing_stream_is_reopened_after_a_growing_pause_reset_by_a_healthy_round() {
        let t0 = Instant::now();
        let mut m = StreamMachine::new(t0);
        m.on(round(1), t0);
        m.on(Event::Opened { generation: 1 }, t0);
        // The first failure reopens at once (no pause yet).
        assert_eq!(m.on(Event::Ended, t0), [Action::Close]);
        assert_eq!(m.reopen_at(), Some(t0));
        assert_eq!(m.on(round(1), t0), [Action::Open]);
        // Then 100 ms, 200 ms, ... up to 2 s.
        let mut now = t0;
        for pause_ms in [100, 200, 300] {
            assert_eq!(m.on(Event::OpenFailed, now), []);
            let due = now + Duration::from_millis(pause_ms);
            assert_eq!(m.reopen_at(), Some(due));
            assert_eq!(m.on(round(1), due - Duration::from_millis(1)), []);
            assert_eq!(m.on(round(1), due), [Action::Open]);
            now = due;
        }
        for _ in 0..30 {
            m.on(Event::OpenFailed, now);
            m.on(round(1), now + REOPEN_BACKOFF_MAX);
        }
        m.on(Event::OpenFailed, now);
        assert_eq!(m.reopen_at(), Some(now + REOPEN_BACKOFF_MAX), "capped");
        // Opened, then a round on the open stream: healthy, the next failure reopens at once.
        let later = now + REOPEN_BACKOFF_MAX;
        assert_eq!(m.on(round(1), later), [Action::Open]);
        m.on(Event::Opened { generation: 1 }, later);
        assert_eq!(m.on(round(1), later), [Action::Report]);
        assert_eq!(m.on(Event::Ended, later), [Action::Close]);
        assert_eq!(m.reopen_at(), Some(later));
    }

    #[test]
    fn a_stream_that_ends_before_it_was_healthy_keeps_the_pause_growing() {
        let t0 = Instant::now();
        let mut m = StreamMachine::new(t0);
        m.on(round(1), t0);
        m.on(Event::Opened { generation: 1 }, t0);
        m.on(Event::Ended, t0);
        m.on(round(1), t0);
        m.on(Event::Opened { generation: 1 }, t0);
        // Ends again before any round found it healthy: 100 ms now.
        assert_eq!(m.on(Event::Ended, t0), [Action::Close]);
        assert_eq!(m.reopen_at(), Some(t0 + REOPEN_BACKOFF_STEP));
    }

    #[test]
    fn store_heartbeats_do_not_overlap_and_ticks_and_answers_pass_through() {
        let now = Instant::now();
        let mut m = StreamMachine::new(now);
        assert_eq!(
            m.on(Event::StoreTick { in_flight: false }, now),
            [Action::StoreHeartbeat]
        );
        assert_eq!(m.on(Event::StoreTick { in_flight: true }, now), []);
        assert_eq!(m.on(Event::SplitTick, now), [Action::CheckSplits]);
        let resp = Box::new(pdpb::RegionHeartbeatResponse {
            region_id: 7,
            ..Default::default()
        });
        assert_eq!(
            m.on(Event::Response(resp.clone()), now),
            [Action::Carry(resp)]
        );
        assert_eq!(m.reopen_at(), Some(now), "the stream state is untouched");
    }
}
